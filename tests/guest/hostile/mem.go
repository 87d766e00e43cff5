package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// physMap is a /dev/mem mapping of guest-physical memory. O_SYNC makes it
// uncached, so every access reaches the device (registers) or RAM (rings)
// in program order, as the other side, vmm on the host, sees it.
type physMap struct {
	base uint64
	b    []byte
}

func mapPhys(base, size uint64) (*physMap, error) {
	fd, err := unix.Open("/dev/mem", unix.O_RDWR|unix.O_SYNC|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/mem: %w", err)
	}
	defer unix.Close(fd)
	b, err := unix.Mmap(fd, int64(base), int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap /dev/mem %#x+%#x: %w (CONFIG_STRICT_DEVMEM allows only ranges no driver claims)", base, size, err)
	}
	return &physMap{base: base, b: b}, nil
}

// at returns the mapping at guest-physical address pa.
func (m *physMap) at(pa uint64) []byte {
	if pa < m.base || pa-m.base >= uint64(len(m.b)) {
		fmt.Fprintf(os.Stderr, "hostile: address %#x outside the mapping %#x+%#x\n", pa, m.base, len(m.b))
		os.Exit(2)
	}
	return m.b[pa-m.base:]
}

func (m *physMap) put16(pa uint64, v uint16) { binary.LittleEndian.PutUint16(m.at(pa), v) }
func (m *physMap) put32(pa uint64, v uint32) { binary.LittleEndian.PutUint32(m.at(pa), v) }
func (m *physMap) put64(pa uint64, v uint64) { binary.LittleEndian.PutUint64(m.at(pa), v) }
func (m *physMap) get16(pa uint64) uint16    { return binary.LittleEndian.Uint16(m.at(pa)) }
func (m *physMap) get32(pa uint64) uint32    { return binary.LittleEndian.Uint32(m.at(pa)) }

// Register accesses must be single loads and stores of the exact width:
// each becomes one MMIO exit of that size. The functions are not inlined,
// so the compiler neither merges nor drops them.

//go:noinline
func load8(p unsafe.Pointer) uint8 { return *(*uint8)(p) }

//go:noinline
func load16(p unsafe.Pointer) uint16 { return *(*uint16)(p) }

//go:noinline
func load32(p unsafe.Pointer) uint32 { return *(*uint32)(p) }

//go:noinline
func load64(p unsafe.Pointer) uint64 { return *(*uint64)(p) }

//go:noinline
func store8(p unsafe.Pointer, v uint8) { *(*uint8)(p) = v }

//go:noinline
func store16(p unsafe.Pointer, v uint16) { *(*uint16)(p) = v }

//go:noinline
func store32(p unsafe.Pointer, v uint32) { *(*uint32)(p) = v }

//go:noinline
func store64(p unsafe.Pointer, v uint64) { *(*uint64)(p) = v }

// regs is one virtio-mmio register window.
type regs struct{ m *physMap }

func (r regs) ptr(off uint64) unsafe.Pointer { return unsafe.Pointer(&r.m.b[off]) }

func (r regs) read32(off uint64) uint32     { return load32(r.ptr(off)) }
func (r regs) write32(off uint64, v uint32) { store32(r.ptr(off), v) }

// read reads width bytes (1, 2, 4 or 8) at off.
func (r regs) read(off uint64, width int) uint64 {
	p := r.ptr(off)
	switch width {
	case 1:
		return uint64(load8(p))
	case 2:
		return uint64(load16(p))
	case 4:
		return uint64(load32(p))
	}
	return load64(p)
}

// write writes width bytes (1, 2, 4 or 8) at off.
func (r regs) write(off uint64, width int, v uint64) {
	p := r.ptr(off)
	switch width {
	case 1:
		store8(p, uint8(v))
	case 2:
		store16(p, uint16(v))
	case 4:
		store32(p, uint32(v))
	default:
		store64(p, v)
	}
}
