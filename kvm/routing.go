package kvm

import (
	"encoding/binary"
	"fmt"
)

// Interrupt routing: which irqchip pin or MSI message each GSI stands for
// (Documentation/virt/kvm/api.rst, KVM_SET_GSI_ROUTING), and the
// injections that go through it.

// IRQChip names an in-kernel interrupt controller in a routing entry
// (<asm/kvm.h> KVM_IRQCHIP_*).
type IRQChip uint32

const (
	IRQChipPICMaster IRQChip = 0
	IRQChipPICSlave  IRQChip = 1
	IRQChipIOAPIC    IRQChip = 2
)

// Routing entry types (<linux/kvm.h> KVM_IRQ_ROUTING_*).
const (
	routingIRQChip = 1
	routingMSI     = 2
)

// RoutingEntry is one struct kvm_irq_routing_entry (48 bytes): GSI goes
// either to an irqchip pin (Chip, Pin) or, when MSI is set, is delivered
// as the message (MSIAddr, MSIData).
type RoutingEntry struct {
	GSI     uint32
	MSI     bool
	Chip    IRQChip
	Pin     uint32
	MSIAddr uint64
	MSIData uint32
}

// routingEntry is struct kvm_irq_routing_entry: gsi, type, flags, pad and
// a 32-byte union whose irqchip member is {irqchip, pin} and whose msi
// member is {address_lo, address_hi, data, pad}.
type routingEntry struct {
	GSI   uint32
	Type  uint32
	Flags uint32
	_     uint32
	U     [8]uint32
}

// encodeRouting builds a struct kvm_irq_routing (an 8-byte header: nr,
// flags) followed by its entries.
func encodeRouting(entries []RoutingEntry) []byte {
	buf := make([]byte, sizeofIRQRouting, sizeofIRQRouting+len(entries)*sizeofRoutingEntry)
	binary.LittleEndian.PutUint32(buf, uint32(len(entries)))
	for _, e := range entries {
		r := routingEntry{GSI: e.GSI, Type: routingIRQChip}
		if e.MSI {
			r.Type = routingMSI
			r.U[0], r.U[1], r.U[2] = uint32(e.MSIAddr), uint32(e.MSIAddr>>32), e.MSIData
		} else {
			r.U[0], r.U[1] = uint32(e.Chip), e.Pin
		}
		buf = binary.LittleEndian.AppendUint32(buf, r.GSI)
		buf = binary.LittleEndian.AppendUint32(buf, r.Type)
		buf = binary.LittleEndian.AppendUint32(buf, r.Flags)
		buf = binary.LittleEndian.AppendUint32(buf, 0)
		for _, u := range r.U {
			buf = binary.LittleEndian.AppendUint32(buf, u)
		}
	}
	return buf
}

// MaxRoutingEntries is KVM_MAX_IRQ_ROUTES on x86.
const MaxRoutingEntries = 4096

// SetGSIRouting issues KVM_SET_GSI_ROUTING: it replaces the whole routing
// table, the irqchip defaults that KVM_CREATE_IRQCHIP set included, so
// callers pass those again (see DefaultRouting). Needs CapIRQRouting.
func (vm *VM) SetGSIRouting(entries []RoutingEntry) error {
	if len(entries) > MaxRoutingEntries {
		return fmt.Errorf("VM: KVM_SET_GSI_ROUTING: %w: %d entries (max %d)", ErrInvalidArg, len(entries), MaxRoutingEntries)
	}
	buf := encodeRouting(entries)
	_, err := ioctlStruct(vm.h, fmt.Sprintf("KVM_SET_GSI_ROUTING (%d entries)", len(entries)), kvmSetGSIRouting, &buf[0])
	return err
}

// DefaultRouting returns the routing KVM_CREATE_IRQCHIP installs on x86:
// GSIs 0-15 to both the PICs (master pins 0-7, slave 8-15) and the
// IOAPIC pin of the same number, GSIs 16-23 to the IOAPIC alone.
func DefaultRouting() []RoutingEntry {
	var r []RoutingEntry
	for gsi := uint32(0); gsi < 24; gsi++ {
		if gsi < 16 {
			chip := IRQChipPICMaster
			if gsi >= 8 {
				chip = IRQChipPICSlave
			}
			r = append(r, RoutingEntry{GSI: gsi, Chip: chip, Pin: gsi % 8})
		}
		r = append(r, RoutingEntry{GSI: gsi, Chip: IRQChipIOAPIC, Pin: gsi})
	}
	return r
}

// msi is struct kvm_msi (32 bytes).
type msi struct {
	AddressLo uint32
	AddressHi uint32
	Data      uint32
	Flags     uint32
	DevID     uint32
	_         [12]uint8
}

// SignalMSI issues KVM_SIGNAL_MSI: it delivers one MSI message directly,
// without a routing entry. It reports whether the guest accepted it (0:
// blocked, for instance a masked LAPIC). Needs CapSignalMSI.
func (vm *VM) SignalMSI(addr uint64, data uint32) (delivered bool, err error) {
	m := msi{AddressLo: uint32(addr), AddressHi: uint32(addr >> 32), Data: data}
	r, err := ioctlStruct(vm.h, fmt.Sprintf("KVM_SIGNAL_MSI %#x/%#x", addr, data), kvmSignalMSI, &m)
	return r > 0, err
}

const irqFDResample = 1 << 1 // KVM_IRQFD_FLAG_RESAMPLE

// RegisterIRQFDResample issues KVM_IRQFD with KVM_IRQFD_FLAG_RESAMPLE: a
// write to eventfd raises gsi as a level that stays raised until the
// guest's EOI of it; KVM then lowers the line and signals resamplefd, so
// the device can raise it again if it is still asserting. Needs
// CapIRQFDResample. UnregisterIRQFD undoes it.
func (vm *VM) RegisterIRQFDResample(eventfd, resamplefd int, gsi uint32) error {
	if eventfd < 0 || resamplefd < 0 {
		return fmt.Errorf("VM: KVM_IRQFD gsi %d: %w: eventfd %d, resample fd %d", gsi, ErrInvalidArg, eventfd, resamplefd)
	}
	a := irqFD{FD: uint32(eventfd), GSI: gsi, Flags: irqFDResample, ResampleFD: uint32(resamplefd)}
	_, err := ioctlStruct(vm.h, fmt.Sprintf("KVM_IRQFD gsi %d (resample)", gsi), kvmIRQFD, &a)
	return err
}
