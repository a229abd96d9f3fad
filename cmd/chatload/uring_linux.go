package main

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// uring is the least of io_uring that a fan-out needs: a batch of sends,
// one per socket, submitted and completed with one io_uring_enter(2). No
// well-kept Go io_uring library is served to this project, so this is a
// small wrapper of the kernel interface (include/uapi/linux/io_uring.h).
// It is used by the floor benchmark to measure what batching the kernel
// entries of a fan-out would save.
type uring struct {
	fd      int
	entries uint32
	single  bool // one mapping holds both rings
	sqRing  []byte
	cqRing  []byte
	sqes    []byte

	sqTail, sqMask, sqArray unsafe.Pointer
	cqHead, cqTail, cqMask  unsafe.Pointer
	cqes                    unsafe.Pointer
}

const (
	sysIOUringSetup = 425
	sysIOUringEnter = 426

	ioringOffSQRing = 0
	ioringOffCQRing = 0x8000000
	ioringOffSQEs   = 0x10000000

	ioringFeatSingleMmap = 1
	ioringEnterGetEvents = 1
	ioringOpSend         = 26

	sqeSize = 64
	cqeSize = 16
)

// uringParams is struct io_uring_params.
type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  struct {
		head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
		userAddr                                                        uint64
	}
	cqOff struct {
		head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
		userAddr                                                        uint64
	}
}

func newURing(entries uint32) (*uring, error) {
	var p uringParams
	fd, _, errno := syscall.Syscall(sysIOUringSetup, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &uring{fd: int(fd), entries: p.sqEntries}
	sqSize := int(p.sqOff.array + p.sqEntries*4)
	cqSize := int(p.cqOff.cqes + p.cqEntries*cqeSize)
	single := p.features&ioringFeatSingleMmap != 0
	r.single = single
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	mmap := func(off int64, size int) ([]byte, error) {
		return syscall.Mmap(r.fd, off, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED|syscall.MAP_POPULATE)
	}
	if r.sqRing, err = mmap(ioringOffSQRing, sqSize); err != nil {
		r.Close()
		return nil, fmt.Errorf("mmap sq ring: %w", err)
	}
	r.cqRing = r.sqRing
	if !single {
		if r.cqRing, err = mmap(ioringOffCQRing, cqSize); err != nil {
			r.Close()
			return nil, fmt.Errorf("mmap cq ring: %w", err)
		}
	}
	if r.sqes, err = mmap(ioringOffSQEs, int(p.sqEntries)*sqeSize); err != nil {
		r.Close()
		return nil, fmt.Errorf("mmap sqes: %w", err)
	}
	at := func(b []byte, off uint32) unsafe.Pointer { return unsafe.Pointer(&b[off]) }
	r.sqTail, r.sqMask, r.sqArray = at(r.sqRing, p.sqOff.tail), at(r.sqRing, p.sqOff.ringMask), at(r.sqRing, p.sqOff.array)
	r.cqHead, r.cqTail, r.cqMask = at(r.cqRing, p.cqOff.head), at(r.cqRing, p.cqOff.tail), at(r.cqRing, p.cqOff.ringMask)
	r.cqes = at(r.cqRing, p.cqOff.cqes)
	return r, nil
}

func (r *uring) Close() {
	if r.sqes != nil {
		_ = syscall.Munmap(r.sqes)
	}
	if !r.single && r.cqRing != nil {
		_ = syscall.Munmap(r.cqRing)
	}
	if r.sqRing != nil {
		_ = syscall.Munmap(r.sqRing)
	}
	syscall.Close(r.fd)
}

// sendAll sends buf on every socket in fds with one io_uring_enter and
// puts each send's result (bytes sent, or -errno) in res. MSG_DONTWAIT makes
// a full socket answer -EAGAIN at once, as a non-blocking write(2) does,
// instead of leaving the send pending in the kernel: the batch is complete
// when the call returns.
func (r *uring) sendAll(fds []int, buf []byte, res []int32) error {
	if len(fds) > int(r.entries) || len(res) < len(fds) {
		return errors.New("uring: batch larger than the ring")
	}
	tail := atomic.LoadUint32((*uint32)(r.sqTail))
	mask := *(*uint32)(r.sqMask)
	array := unsafe.Slice((*uint32)(r.sqArray), r.entries)
	for i, fd := range fds {
		idx := (tail + uint32(i)) & mask
		sqe := r.sqes[idx*sqeSize : (idx+1)*sqeSize]
		clear(sqe)
		sqe[0] = ioringOpSend
		*(*int32)(unsafe.Pointer(&sqe[4])) = int32(fd)
		*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(&buf[0])))
		*(*uint32)(unsafe.Pointer(&sqe[24])) = uint32(len(buf))
		*(*uint32)(unsafe.Pointer(&sqe[28])) = syscall.MSG_DONTWAIT | syscall.MSG_NOSIGNAL
		*(*uint64)(unsafe.Pointer(&sqe[32])) = uint64(i)
		array[idx] = idx
	}
	atomic.StoreUint32((*uint32)(r.sqTail), tail+uint32(len(fds)))
	n := uintptr(len(fds))
	for {
		submitted, _, errno := syscall.Syscall6(sysIOUringEnter, uintptr(r.fd), n, n, ioringEnterGetEvents, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
		if submitted != n {
			return fmt.Errorf("io_uring_enter: %d of %d sends submitted", submitted, n)
		}
		break
	}
	runtime.KeepAlive(buf)
	// Reap: every send has completed.
	head := atomic.LoadUint32((*uint32)(r.cqHead))
	cmask := *(*uint32)(r.cqMask)
	got := 0
	for got < len(fds) {
		ctail := atomic.LoadUint32((*uint32)(r.cqTail))
		for ; head != ctail; head++ {
			cqe := unsafe.Add(r.cqes, uintptr(head&cmask)*cqeSize)
			i := *(*uint64)(cqe)
			res[i] = *(*int32)(unsafe.Add(cqe, 8))
			got++
		}
		atomic.StoreUint32((*uint32)(r.cqHead), head)
		if got < len(fds) {
			if _, _, errno := syscall.Syscall6(sysIOUringEnter, uintptr(r.fd), 0, uintptr(len(fds)-got), ioringEnterGetEvents, 0, 0); errno != 0 && errno != syscall.EINTR {
				return fmt.Errorf("io_uring_enter: %w", errno)
			}
		}
	}
	return nil
}
