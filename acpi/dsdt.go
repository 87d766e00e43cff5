package acpi

import (
	"fmt"

	"github.com/vmm-dev/vmm/acpi/aml"
	"github.com/vmm-dev/vmm/devices/power"
)

// DSDT revision 2: integers in its AML are 64 bits wide (ACPI 6.4 §5.2.11.1).
const dsdtRevision = 2

// serialPorts is the number of 16550A registers.
const serialPorts = 8

// virtioMMIOHID is the _HID Linux's virtio_mmio driver matches on.
const virtioMMIOHID = "LNRO0005"

// pvpanicHID is the _HID Linux's pvpanic-mmio driver matches on.
const pvpanicHID = "QEMU0001"

// VM generation ID names. Linux's vmgenid driver matches "VMGENCTR" or
// "VM_GEN_COUNTER"; the first is not a valid ACPI ID (its last four must
// be hexadecimal, and iasl refuses it), so the _HID is an ID of vmm's own
// and the driver matches the _CID, the specification's "VM_Gen_Counter"
// in the upper case Linux compares with (ACPICA also upper-cases _CID
// strings). ACPI0013 is the Generic Event Device (ACPI 6.4 §5.6.9).
const (
	vmgenIDHID = "VMGN0001"
	vmgenIDCID = "VM_GEN_COUNTER"
	vmgenIDDDN = "VM_Gen_Counter"
	gedHID     = "ACPI0013"
	// vmgenIDNotify is the first device-specific notification value,
	// the one the vmgenid driver acts on.
	vmgenIDNotify = 0x80
)

// virtioName is the DSDT name of the i-th virtio-mmio device: VR00-VR99.
func virtioName(i int) string { return fmt.Sprintf("VR%02d", i) }

