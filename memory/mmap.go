package memory

import (
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePageSize is the x86-64 large page (2 MiB). KVM maps guest memory
// with large nested-page-table entries only where the host address and
// the guest address agree modulo this size; RAM that starts off such a
// boundary costs one nested page fault per 4 KiB the guest touches (seen:
// 25,000 of them in one boot of Debian's kernel, against 400 for QEMU,
// whose RAM is aligned).
const hugePageSize = 2 << 20

// mapAligned maps n bytes of anonymous, lazily backed memory starting on a
// hugePageSize boundary: it maps a hugePageSize more and trims both ends.
// Guest regions start on such boundaries too (0 and 4 GiB).
//
// unsafe: the kernel returns an address, not a slice; the slice made of
// it covers exactly the n bytes left mapped, and unmap undoes it.
func mapAligned(n uint64) ([]byte, error) {
	span := uintptr(n) + hugePageSize
	base, err := unix.MmapPtr(-1, 0, nil, span, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	head := (hugePageSize - uintptr(base)%hugePageSize) % hugePageSize
	start := unsafe.Add(base, head)
	tail := span - head - uintptr(n)
	var errs []error
	if head > 0 {
		errs = append(errs, unix.MunmapPtr(base, head))
	}
	if tail > 0 {
		errs = append(errs, unix.MunmapPtr(unsafe.Add(start, n), tail))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, errors.Join(err, unix.MunmapPtr(start, uintptr(n)))
	}
	return unsafe.Slice((*byte)(start), n), nil
}

// unmap releases a mapping made by mapAligned.
func unmap(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(b)), uintptr(len(b)))
}
