package kvm

import (
	"errors"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctlPtr issues an ioctl whose argument is a pointer to a uapi struct
// (or to the first byte of a buffer holding one), retrying on EINTR.
//
// Why unsafe: the kernel reads and writes the struct through its address.
// The pointer is converted to uintptr inside the Syscall argument list,
// which keeps the pointee alive and in place for the whole call (unsafe
// rule 4). The struct layouts are checked against the uapi in
// layout_unsafe_test.go.
func ioctlPtr[T any](fd int, req uintptr, arg *T) (uintptr, error) {
	for {
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(unsafe.Pointer(arg)))
		if errno == 0 {
			return r, nil
		}
		if !errors.Is(errno, unix.EINTR) {
			return r, errno
		}
	}
}

// HostAddr returns the host virtual address of b's first byte, for
// UserspaceMemoryRegion.UserspaceAddr. b must stay mapped (typically from
// unix.Mmap) for as long as a memory slot refers to it.
//
// Why unsafe: KVM takes guest RAM as a raw address in this process. Only
// the pointer-to-integer direction is used, which is always allowed.
func HostAddr(b []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// sliceAddr returns the address of a []uint64's first element, for a
// struct field the kernel writes through (KVM_GET_DIRTY_LOG's bitmap).
//
// Why unsafe: the kernel needs the address as an integer inside a
// struct. The slice must stay alive until the ioctl returns: callers
// pass it to keepAlive afterwards.
func sliceAddr(b []uint64) uint64 {
	return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
}

// keepAlive keeps b reachable up to this call (see sliceAddr).
func keepAlive(b []uint64) { runtime.KeepAlive(b) }
