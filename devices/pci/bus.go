package pci

import (
	"encoding/binary"
	"fmt"
	"sync"
)

// Bus is PCI bus 0: up to 32 single-function devices, the host bridge in
// slot 0, and the memory BARs they decode.
type Bus struct {
	mu      sync.RWMutex
	devices [Slots]Device
	windows []window // decoding memory BARs, rebuilt after each remap
}

type window struct {
	base, size uint64
	dev        Device
	bar        int
}

// Host bridge identity: Red Hat's generic PCIe host bridge ID, which
// Linux binds nothing to, with the host bridge class that Linux's
// mechanism #1 probe looks for (arch/x86/pci/direct.c pci_sanity_check).
var HostBridgeID = ID{Vendor: 0x1b36, Device: 0x0008, Class: 0x060000, SubsysVendor: 0x1b36, Subsys: 0x0008}

// NewBus returns bus 0 with a host bridge at 00:00.0.
func NewBus() *Bus {
	b := &Bus{}
	b.devices[0] = &hostBridge{cfg: NewConfig(HostBridgeID, 0)}
	return b
}

// Add places dev in slot (1-31) and maps its BARs if they decode.
func (b *Bus) Add(slot int, dev Device) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if slot < 1 || slot >= Slots || b.devices[slot] != nil {
		return fmt.Errorf("%w: slot %d is taken or not 1-%d", ErrSlot, slot, Slots-1)
	}
	b.devices[slot] = dev
	b.remapLocked(dev)
	return nil
}

// ConfigRead reads configuration space of 00:slot.fn at offset; an
// absent function or bus reads all ones (a master abort).
func (b *Bus) ConfigRead(bus, slot, fn uint8, offset uint16, data []byte) {
	dev := b.function(bus, slot, fn)
	if dev == nil {
		fillOnes(data)
		return
	}
	dev.Config().Read(offset, data)
}

// ConfigWrite writes configuration space; writes to absent functions
// are dropped.
func (b *Bus) ConfigWrite(bus, slot, fn uint8, offset uint16, data []byte) {
	dev := b.function(bus, slot, fn)
	if dev == nil {
		return
	}
	if dev.Config().Write(offset, data) {
		b.mu.Lock()
		b.remapLocked(dev)
		b.mu.Unlock()
	}
}

func (b *Bus) function(bus, slot, fn uint8) Device {
	if bus != 0 || fn != 0 || slot >= Slots {
		return nil
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.devices[slot]
}

// remapLocked recomputes dev's decoding windows and tells it.
func (b *Bus) remapLocked(dev Device) {
	kept := b.windows[:0]
	for _, w := range b.windows {
		if w.dev != dev {
			kept = append(kept, w)
		}
	}
	b.windows = kept
	obs, _ := dev.(BARObserver)
	cfg := dev.Config()
	for i := 0; i < NumBARs; i++ {
		addr, bar, on := cfg.BARAddr(i)
		if bar.Kind != BARMem32 && bar.Kind != BARMem64 {
			continue
		}
		if on {
			b.windows = append(b.windows, window{base: addr, size: bar.Size, dev: dev, bar: i})
		}
		if obs != nil {
			obs.BARMapped(i, addr, on)
		}
	}
}

// find returns the device whose BAR decodes addr. Two BARs the guest
// placed on top of each other: the first one wins, as some bridge would.
func (b *Bus) find(addr uint64) (Device, int, uint64, bool) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	for _, w := range b.windows {
		if addr >= w.base && addr-w.base < w.size {
			return w.dev, w.bar, addr - w.base, true
		}
	}
	return nil, 0, 0, false
}

// MemoryWindow returns a bus.Device for guest physical addresses from
// base on, to register on the MMIO bus over a root bridge window: an
// access that hits a decoding BAR goes to its device, any other reads
// all ones.
func (b *Bus) MemoryWindow(base uint64) *MemoryWindow { return &MemoryWindow{bus: b, base: base} }

// MemoryWindow routes MMIO accesses in one root bridge window to BARs.
type MemoryWindow struct {
	bus  *Bus
	base uint64
}

func (w *MemoryWindow) Read(offset uint64, data []byte) {
	dev, bar, off, ok := w.bus.find(w.base + offset)
	if !ok || off+uint64(len(data)) < off {
		fillOnes(data)
		return
	}
	dev.ReadBAR(bar, off, data)
}

func (w *MemoryWindow) Write(offset uint64, data []byte) {
	if dev, bar, off, ok := w.bus.find(w.base + offset); ok {
		dev.WriteBAR(bar, off, data)
	}
}

type hostBridge struct{ cfg *Config }

func (h *hostBridge) Config() *Config                   { return h.cfg }
func (h *hostBridge) ReadBAR(_ int, _ uint64, d []byte) { fillOnes(d) }
func (h *hostBridge) WriteBAR(int, uint64, []byte)      {}

