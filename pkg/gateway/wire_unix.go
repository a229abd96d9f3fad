//go:build unix

package gateway

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

// maxIOV is the most buffers one writev(2) takes (IOV_MAX).
const maxIOV = 1024

// writeNonblock is write(2), or writev(2) for several frames, on a
// non-blocking descriptor. It is a raw system call: it never blocks, so it
// need not tell the scheduler, whose bookkeeping (and waking its monitor
// thread on an otherwise idle process) cost more than the rest of a
// delivery's user time.
func writeNonblock(fd int, frames [][]byte) (int, error) {
	var r uintptr
	var errno syscall.Errno
	if len(frames) == 1 {
		p := frames[0]
		r, _, errno = syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	} else {
		iov := make([]syscall.Iovec, min(len(frames), maxIOV))
		for i := range iov {
			iov[i].Base = unsafe.SliceData(frames[i])
			iov[i].SetLen(len(frames[i]))
		}
		r, _, errno = syscall.RawSyscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
	}
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
