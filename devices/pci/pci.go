// Package pci is a PCI bus 0 for a micro-VM: configuration space with
// BARs and a capabilities list (PCI Local Bus 3.0 §6), MSI-X (§6.8.2),
// a host bridge at 00:00.0, configuration mechanism #1 on ports
// 0xcf8/0xcfc (§3.2.2.3.2) and ECAM (PCI Express Base §7.2.2), and the
// decoding of memory BARs. It knows nothing of virtio: a device only
// describes its configuration space and answers accesses to its BARs.
//
// Everything the guest writes is hostile: unclaimed or malformed accesses
// read all ones and writes are dropped, as on real hardware.
package pci

import "fmt"

// Configuration space layout (type 0 header, PCI 3.0 §6.1).
const (
	RegVendorID      = 0x00
	RegDeviceID      = 0x02
	RegCommand       = 0x04
	RegStatus        = 0x06
	RegRevisionID    = 0x08
	RegClassCode     = 0x09 // 3 bytes: programming interface, subclass, class
	RegHeaderType    = 0x0e
	RegBAR0          = 0x10
	RegSubsysVendor  = 0x2c
	RegSubsysID      = 0x2e
	RegROMBAR        = 0x30
	RegCapPointer    = 0x34
	RegInterruptLine = 0x3c
	RegInterruptPin  = 0x3d

	// ConfigSize is a function's configuration space with ECAM (4 KiB);
	// mechanism #1 reaches the first 256 bytes.
	ConfigSize = 0x1000
	// LegacyConfigSize is the conventional configuration space.
	LegacyConfigSize = 0x100
	// NumBARs is the number of BARs of a type 0 header.
	NumBARs = 6
)

// Command register bits (PCI 3.0 §6.2.2).
const (
	CommandIO           uint16 = 1 << 0
	CommandMemory       uint16 = 1 << 1
	CommandBusMaster    uint16 = 1 << 2
	CommandParity       uint16 = 1 << 6
	CommandSERR         uint16 = 1 << 8
	CommandINTxDisable  uint16 = 1 << 10
	commandWritableBits        = CommandIO | CommandMemory | CommandBusMaster | CommandParity | CommandSERR | CommandINTxDisable
)

// Status register bits.
const (
	StatusINTx        uint16 = 1 << 3
	StatusCapabilites uint16 = 1 << 4
)

// Capability IDs (PCI Code and ID Assignment, §2).
const (
	CapVendor uint8 = 0x09
	CapMSIX   uint8 = 0x11
)

// Slots on bus 0; each holds function 0 only.
const Slots = 32

// ID is a device's identity in its configuration header.
type ID struct {
	Vendor, Device       uint16
	Revision             uint8
	Class                uint32 // 24 bits: class, subclass, programming interface
	SubsysVendor, Subsys uint16
}

func (id ID) String() string {
	return fmt.Sprintf("[%04x:%04x] class %06x", id.Vendor, id.Device, id.Class)
}

// Device is one PCI function on the bus. The bus serves its configuration
// space and routes accesses that hit one of its memory BARs, while
// CommandMemory is set, to ReadBAR and WriteBAR with the offset inside
// the BAR. Implementations must be safe for concurrent use.
type Device interface {
	Config() *Config
	ReadBAR(bar int, offset uint64, data []byte)
	WriteBAR(bar int, offset uint64, data []byte)
}

// BARObserver is implemented by devices that need to know where their
// BARs decode, for instance to register KVM ioeventfds. The bus calls
// BARMapped after every configuration write that moved a BAR or changed
// memory decoding; decoding false means the BAR answers nothing.
type BARObserver interface {
	BARMapped(bar int, addr uint64, decoding bool)
}
