// Package memory owns guest RAM: it maps host memory for the guest, lays it
// out around the 32-bit MMIO hole, and gives every other package
// bounds-checked access by guest physical address.
package memory

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// GuestAddr is a guest physical address.
type GuestAddr uint64

// Add returns a+off, or false when the sum wraps around.
func (a GuestAddr) Add(off uint64) (GuestAddr, bool) {
	s := uint64(a) + off
	return GuestAddr(s), s >= uint64(a)
}

func (a GuestAddr) String() string { return fmt.Sprintf("%#x", uint64(a)) }

// Layout of the guest physical address space below and around 4 GiB.
const (
	// MMIOHoleStart is where the 32-bit MMIO hole begins: RAM beyond this
	// is placed above 4 GiB. The hole holds virtio-mmio devices, the
	// IOAPIC (0xfec00000) and the local APICs (0xfee00000).
	MMIOHoleStart GuestAddr = 0xc000_0000
	// MMIOHoleEnd is the first address above the hole (4 GiB).
	MMIOHoleEnd GuestAddr = 0x1_0000_0000

	// MinSize is the smallest guest RAM we accept: enough for the boot
	// structures below 1 MiB and a small kernel above it.
	MinSize = 16 << 20
	// MaxSize caps guest RAM at 1 TiB, far above what a micro-VM needs
	// and far below what the guest's physical address width allows.
	MaxSize = 1 << 40
)

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrOutOfRange reports an access that is not wholly inside guest RAM.
	ErrOutOfRange = errors.New("guest memory access out of range")
	// ErrSize reports a RAM size that cannot be used.
	ErrSize = errors.New("invalid guest memory size")
)

// Region is one contiguous run of guest RAM backed by one host mapping.
type Region struct {
	Base GuestAddr
	Host []byte
}

// End returns the first guest address past the region.
func (r Region) End() GuestAddr { return r.Base + GuestAddr(len(r.Host)) }

// Memory is the guest's RAM: one region below the MMIO hole and, when the
// guest has more RAM than fits there, a second one from 4 GiB up.
type Memory struct {
	regions []Region
	size    uint64
	mapped  bool // regions were mapped by New and are unmapped by Close
	// dirty is the VMM's own dirty log, nil until TrackDirty (dirty.go).
	dirty atomic.Pointer[dirtyLog]
}

// New maps size bytes of anonymous, lazily backed memory for the guest.
// Pages are not touched here: the host commits them as the guest uses them.
func New(size uint64) (*Memory, error) {
	if size < MinSize || size > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes (must be between %d MiB and %d GiB)",
			ErrSize, size, MinSize>>20, MaxSize>>30)
	}
	if size%uint64(unix.Getpagesize()) != 0 {
		return nil, fmt.Errorf("%w: %d bytes is not a multiple of the page size", ErrSize, size)
	}
	type span struct {
		base GuestAddr
		n    uint64
	}
	low := min(size, uint64(MMIOHoleStart))
	spans := []span{{0, low}}
	if size > low {
		spans = append(spans, span{MMIOHoleEnd, size - low})
	}
	m := &Memory{size: size, mapped: true}
	for _, s := range spans {
		host, err := mapAligned(s.n)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("%w: map %d MiB of guest RAM at %v: %w", ErrSize, s.n>>20, s.base, err)
		}
		m.regions = append(m.regions, Region{Base: s.base, Host: host})
		// Transparent huge pages: loading the kernel and initrd then
		// faults 2 MiB at a time instead of 4 KiB, and the guest's
		// nested page tables map large pages. Where THP is off this is
		// refused harmlessly, so the error is deliberately dropped.
		_ = unix.Madvise(host, unix.MADV_HUGEPAGE)
	}
	return m, nil
}

// FromSlices builds a Memory over caller-owned buffers. Tests and fuzzers
// use it to play the guest without KVM; regions must not overlap.
func FromSlices(regions ...Region) *Memory {
	m := &Memory{regions: regions}
	for _, r := range regions {
		m.size += uint64(len(r.Host))
	}
	return m
}

// Close unmaps the guest RAM that New mapped.
func (m *Memory) Close() error {
	var errs []error
	for _, r := range m.regions {
		if !m.mapped {
			break
		}
		if err := unmap(r.Host); err != nil {
			errs = append(errs, fmt.Errorf("unmap guest RAM at %v: %w", r.Base, err))
		}
	}
	m.regions = nil
	return errors.Join(errs...)
}

