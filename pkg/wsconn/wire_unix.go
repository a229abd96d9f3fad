//go:build unix

package wsconn

import (
	"net"
	"syscall"
	"unsafe"
)

// descriptor returns conn's file descriptor, or -1 when it has none.
func descriptor(conn net.Conn) int {
	fd := -1
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			_ = raw.Control(func(d uintptr) { fd = int(d) })
		}
	}
	return fd
}

// iovecs is a connection's reusable iovec array for writev(2).
type iovecs []syscall.Iovec

// writeNonblock is writev(2) of bufs on a non-blocking descriptor, with
// the iovec array kept in *iov while it is small. It is a raw system call:
// it never blocks, so it need not tell the scheduler, whose bookkeeping
// (and waking its monitor thread on an otherwise idle process) cost more
// than the rest of a delivery's user time.
func writeNonblock(fd int, bufs [][]byte, iov *iovecs) (int, error) {
	n := min(len(bufs), maxIOV)
	v := *iov
	if cap(v) < n {
		v = make(iovecs, n, max(n, 4))
		if n <= 4 {
			*iov = v // the usual batch: keep it
		}
	}
	v = v[:n]
	for i := range v {
		v[i].Base = unsafe.SliceData(bufs[i])
		v[i].SetLen(len(bufs[i]))
	}
	r, _, errno := syscall.RawSyscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&v[0])), uintptr(n))
	clear(v) // hold no payload
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
