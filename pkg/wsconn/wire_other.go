//go:build !unix

package wsconn

import (
	"errors"
	"net"
)

// descriptor reports no descriptor: without one, every write goes through
// the connection's pump and net's own Write.
func descriptor(net.Conn) int { return -1 }

// iovecs has no use where there is no writev.
type iovecs struct{}

func writeNonblock(int, [][]byte, *iovecs) (int, error) {
	return 0, errors.New("no non-blocking writes on this platform")
}
