package pci

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// BARKind is the address space and width of a BAR (PCI 3.0 §6.2.5.1).
type BARKind int

const (
	BARNone BARKind = iota
	BARMem32
	BARMem64 // takes this BAR and the next
	BARIO
)

// BAR describes one base address register. Size is a power of two: at
// least 16 for memory and 4 for I/O.
type BAR struct {
	Kind         BARKind
	Size         uint64
	Prefetchable bool
}

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrBAR: a BAR the header cannot express.
	ErrBAR = errors.New("pci: invalid BAR")
	// ErrCapability: a capability that does not fit the configuration space.
	ErrCapability = errors.New("pci: invalid capability")
	// ErrSlot: a slot that does not exist or is taken.
	ErrSlot = errors.New("pci: invalid slot")
)

// Hook intercepts guest accesses to part of the configuration space, for
// registers with side effects. Read fills data for an access that lies
// wholly inside the hook's range (offset relative to the hook); Write
// sees the guest's value after the configuration space stored its
// writable bits. Either may be nil. Hooks run with the Config locked and
// must not call back into it.
type Hook struct {
	Offset, Len uint16
	Read        func(offset uint16, data []byte)
	Write       func(offset uint16, data []byte, stored []byte)
}

// Config is one function's configuration space: bytes, which bits of
// each the guest may write, the BARs, and hooks. Accesses of 1, 2 or 4
// bytes that do not cross a dword boundary are served; others read all
// ones and are dropped, as unclaimed accesses are.
type Config struct {
	mu      sync.Mutex
	b       [ConfigSize]byte
	wmask   [ConfigSize]byte
	bars    [NumBARs]BAR
	lastCap uint16 // offset of the last capability's next pointer; 0: none
	capEnd  uint16 // first free byte after the capabilities
	hooks   []Hook
	// command mirrors the command register for Command, which device
	// workers call and which must not wait for a vCPU inside a hook.
	command atomic.Uint32
}

// NewConfig returns a type 0 header for id whose interrupt pin is pin (1
// INTA# .. 4 INTD#, 0 none).
func NewConfig(id ID, pin uint8) *Config {
	c := &Config{capEnd: 0x40}
	binary.LittleEndian.PutUint16(c.b[RegVendorID:], id.Vendor)
	binary.LittleEndian.PutUint16(c.b[RegDeviceID:], id.Device)
	c.b[RegRevisionID] = id.Revision
	c.b[RegClassCode] = byte(id.Class)
	c.b[RegClassCode+1] = byte(id.Class >> 8)
	c.b[RegClassCode+2] = byte(id.Class >> 16)
	binary.LittleEndian.PutUint16(c.b[RegSubsysVendor:], id.SubsysVendor)
	binary.LittleEndian.PutUint16(c.b[RegSubsysID:], id.Subsys)
	c.b[RegInterruptPin] = pin
	binary.LittleEndian.PutUint16(c.wmask[RegCommand:], commandWritableBits)
	// Interrupt Line is a scratch register firmware and OS write.
	c.wmask[RegInterruptLine] = 0xff
	return c
}

// SetBAR declares BAR i with its initial address, as firmware would have
// assigned it. A 64-bit BAR uses i and i+1.
func (c *Config) SetBAR(i int, bar BAR, addr uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	last := i
	if bar.Kind == BARMem64 {
		last = i + 1
	}
	if i < 0 || last >= NumBARs || c.bars[i].Kind != BARNone || c.bars[last].Kind != BARNone {
		return fmt.Errorf("%w: BAR %d (kind %d) does not fit or is taken", ErrBAR, i, bar.Kind)
	}
	minSize := uint64(16)
	if bar.Kind == BARIO {
		minSize = 4
	}
	if bar.Size < minSize || bar.Size&(bar.Size-1) != 0 || addr%bar.Size != 0 ||
		(bar.Kind != BARMem64 && bar.Size > 1<<31) || (bar.Kind == BARIO && bar.Size > 256) {
		return fmt.Errorf("%w: BAR %d: size %#x at %#x", ErrBAR, i, bar.Size, addr)
	}
	if bar.Kind != BARMem64 && addr+bar.Size > 1<<32 {
		return fmt.Errorf("%w: BAR %d: 32-bit BAR at %#x", ErrBAR, i, addr)
	}
	c.bars[i] = bar
	off := RegBAR0 + 4*i
	low := uint32(addr)
	mask := ^uint32(bar.Size - 1)
	switch bar.Kind {
	case BARIO:
		low |= 1
		mask &^= 3
	case BARMem32, BARMem64:
		mask &^= 0xf
		if bar.Kind == BARMem64 {
			low |= 2 << 1
		}
		if bar.Prefetchable {
			low |= 1 << 3
		}
	default:
		return fmt.Errorf("%w: BAR %d: unknown kind %d", ErrBAR, i, bar.Kind)
	}
	binary.LittleEndian.PutUint32(c.b[off:], low)
	binary.LittleEndian.PutUint32(c.wmask[off:], mask)
	if bar.Kind == BARMem64 {
		c.bars[i+1] = BAR{Kind: BARNone}
		binary.LittleEndian.PutUint32(c.b[off+4:], uint32(addr>>32))
		binary.LittleEndian.PutUint32(c.wmask[off+4:], ^uint32((bar.Size-1)>>32))
	}
	return nil
}

// BARAddr returns where BAR i decodes now and whether it decodes at all
// (its enable bit in the command register is set, it is programmed, and
// it does not wrap).
func (c *Config) BARAddr(i int) (addr uint64, bar BAR, decoding bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.barAddr(i)
}

