package memory

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// NewFromFile maps guest RAM of size bytes from f, laid out as New lays
// it out, the regions back to back in the file: MAP_PRIVATE, so pages
// are read from the file only when the guest touches them, writes go to
// private copies and never reach the file, and VMs restored from one
// file share its unmodified pages through the page cache. f may be
// closed once this returns.
func NewFromFile(f *os.File, size uint64) (*Memory, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("map guest memory file: %w", err)
	}
	if uint64(st.Size()) != size {
		return nil, fmt.Errorf("%w: memory file %s is %d bytes, want %d", ErrSize, f.Name(), st.Size(), size)
	}
	// The same layout and checks as anonymous RAM; then each region's
	// anonymous mapping is replaced, in place (MAP_FIXED, keeping the
	// 2 MiB alignment), by the file's bytes.
	m, err := New(size)
	if err != nil {
		return nil, err
	}
	var off int64
	for _, r := range m.regions {
		if err := mapFileOver(r.Host, f, off); err != nil {
			m.Close()
			return nil, fmt.Errorf("map guest memory file %s at offset %#x: %w", f.Name(), off, err)
		}
		off += int64(len(r.Host))
	}
	return m, nil
}

// mapFileOver maps f from off over the existing mapping b.
//
// unsafe: MAP_FIXED needs b's address; the new mapping has b's exact
// extent, so b stays valid and unmap still releases it.
func mapFileOver(b []byte, f *os.File, off int64) error {
	addr := unsafe.Pointer(unsafe.SliceData(b))
	got, err := unix.MmapPtr(int(f.Fd()), off, addr, uintptr(len(b)),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED|unix.MAP_NORESERVE)
	if err != nil {
		return err
	}
	if got != addr {
		return fmt.Errorf("MAP_FIXED mapping landed at %p, not %p", got, addr)
	}
	return nil
}
