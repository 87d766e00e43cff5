package acpi

import (
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/acpi/aml"
)

// PCIHost describes PCI segment 0's host bridge: its ECAM window (bus 0
// to BusEnd, 1 MiB per bus) and the windows it forwards to its devices.
type PCIHost struct {
	ECAMBase uint64
	BusEnd   uint8
	// IOMin-IOMax is the I/O port window; the bridge itself consumes
	// 0xcf8-0xcff (configuration mechanism #1).
	IOMin, IOMax uint16
	// Mem32 is a window below 4 GiB, Mem64 one above RAM; a zero size
	// leaves Mem64 out.
	Mem32Base, Mem32Size uint64
	Mem64Base, Mem64Size uint64
	// Routes are the INTx routes of _PRT.
	Routes []PCIRoute
}

// PCIRoute routes one slot's interrupt pin (0 INTA# .. 3 INTD#) to a GSI
// (a _PRT entry, ACPI 6.4 §6.2.13). Linux takes such a GSI as
// level-triggered, active-low and shareable.
type PCIRoute struct {
	Slot uint8
	Pin  uint8
	GSI  uint32
}

// ECAMBusSize is the ECAM space of one bus (PCI Express Base §7.2.2).
const ECAMBusSize = 1 << 20

func (p *PCIHost) ecamSize() uint64 { return (uint64(p.BusEnd) + 1) * ECAMBusSize }

func (p *PCIHost) validate(edgeGSIs map[uint32]string) error {
	if p.ECAMBase%ECAMBusSize != 0 || p.ECAMBase+p.ecamSize() > 1<<32 {
		return fmt.Errorf("%w: ECAM at %#x must be 1 MiB aligned and below 4 GiB", ErrConfig, p.ECAMBase)
	}
	if p.IOMin > p.IOMax || p.Mem32Size == 0 || p.Mem32Base+p.Mem32Size > 1<<32 ||
		p.Mem64Size != 0 && p.Mem64Base+p.Mem64Size < p.Mem64Base {
		return fmt.Errorf("%w: PCI windows io %#x-%#x, mem %#x+%#x, %#x+%#x", ErrConfig,
			p.IOMin, p.IOMax, p.Mem32Base, p.Mem32Size, p.Mem64Base, p.Mem64Size)
	}
	if len(p.Routes) > 255 {
		return fmt.Errorf("%w: %d _PRT entries (max 255)", ErrConfig, len(p.Routes))
	}
	for _, r := range p.Routes {
		if r.Slot >= 32 || r.Pin > 3 || r.GSI >= IOAPICPins {
			return fmt.Errorf("%w: PCI route slot %d pin %d to GSI %d", ErrConfig, r.Slot, r.Pin, r.GSI)
		}
		if user, ok := edgeGSIs[r.GSI]; ok {
			return fmt.Errorf("%w: PCI INTx GSI %d is %s's, which is edge-triggered", ErrConfig, r.GSI, user)
		}
	}
	return nil
}

// pciDevices returns \_SB_.PCI0, the root bridge (PNP0A08, compatible
// with PNP0A03 for OSes without PCI Express), and \_SB_.ECAM, a
// motherboard resource (PNP0C02) that reserves the ECAM window as Linux
// requires before it uses MCFG (arch/x86/pci/mmconfig-shared.c).
func pciDevices(p *PCIHost) []aml.Term {
	crs := aml.ResourceTemplate{
		aml.AddressSpace{Width: 16, Type: aml.AddressBus, Min: 0, Max: uint64(p.BusEnd)},
		aml.IOPort{Decode16: true, Min: 0xcf8, Max: 0xcf8, Alignment: 1, Length: 8},
		aml.AddressSpace{Width: 16, Type: aml.AddressIO, TypeFlags: 3, Min: uint64(p.IOMin), Max: uint64(p.IOMax)},
		// Read-write, non-cacheable: virtio registers have side effects.
		aml.AddressSpace{Width: 32, Type: aml.AddressMemory, TypeFlags: 1, Min: p.Mem32Base, Max: p.Mem32Base + p.Mem32Size - 1},
	}
	if p.Mem64Size != 0 {
		crs = append(crs, aml.AddressSpace{Width: 64, Type: aml.AddressMemory, TypeFlags: 1, Min: p.Mem64Base, Max: p.Mem64Base + p.Mem64Size - 1})
	}
	prt := make(aml.Package, 0, len(p.Routes))
	for _, r := range p.Routes {
		// {Address 0xSSSSFFFF (any function of the slot), Pin, Source
		// 0 (a GSI, not a link device), Source Index: the GSI}.
		prt = append(prt, aml.Package{aml.Integer(uint64(r.Slot)<<16 | 0xffff), aml.Integer(r.Pin), aml.Integer(0), aml.Integer(r.GSI)})
	}
	return []aml.Term{
		aml.Device{Name: "PCI0", Terms: []aml.Term{
			aml.Name{Name: "_HID", Value: aml.EISAID("PNP0A08")},
			aml.Name{Name: "_CID", Value: aml.EISAID("PNP0A03")},
			aml.Name{Name: "_SEG", Value: aml.Integer(0)},
			aml.Name{Name: "_BBN", Value: aml.Integer(0)},
			aml.Name{Name: "_UID", Value: aml.Integer(0)},
			aml.Name{Name: "_CRS", Value: crs},
			aml.Name{Name: "_PRT", Value: prt},
		}},
		aml.Device{Name: "ECAM", Terms: []aml.Term{
			aml.Name{Name: "_HID", Value: aml.EISAID("PNP0C02")},
			aml.Name{Name: "_UID", Value: aml.Integer(1)},
			aml.Name{Name: "_CRS", Value: aml.ResourceTemplate{
				aml.Memory32Fixed{Writable: true, Base: uint32(p.ECAMBase), Length: uint32(p.ecamSize())},
			}},
		}},
	}
}

// MCFG revision 1 (PCI Firmware 3.0 §4.1.2): the header, 8 reserved
// bytes, and one 16-byte allocation per segment.
const (
	mcfgRevision = 1
	mcfgLen      = headerLen + 8 + 16
)

func buildMCFG(p *PCIHost) []byte {
	t := newTable("MCFG", mcfgRevision, mcfgLen)
	e := t[headerLen+8:]
	binary.LittleEndian.PutUint64(e[0:], p.ECAMBase)
	binary.LittleEndian.PutUint16(e[8:], 0) // segment
	e[10] = 0                               // start bus
	e[11] = p.BusEnd
	return sealTable(t)
}
