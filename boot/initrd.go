package boot

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/vmm-dev/vmm/memory"
)

// loadInitrd reads the initrd at path straight into guest memory, page
// aligned and as high as it can go: below limit and above kernelEnd, so
// the kernel's decompression area (init_size) stays clear (boot.rst
// "initrd_addr_max"). An empty file loads nothing.
func loadInitrd(mem *memory.Memory, path string, kernelEnd, limit memory.GuestAddr) (memory.GuestAddr, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	if st.Size() <= 0 {
		return 0, 0, nil
	}
	size := uint64(st.Size())
	top := alignDown(uint64(limit), pageSize)
	bottom := alignUp(uint64(kernelEnd), pageSize)
	if top < bottom || size > top-bottom {
		return 0, 0, fmt.Errorf("%w: %d bytes, %d fit between the kernel's end %v and %#x",
			ErrInitrdTooLarge, size, max(top, bottom)-bottom, kernelEnd, top)
	}
	addr := memory.GuestAddr(alignDown(top-size, pageSize))
	dst, err := mem.Slice(addr, size)
	if err != nil {
		return 0, 0, fmt.Errorf("place %d bytes at %v: %w", size, addr, err)
	}
	if n, err := f.ReadAt(dst, 0); n != len(dst) {
		if err == nil || errors.Is(err, io.EOF) {
			return 0, 0, fmt.Errorf("read %d of %d bytes: file shrank while loading", n, size)
		}
		return 0, 0, err
	}
	return addr, size, nil
}
