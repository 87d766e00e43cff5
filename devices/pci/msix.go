package pci

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
)

// MSI-X (PCI 3.0 §6.8.2): the capability, the vector table and the
// pending bit array.
const (
	MSIXEntrySize = 16
	// MaxMSIXVectors is the most a Message Control table size can say.
	MaxMSIXVectors = 2048

	msixCapLen         = 12 // ID, next, Message Control, Table, PBA
	msixControlEnable  = 1 << 15
	msixControlMask    = 1 << 14
	msixEntryCtrlMask  = 1 << 0
	msixEntryVectorCtl = 12
)

// MSIMessage is what a vector writes to deliver its interrupt.
type MSIMessage struct {
	Addr uint64
	Data uint32
}

// MSIAddrBase is the x86 interrupt address range (Intel SDM vol. 3
// §11.11.1): a message outside it would be a memory write, which this
// bus does not perform.
const (
	MSIAddrBase = 0xfee0_0000
	msiAddrMask = 0xfff0_0000
)

// Valid reports whether m is an x86 interrupt message.
func (m MSIMessage) Valid() bool { return m.Addr&^0xf_ffff == MSIAddrBase && m.Addr>>32 == 0 }

// MSIRoute delivers one vector's interrupts. The machine backs it with a
// KVM GSI routing entry of type MSI and an irqfd on that GSI.
type MSIRoute interface {
	// SetMessage (re)programs the route before it fires with a message
	// different from the last one.
	SetMessage(MSIMessage) error
	// Fire delivers one interrupt with the last message set.
	Fire() error
}

// MSIX is one function's MSI-X state.
type MSIX struct {
	mu       sync.Mutex
	table    []byte   // MSIXEntrySize per vector
	pending  []uint64 // the PBA
	routed   []MSIMessage
	isRouted []bool
	routes   []MSIRoute
	enabled  bool
	masked   bool // function mask
	bar      int
	tableOff uint32
	pbaOff   uint32
	bad      bool // a garbage message was logged
	// cfg and capOff are where Install put the capability, whose
	// Message Control a restore reads.
	cfg    *Config
	capOff uint16
}

// NewMSIX returns MSI-X with one vector per route, all masked, MSI-X
// disabled: the state after reset (§6.8.2.9).
func NewMSIX(routes []MSIRoute) (*MSIX, error) {
	n := len(routes)
	if n == 0 || n > MaxMSIXVectors {
		return nil, fmt.Errorf("%w: %d MSI-X vectors (1 to %d)", ErrCapability, n, MaxMSIXVectors)
	}
	x := &MSIX{
		table:    make([]byte, n*MSIXEntrySize),
		pending:  make([]uint64, (n+63)/64),
		routed:   make([]MSIMessage, n),
		isRouted: make([]bool, n),
		routes:   routes,
	}
	for v := 0; v < n; v++ {
		x.table[v*MSIXEntrySize+msixEntryVectorCtl] = msixEntryCtrlMask
	}
	return x, nil
}

// Vectors returns the table size.
func (x *MSIX) Vectors() int { return len(x.routes) }

// TableSize and PBASize are the bytes the table and PBA take in their BAR.
func (x *MSIX) TableSize() uint64 { return uint64(len(x.table)) }

func (x *MSIX) PBASize() uint64 { return uint64(len(x.pending) * 8) }

// Install adds the MSI-X capability to c: table at tableOff and PBA at
// pbaOff (both 8-byte aligned) in BAR bar.
func (x *MSIX) Install(c *Config, bar int, tableOff, pbaOff uint32) (uint16, error) {
	if bar < 0 || bar >= NumBARs || tableOff%8 != 0 || pbaOff%8 != 0 {
		return 0, fmt.Errorf("%w: MSI-X table %#x / PBA %#x in BAR %d", ErrCapability, tableOff, pbaOff, bar)
	}
	x.bar, x.tableOff, x.pbaOff = bar, tableOff, pbaOff
	body := make([]byte, msixCapLen-2)
	binary.LittleEndian.PutUint16(body[0:], uint16(len(x.routes)-1))
	binary.LittleEndian.PutUint32(body[2:], tableOff|uint32(bar))
	binary.LittleEndian.PutUint32(body[6:], pbaOff|uint32(bar))
	wmask := make([]byte, len(body))
	binary.LittleEndian.PutUint16(wmask[0:], msixControlEnable|msixControlMask)
	off, err := c.AddCapability(CapMSIX, body, wmask)
	if err != nil {
		return 0, err
	}
	x.cfg, x.capOff = c, off
	err = c.AddHook(Hook{Offset: off + 2, Len: 2, Write: func(_ uint16, _ []byte, _ []byte) {
		// The stored Message Control decides; read it back whole,
		// since a byte write may have changed only one half.
		ctl := c.b[off+2:]
		x.setControl(binary.LittleEndian.Uint16(ctl)&msixControlEnable != 0,
			binary.LittleEndian.Uint16(ctl)&msixControlMask != 0)
	}})
	return off, err
}

