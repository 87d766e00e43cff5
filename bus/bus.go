// Package bus routes guest port I/O and MMIO accesses to the devices that
// own the address ranges, as vCPU exits report them.
package bus

import (
	"errors"
	"fmt"
	"sort"
	"sync"
)

// Device is anything that answers accesses to an address range. The
// offset is relative to the start of the device's range; data holds what
// the guest wrote, or receives what it reads (1, 2, 4 or 8 bytes).
// Implementations must be safe for concurrent use by several vCPUs.
type Device interface {
	Read(offset uint64, data []byte)
	Write(offset uint64, data []byte)
}

// ErrOverlap reports a registration that overlaps an existing range.
var ErrOverlap = errors.New("bus range overlaps an existing device")

// ErrEmptyRange reports a registration of zero length or one that wraps.
var ErrEmptyRange = errors.New("bus range is empty or wraps around")

type entry struct {
	base, size uint64
	dev        Device
	name       string
}

// Bus is an address space of non-overlapping device ranges. Registration
// happens while the machine is built; lookups happen on every exit and
// take only a read lock.
type Bus struct {
	mu      sync.RWMutex
	entries []entry // sorted by base
}

// Register attaches dev to [base, base+size). name appears in errors.
func (b *Bus) Register(name string, base, size uint64, dev Device) error {
	if size == 0 || base+size < base {
		return fmt.Errorf("register %s at %#x+%#x: %w", name, base, size, ErrEmptyRange)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	i := sort.Search(len(b.entries), func(i int) bool { return b.entries[i].base >= base })
	if i > 0 {
		if p := b.entries[i-1]; p.base+p.size > base {
			return fmt.Errorf("register %s at %#x+%#x: %w (%s at %#x+%#x)", name, base, size, ErrOverlap, p.name, p.base, p.size)
		}
	}
	if i < len(b.entries) {
		if n := b.entries[i]; base+size > n.base {
			return fmt.Errorf("register %s at %#x+%#x: %w (%s at %#x+%#x)", name, base, size, ErrOverlap, n.name, n.base, n.size)
		}
	}
	b.entries = append(b.entries, entry{})
	copy(b.entries[i+1:], b.entries[i:])
	b.entries[i] = entry{base: base, size: size, dev: dev, name: name}
	return nil
}

func (b *Bus) find(addr uint64) (Device, uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	i := sort.Search(len(b.entries), func(i int) bool { return b.entries[i].base > addr })
	if i == 0 {
		return nil, 0, false
	}
	e := b.entries[i-1]
	if addr-e.base >= e.size {
		return nil, 0, false
	}
	return e.dev, addr - e.base, true
}

// Read routes a guest read at addr. It reports false when no device owns
// addr; the caller decides what an unclaimed read returns.
func (b *Bus) Read(addr uint64, data []byte) bool {
	dev, off, ok := b.find(addr)
	if ok {
		dev.Read(off, data)
	}
	return ok
}

// Write routes a guest write at addr, reporting false when no device owns it.
func (b *Bus) Write(addr uint64, data []byte) bool {
	dev, off, ok := b.find(addr)
	if ok {
		dev.Write(off, data)
	}
	return ok
}
