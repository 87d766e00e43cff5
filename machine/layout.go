package machine

import (
	"fmt"
	"strings"

	"github.com/vmm-dev/vmm/devices/vmgenid"
	"github.com/vmm-dev/vmm/firmware"
)

// Platform wiring: where each device lives and which GSI it raises. The
// same numbers go into the ACPI tables, so they are defined once, here.
const (
	com1Port = 0x3f8
	com1GSI  = 4

	i8042Port = 0x60
	i8042Len  = 5
	// i8042CommandOffset is the status/command register's (0x64) offset.
	i8042CommandOffset = 4
	// i8042KbdGSI is ISA IRQ 1, the keyboard's, identity-mapped on the
	// IOAPIC as the MADT leaves it.
	i8042KbdGSI   = 1
	progressPort  = 0x80
	ioapicAddr    = 0xfec0_0000
	acpiTableBase = 0x000e_0000
	// The VM generation ID (devices/vmgenid) takes the 16 bytes below the
	// reset vector (package firmware), the top 16 bytes of the BIOS area
	// that e820 reserves; the tables end below it. Its change
	// notification is GSI 3, ISA IRQ 3, which no other device uses.
	vmgenIDAddr  = firmware.ResetVectorAddr - vmgenid.Size
	vmgenIDGSI   = 3
	acpiTableEnd = vmgenIDAddr

	virtioMMIOBase   = 0xd000_0000
	virtioMMIOStride = 0x1000
	virtioFirstGSI   = 5
)

// virtioSlot is where the i-th virtio device sits.
type virtioSlot struct {
	Base uint64
	Size uint32
	GSI  uint32
}

func slotFor(i int) virtioSlot {
	return virtioSlot{
		Base: virtioMMIOBase + uint64(i)*virtioMMIOStride,
		Size: virtioMMIOStride,
		GSI:  uint32(virtioFirstGSI + i),
	}
}

// cmdlineWithDevices announces virtio-mmio devices on the kernel command
// line too, for kernels built with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES and
// without ACPI. Kernels that find them in the DSDT as well ignore the
// duplicate: the platform device names collide and the second is skipped.
func cmdlineWithDevices(cmdline string, slots []virtioSlot, withACPI bool) string {
	if withACPI || len(slots) == 0 {
		return cmdline
	}
	var b strings.Builder
	b.WriteString(cmdline)
	for _, s := range slots {
		fmt.Fprintf(&b, " virtio_mmio.device=%dK@%#x:%d", s.Size>>10, s.Base, s.GSI)
	}
	return b.String()
}