// Regions returns the RAM regions in ascending address order.
func (m *Memory) Regions() []Region { return m.regions }

// Size returns the total RAM in bytes.
func (m *Memory) Size() uint64 { return m.size }

// LowEnd returns the end of RAM below the MMIO hole.
func (m *Memory) LowEnd() GuestAddr { return m.regions[0].End() }

// Slice returns the host bytes behind [addr, addr+n). The range must lie in
// one region. The slice aliases guest memory: the guest may change it at
// any time, so callers copy what they validate before they use it.
func (m *Memory) Slice(addr GuestAddr, n uint64) ([]byte, error) {
	for _, r := range m.regions {
		if addr < r.Base || addr >= r.End() {
			continue
		}
		off := uint64(addr - r.Base)
		if n > uint64(len(r.Host))-off {
			break
		}
		return r.Host[off : off+n : off+n], nil
	}
	return nil, fmt.Errorf("%w: %d bytes at %v", ErrOutOfRange, n, addr)
}

// Contains reports whether [addr, addr+n) lies in one region.
func (m *Memory) Contains(addr GuestAddr, n uint64) bool {
	_, err := m.Slice(addr, n)
	return err == nil
}

// ReadAt copies len(p) bytes of guest memory at addr into p.
func (m *Memory) ReadAt(p []byte, addr GuestAddr) error {
	b, err := m.Slice(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, b)
	return nil
}

// WriteAt copies p into guest memory at addr.
func (m *Memory) WriteAt(p []byte, addr GuestAddr) error {
	b, err := m.Slice(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(b, p)
	m.MarkDirty(addr, uint64(len(p)))
	return nil
}

// Zero clears n bytes of guest memory at addr.
func (m *Memory) Zero(addr GuestAddr, n uint64) error {
	b, err := m.Slice(addr, n)
	if err != nil {
		return err
	}
	clear(b)
	m.MarkDirty(addr, n)
	return nil
}

// Little-endian scalar accessors: x86 and virtio (version 1) are both
// little-endian.

func (m *Memory) Uint16(addr GuestAddr) (uint16, error) {
	b, err := m.Slice(addr, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (m *Memory) Uint32(addr GuestAddr) (uint32, error) {
	b, err := m.Slice(addr, 4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (m *Memory) Uint64(addr GuestAddr) (uint64, error) {
	b, err := m.Slice(addr, 8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (m *Memory) PutUint16(addr GuestAddr, v uint16) error {
	b, err := m.Slice(addr, 2)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint16(b, v)
	m.MarkDirty(addr, 2)
	return nil
}

func (m *Memory) PutUint32(addr GuestAddr, v uint32) error {
	b, err := m.Slice(addr, 4)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(b, v)
	m.MarkDirty(addr, 4)
	return nil
}

func (m *Memory) PutUint64(addr GuestAddr, v uint64) error {
	b, err := m.Slice(addr, 8)
	if err != nil {
		return err
	}
	binary.LittleEndian.PutUint64(b, v)
	m.MarkDirty(addr, 8)
	return nil
}

// PageSize is the unit Discard works in: the host's and the balloon's
// (VIRTIO_BALLOON_PFN_SHIFT) 4 KiB page.
const PageSize = 4096

// ErrAlign reports a Discard range that is not made of whole pages.
var ErrAlign = errors.New("guest memory range not page aligned")

// Discard gives the host memory behind [addr, addr+n) back to the host:
// madvise(MADV_DONTNEED) on RAM that New mapped, so the process's RSS
// falls and the guest later reads zeros there; memory from FromSlices is
// cleared instead. The range must be whole pages inside one region.
func (m *Memory) Discard(addr GuestAddr, n uint64) error {
	if uint64(addr)%PageSize != 0 || n%PageSize != 0 {
		return fmt.Errorf("%w: %d bytes at %v", ErrAlign, n, addr)
	}
	b, err := m.Slice(addr, n)
	if err != nil || n == 0 {
		return err
	}
	// The content changes (to zeros, or back to a snapshot file's), so
	// a Diff must carry these pages.
	m.MarkDirty(addr, n)
	if !m.mapped {
		clear(b)
		return nil
	}
	if err := unix.Madvise(b, unix.MADV_DONTNEED); err != nil {
		return fmt.Errorf("discard %d bytes of guest RAM at %v: %w", n, addr, err)
	}
	return nil
}
