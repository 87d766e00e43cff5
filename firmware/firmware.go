// Package firmware holds the little a micro-VM's boot ROM needs: vmm boots
// Linux directly, so there is no BIOS, only a reset vector. Linux jumps to
// the BIOS reset vector, real-mode f000:fff0 (physical 0xffff0), when it
// reboots through the BIOS (arch/x86/kernel/reboot.c, BOOT_BIOS): with
// reboot=b, reboot=e, and by default on a hardware-reduced ACPI machine
// without EFI, where reboot_init picks BOOT_EFI and efi_reboot falls
// through to BOOT_BIOS. The vector asks the platform for a reset through
// the chipset's reset control register (devices/power.ResetControl), so
// every one of those reboots ends the VM as a reboot.
package firmware

import (
	"fmt"

	"github.com/vmm-dev/vmm/devices/power"
	"github.com/vmm-dev/vmm/memory"
)

// ResetVectorAddr is the physical address of the real-mode reset vector,
// f000:fff0; the vector fills the 16 bytes up to 1 MiB. It lies in the
// BIOS area that e820 reserves (boot.BIOSAreaAddr..boot.HighMemAddr), at
// its top, above the ACPI tables.
const (
	ResetVectorAddr memory.GuestAddr = 0xffff0
	ResetVectorSize                  = 16
)

// resetVector is 16-bit real-mode code: request a hard reset from the reset
// control register the way Linux's reboot=p does (SYS_RST, then
// SYS_RST|RST_CPU|FULL_RST: the second write is RST_CPU's 0-to-1
// transition whatever the register held), then halt with interrupts off,
// for good, should the platform not reset.
var resetVector = [ResetVectorSize]byte{
	0xba, power.ResetControlPort & 0xff, power.ResetControlPort >> 8, // mov dx, 0xcf9
	0xb0, power.ResetSystem, // mov al, SYS_RST
	0xee,                                                       // out dx, al
	0xb0, power.ResetSystem | power.ResetCPU | power.ResetFull, // mov al, SYS_RST|RST_CPU|FULL_RST
	0xee,       // out dx, al
	0xfa,       // cli
	0xf4,       // hlt
	0xeb, 0xfd, // jmp short to the hlt
	0xf4, 0xf4, 0xf4, // padding: hlt
}

// ResetVector returns the reset vector's bytes.
func ResetVector() []byte { return append([]byte(nil), resetVector[:]...) }

// Write puts the reset vector at ResetVectorAddr.
func Write(mem *memory.Memory) error {
	if err := mem.WriteAt(resetVector[:], ResetVectorAddr); err != nil {
		return fmt.Errorf("write reset vector at %v: %w", ResetVectorAddr, err)
	}
	return nil
}
