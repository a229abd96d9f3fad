//go:build !unix

package gateway

import (
	"errors"
	"net"
)

// descriptor reports no descriptor: without one, every write goes through
// the connection's pump and net's own Write.
func descriptor(net.Conn) int { return -1 }

func writeNonblock(int, [][]byte) (int, error) {
	return 0, errors.New("no non-blocking writes on this platform")
}