// Enabled reports whether the guest enabled MSI-X: then the function
// must not use INTx (§6.8.2.3).
func (x *MSIX) Enabled() bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.enabled
}

// Reset returns the table to its reset state.
func (x *MSIX) Reset() {
	x.mu.Lock()
	defer x.mu.Unlock()
	clear(x.table)
	for v := range x.routes {
		x.table[v*MSIXEntrySize+msixEntryVectorCtl] = msixEntryCtrlMask
	}
	clear(x.pending)
	x.enabled, x.masked = false, false
}

func (x *MSIX) setControl(enabled, masked bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.enabled, x.masked = enabled, masked
	x.deliverPending()
}

// Trigger raises vector: delivered now, or remembered in the PBA while
// the vector or the function is masked (§6.8.2.9). A vector past the
// table is ignored: virtio's NO_VECTOR is never passed here.
func (x *MSIX) Trigger(vector uint16) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	v := int(vector)
	if v >= len(x.routes) {
		return nil
	}
	if !x.enabled || x.masked || x.entryMasked(v) {
		x.pending[v/64] |= 1 << (v % 64)
		return nil
	}
	return x.fire(v)
}

func (x *MSIX) entryMasked(v int) bool {
	return x.table[v*MSIXEntrySize+msixEntryVectorCtl]&msixEntryCtrlMask != 0
}

func (x *MSIX) message(v int) MSIMessage {
	e := x.table[v*MSIXEntrySize:]
	return MSIMessage{
		Addr: binary.LittleEndian.Uint64(e[0:]),
		Data: binary.LittleEndian.Uint32(e[8:]),
	}
}

func (x *MSIX) fire(v int) error {
	msg := x.message(v)
	if !msg.Valid() {
		// A real function would write to memory there; the interrupt
		// is lost, as it would be.
		if !x.bad {
			x.bad = true
			slog.Warn("pci: MSI-X vector with a non-interrupt address dropped", "vector", v, "addr", fmt.Sprintf("%#x", msg.Addr))
		}
		return nil
	}
	if !x.isRouted[v] || x.routed[v] != msg {
		if err := x.routes[v].SetMessage(msg); err != nil {
			return fmt.Errorf("MSI-X vector %d: %w", v, err)
		}
		x.routed[v], x.isRouted[v] = msg, true
	}
	if err := x.routes[v].Fire(); err != nil {
		return fmt.Errorf("MSI-X vector %d: %w", v, err)
	}
	return nil
}

// deliverPending fires every pending vector that is no longer masked.
func (x *MSIX) deliverPending() {
	if !x.enabled || x.masked {
		return
	}
	for v := range x.routes {
		if x.pending[v/64]&(1<<(v%64)) == 0 || x.entryMasked(v) {
			continue
		}
		x.pending[v/64] &^= 1 << (v % 64)
		if err := x.fire(v); err != nil {
			slog.Warn("pci: MSI-X pending vector", "err", err)
		}
	}
}

// Owns reports whether offset in BAR bar is the table or the PBA.
func (x *MSIX) Owns(bar int, offset uint64) bool {
	if bar != x.bar {
		return false
	}
	return offset >= uint64(x.tableOff) && offset < uint64(x.tableOff)+x.TableSize() ||
		offset >= uint64(x.pbaOff) && offset < uint64(x.pbaOff)+x.PBASize()
}

// msixAccess reports whether an access is one §6.8.2 allows: an aligned
// dword or qword.
func msixAccess(offset uint64, n int) bool {
	return (n == 4 || n == 8) && offset%uint64(n) == 0
}

// ReadBAR serves a read of the table or PBA at offset in the BAR.
func (x *MSIX) ReadBAR(offset uint64, data []byte) {
	fillOnes(data)
	if !msixAccess(offset, len(data)) {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if o := offset - uint64(x.tableOff); offset >= uint64(x.tableOff) && o+uint64(len(data)) <= x.TableSize() {
		copy(data, x.table[o:])
		return
	}
	if o := offset - uint64(x.pbaOff); offset >= uint64(x.pbaOff) && o+uint64(len(data)) <= x.PBASize() {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], x.pending[o/8])
		copy(data, b[o%8:])
	}
}

// WriteBAR serves a write of the table at offset in the BAR; the PBA is
// read-only.
func (x *MSIX) WriteBAR(offset uint64, data []byte) {
	if !msixAccess(offset, len(data)) || offset < uint64(x.tableOff) {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	o := offset - uint64(x.tableOff)
	if o+uint64(len(data)) > x.TableSize() {
		return
	}
	v := int(o / MSIXEntrySize)
	wasMasked := x.entryMasked(v)
	copy(x.table[o:], data)
	// Only the mask bit of Vector Control is defined; the rest reads 0.
	ctl := x.table[v*MSIXEntrySize+msixEntryVectorCtl:]
	binary.LittleEndian.PutUint32(ctl, binary.LittleEndian.Uint32(ctl)&msixEntryCtrlMask)
	if wasMasked && !x.entryMasked(v) {
		x.deliverPending()
	}
}