func (c *Config) barAddr(i int) (uint64, BAR, bool) {
	if i < 0 || i >= NumBARs {
		return 0, BAR{}, false
	}
	bar := c.bars[i]
	off := RegBAR0 + 4*i
	cmd := binary.LittleEndian.Uint16(c.b[RegCommand:])
	switch bar.Kind {
	case BARIO:
		addr := uint64(binary.LittleEndian.Uint32(c.b[off:]) &^ 3)
		return addr, bar, cmd&CommandIO != 0 && addr != 0 && addr+bar.Size <= 1<<16
	case BARMem32:
		addr := uint64(binary.LittleEndian.Uint32(c.b[off:]) &^ 0xf)
		return addr, bar, cmd&CommandMemory != 0 && addr != 0
	case BARMem64:
		addr := uint64(binary.LittleEndian.Uint32(c.b[off:])&^0xf) | uint64(binary.LittleEndian.Uint32(c.b[off+4:]))<<32
		return addr, bar, cmd&CommandMemory != 0 && addr != 0 && addr+bar.Size > addr
	}
	return 0, bar, false
}

// AddCapability appends a capability with id and body (the bytes after
// the ID and next pointer) to the list, dword aligned, and returns its
// offset. wmask, if not nil, gives the guest-writable bits of body.
func (c *Config) AddCapability(id uint8, body, wmask []byte) (uint16, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	off := (c.capEnd + 3) &^ 3
	n := uint16(2 + len(body))
	if len(body) > LegacyConfigSize || off+n > LegacyConfigSize || (wmask != nil && len(wmask) != len(body)) {
		return 0, fmt.Errorf("%w: capability %#x of %d bytes at %#x", ErrCapability, id, n, off)
	}
	c.b[off] = id
	copy(c.b[off+2:], body)
	if wmask != nil {
		copy(c.wmask[off+2:], wmask)
	}
	if c.lastCap == 0 {
		c.b[RegCapPointer] = byte(off)
		st := binary.LittleEndian.Uint16(c.b[RegStatus:]) | StatusCapabilites
		binary.LittleEndian.PutUint16(c.b[RegStatus:], st)
	} else {
		c.b[c.lastCap] = byte(off)
	}
	c.lastCap = off + 1
	c.capEnd = off + n
	return off, nil
}

// AddHook installs h; hooks must not overlap.
func (c *Config) AddHook(h Hook) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h.Len == 0 || uint32(h.Offset)+uint32(h.Len) > ConfigSize {
		return fmt.Errorf("%w: hook %#x+%d", ErrCapability, h.Offset, h.Len)
	}
	for _, o := range c.hooks {
		if h.Offset < o.Offset+o.Len && o.Offset < h.Offset+h.Len {
			return fmt.Errorf("%w: hook %#x+%d overlaps %#x+%d", ErrCapability, h.Offset, h.Len, o.Offset, o.Len)
		}
	}
	c.hooks = append(c.hooks, h)
	return nil
}

// validAccess reports whether an access of len(data) bytes at off is one
// the space serves: 1, 2 or 4 bytes, inside the space, within one dword.
func validAccess(off uint16, n int) bool {
	if n != 1 && n != 2 && n != 4 {
		return false
	}
	return int(off)+n <= ConfigSize && int(off%4)+n <= 4
}

// Read serves a guest read of configuration space.
func (c *Config) Read(off uint16, data []byte) {
	if !validAccess(off, len(data)) {
		fillOnes(data)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	copy(data, c.b[off:])
	for _, h := range c.hooks {
		if h.Read != nil && off >= h.Offset && int(off)+len(data) <= int(h.Offset+h.Len) {
			h.Read(off-h.Offset, data)
		}
	}
}

// Write serves a guest write of configuration space; read-only bits keep
// their value. It reports whether a BAR or the command register changed,
// so the bus knows to decode BARs afresh.
func (c *Config) Write(off uint16, data []byte) (remap bool) {
	if !validAccess(off, len(data)) {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, v := range data {
		o := int(off) + i
		m := c.wmask[o]
		old := c.b[o]
		c.b[o] = old&^m | v&m
		if c.b[o] != old && (o >= RegCommand && o < RegCommand+2 || o >= RegBAR0 && o < RegBAR0+4*NumBARs) {
			remap = true
		}
	}
	c.command.Store(uint32(binary.LittleEndian.Uint16(c.b[RegCommand:])))
	for _, h := range c.hooks {
		if h.Write == nil {
			continue
		}
		lo, hi := max(off, h.Offset), min(off+uint16(len(data)), h.Offset+h.Len)
		if lo < hi {
			h.Write(lo-h.Offset, data[lo-off:hi-off], c.b[lo:hi])
		}
	}
	return remap
}

// Bytes returns a copy of the configuration space, for tests and tools.
func (c *Config) Bytes() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.b[:]...)
}

// Command returns the command register. It takes no lock: a device
// worker may ask while a vCPU inside a Hook waits for that worker.
func (c *Config) Command() uint16 { return uint16(c.command.Load()) }

// SetStatusBits sets or clears read-only status register bits (the
// device's own, such as StatusINTx).
func (c *Config) SetStatusBits(bits uint16, on bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := binary.LittleEndian.Uint16(c.b[RegStatus:])
	if on {
		st |= bits
	} else {
		st &^= bits
	}
	binary.LittleEndian.PutUint16(c.b[RegStatus:], st)
}

// SetInterruptLine records the GSI firmware routed INTx to.
func (c *Config) SetInterruptLine(line uint8) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.b[RegInterruptLine] = line
}

func fillOnes(data []byte) {
	for i := range data {
		data[i] = 0xff
	}
}