// Configuration mechanism #1 (PCI 3.0 §3.2.2.3.2): CONFIG_ADDRESS is the
// dword at 0xcf8, CONFIG_DATA the four bytes at 0xcfc. Port 0xcf9 is the
// PC reset control register, another device's; so CONFIG_ADDRESS is
// registered as one port and a dword access to 0xcf8 reaches it because
// the port bus routes by the access's first port.
const (
	ConfigAddressPort = 0xcf8
	ConfigDataPort    = 0xcfc
	ConfigDataLen     = 4
	configEnable      = 1 << 31
)

// Mechanism1 is the CONFIG_ADDRESS/CONFIG_DATA pair. Register Address()
// at ConfigAddressPort (1 port) and Data() at ConfigDataPort
// (ConfigDataLen ports).
type Mechanism1 struct {
	bus  *Bus
	mu   sync.Mutex
	addr uint32
}

// NewMechanism1 returns the port pair for bus.
func NewMechanism1(bus *Bus) *Mechanism1 { return &Mechanism1{bus: bus} }

// Address is CONFIG_ADDRESS.
func (m *Mechanism1) Address() *ConfigAddress { return &ConfigAddress{m} }

// Data is CONFIG_DATA.
func (m *Mechanism1) Data() *ConfigData { return &ConfigData{m} }

// ConfigAddress is the CONFIG_ADDRESS register, a bus.Device.
type ConfigAddress struct{ m *Mechanism1 }

// Only a dword access is CONFIG_ADDRESS; narrower ones at 0xcf8 reach
// nothing on a PC (they would go to the ISA bus) and read all ones.
func (a *ConfigAddress) Read(offset uint64, data []byte) {
	if offset != 0 || len(data) != 4 {
		fillOnes(data)
		return
	}
	a.m.mu.Lock()
	defer a.m.mu.Unlock()
	binary.LittleEndian.PutUint32(data, a.m.addr)
}

func (a *ConfigAddress) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) != 4 {
		return
	}
	a.m.mu.Lock()
	defer a.m.mu.Unlock()
	// Bits 1:0 are read-only zero; bits 30:24 are reserved (read 0).
	a.m.addr = binary.LittleEndian.Uint32(data) & 0x80ff_fffc
}

// ConfigData is the CONFIG_DATA window, a bus.Device.
type ConfigData struct{ m *Mechanism1 }

func (d *ConfigData) target(offset uint64) (bus, slot, fn uint8, reg uint16, ok bool) {
	d.m.mu.Lock()
	a := d.m.addr
	d.m.mu.Unlock()
	if a&configEnable == 0 {
		return 0, 0, 0, 0, false
	}
	return uint8(a >> 16), uint8(a>>11) & 0x1f, uint8(a>>8) & 7, uint16(a&0xfc) + uint16(offset), true
}

func (d *ConfigData) Read(offset uint64, data []byte) {
	bus, slot, fn, reg, ok := d.target(offset)
	if !ok || offset+uint64(len(data)) > ConfigDataLen {
		fillOnes(data)
		return
	}
	d.m.bus.ConfigRead(bus, slot, fn, reg, data)
}

func (d *ConfigData) Write(offset uint64, data []byte) {
	bus, slot, fn, reg, ok := d.target(offset)
	if !ok || offset+uint64(len(data)) > ConfigDataLen {
		return
	}
	d.m.bus.ConfigWrite(bus, slot, fn, reg, data)
}

// ECAMSize is the ECAM window of bus 0: 32 devices x 8 functions x 4 KiB
// (PCI Express Base §7.2.2).
const ECAMSize = Slots * 8 * ConfigSize

// ECAM returns a bus.Device for the ECAM window of bus 0.
func (b *Bus) ECAM() *ECAM { return &ECAM{bus: b} }

// ECAM is the enhanced configuration access window: the address selects
// device (bits 19:15), function (14:12) and register (11:0).
type ECAM struct{ bus *Bus }

func (e *ECAM) decode(offset uint64) (slot, fn uint8, reg uint16, ok bool) {
	if offset >= ECAMSize {
		return 0, 0, 0, false
	}
	return uint8(offset >> 15), uint8(offset>>12) & 7, uint16(offset & 0xfff), true
}

func (e *ECAM) Read(offset uint64, data []byte) {
	slot, fn, reg, ok := e.decode(offset)
	if !ok {
		fillOnes(data)
		return
	}
	e.bus.ConfigRead(0, slot, fn, reg, data)
}

func (e *ECAM) Write(offset uint64, data []byte) {
	if slot, fn, reg, ok := e.decode(offset); ok {
		e.bus.ConfigWrite(0, slot, fn, reg, data)
	}
}