// buildDSDT describes the devices the guest cannot probe for, and the
// soft-off sleep type.
//
// Interrupts use Extended Interrupt descriptors, edge-triggered,
// active-high, exclusive: that is what KVM_IRQFD delivers, and Linux takes
// an Extended Interrupt's settings from _CRS as they are, without the
// legacy-IRQ override logic it applies to IRQ() descriptors. On a
// hardware-reduced platform Linux sets up no identity-mapped ISA IRQs, so
// COM1's line only works because PNP0501's _CRS names its GSI.
func buildDSDT(cfg Config) ([]byte, error) {
	var devs []aml.Term
	if cfg.SerialPort != 0 {
		devs = append(devs, aml.Device{Name: "COM1", Terms: []aml.Term{
			aml.Name{Name: "_HID", Value: aml.EISAID("PNP0501")}, // 16550A-compatible
			aml.Name{Name: "_UID", Value: aml.Integer(0)},
			aml.Name{Name: "_CRS", Value: aml.ResourceTemplate{
				aml.IOPort{Decode16: true, Min: cfg.SerialPort, Max: cfg.SerialPort, Alignment: 1, Length: serialPorts},
				aml.Interrupt{GSIs: []uint32{cfg.SerialIRQ}},
			}},
		}})
	}
	if cfg.KeyboardPorts != [2]uint16{} {
		// Linux's i8042 PNP probe takes the data port from the first I/O
		// resource, the command port from the second, the IRQ from the
		// first interrupt.
		var io []aml.Resource
		for _, port := range cfg.KeyboardPorts {
			io = append(io, aml.IOPort{Decode16: true, Min: port, Max: port, Alignment: 1, Length: 1})
		}
		devs = append(devs, aml.Device{Name: "PS2K", Terms: []aml.Term{
			aml.Name{Name: "_HID", Value: aml.EISAID("PNP0303")}, // IBM Enhanced (101/102-key) keyboard
			aml.Name{Name: "_UID", Value: aml.Integer(0)},
			aml.Name{Name: "_CRS", Value: aml.ResourceTemplate(append(io, aml.Interrupt{GSIs: []uint32{cfg.KeyboardIRQ}}))},
		}})
	}
	for i, v := range cfg.VirtioMMIO {
		devs = append(devs, aml.Device{Name: virtioName(i), Terms: []aml.Term{
			aml.Name{Name: "_HID", Value: aml.String(virtioMMIOHID)},
			aml.Name{Name: "_UID", Value: aml.Integer(i)},
			aml.Name{Name: "_CRS", Value: aml.ResourceTemplate{
				aml.Memory32Fixed{Writable: true, Base: uint32(v.Base), Length: v.Size},
				aml.Interrupt{GSIs: []uint32{v.GSI}},
			}},
		}})
	}
	if cfg.PVPanicPort != 0 {
		// Linux's pvpanic-mmio binds to this _HID and takes its register
		// from the first I/O or memory resource.
		devs = append(devs, aml.Device{Name: "PVPN", Terms: []aml.Term{
			aml.Name{Name: "_HID", Value: aml.String(pvpanicHID)},
			aml.Name{Name: "_UID", Value: aml.Integer(0)},
			aml.Name{Name: "_CRS", Value: aml.ResourceTemplate{
				aml.IOPort{Decode16: true, Min: cfg.PVPanicPort, Max: cfg.PVPanicPort, Alignment: 1, Length: 1},
			}},
		}})
	}
	if cfg.PCI != nil {
		devs = append(devs, pciDevices(cfg.PCI)...)
	}
	if g := cfg.VMGenID; g != nil {
		devs = append(devs, vmgenIDDevices(*g)...)
	}
	// The DSDT's top level is the namespace root, so _SB_ is \_SB_; the
	// short form is what iasl emits, which keeps the two comparable.
	body, err := aml.Encode(
		aml.Scope{Name: "_SB_", Terms: devs},
		// \_S5_: {SLP_TYPa, SLP_TYPb, reserved, reserved}. A
		// hardware-reduced OS writes only SLP_TYPa, to SLEEP_CONTROL_REG.
		aml.Name{Name: "_S5_", Value: aml.Package{
			aml.Integer(power.SleepTypeS5), aml.Integer(0), aml.Integer(0), aml.Integer(0),
		}},
	)
	if err != nil {
		return nil, fmt.Errorf("encode DSDT: %w", err)
	}
	t := newTable("DSDT", dsdtRevision, headerLen+len(body))
	copy(t[headerLen:], body)
	return sealTable(t), nil
}

// vmgenIDDevices describes the generation ID and the event device that
// announces its changes. ADDR is a package of the address's low and high
// 32 bits, as the specification and Linux's driver read it. The GED's
// only interrupt is the ID's, so _EVT notifies without looking at its
// argument (the GSI); the bare VGEN is found by the namespace search
// rules from \_SB_.GED0, the form iasl optimizes the full path to.
func vmgenIDDevices(g VMGenID) []aml.Term {
	return []aml.Term{
		aml.Device{Name: "VGEN", Terms: []aml.Term{
			aml.Name{Name: "_HID", Value: aml.String(vmgenIDHID)},
			aml.Name{Name: "_CID", Value: aml.String(vmgenIDCID)},
			aml.Name{Name: "_DDN", Value: aml.String(vmgenIDDDN)},
			aml.Name{Name: "ADDR", Value: aml.Package{aml.Integer(g.Addr & 0xffff_ffff), aml.Integer(g.Addr >> 32)}},
		}},
		aml.Device{Name: "GED0", Terms: []aml.Term{
			aml.Name{Name: "_HID", Value: aml.String(gedHID)},
			aml.Name{Name: "_UID", Value: aml.Integer(0)},
			aml.Name{Name: "_CRS", Value: aml.ResourceTemplate{aml.Interrupt{GSIs: []uint32{g.GSI}}}},
			aml.Method{Name: "_EVT", Args: 1, Serialized: true, Terms: []aml.Term{
				aml.Notify{Object: "VGEN", Value: aml.Integer(vmgenIDNotify)},
			}},
		}},
	}
}
