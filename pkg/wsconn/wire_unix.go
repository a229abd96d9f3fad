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

// writeNonblock is writev(2) of bufs (write(2) of one) on a non-blocking
// descriptor. It is a raw system call:
// it never blocks, so it need not tell the scheduler, whose bookkeeping
// (and waking its monitor thread on an otherwise idle process) cost more
// than the rest of a delivery's user time.
// iovecs is the iovec array of a small batch.
type iovecs [2 * smallBatch]syscall.Iovec

func writeNonblock(fd int, bufs [][]byte, iov *iovecs) (int, error) {
	if len(bufs) == 1 {
		p := bufs[0]
		r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		if errno != 0 {
			return 0, errno
		}
		return int(r), nil
	}
	n := min(len(bufs), maxIOV)
	v := iov[:]
	if n > len(iov) {
		v = make([]syscall.Iovec, n)
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
