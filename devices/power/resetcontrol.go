package power

import (
	"sync"

	"github.com/vmm-dev/vmm/devices"
)

// ResetControlPort is the I/O port of the PC chipset's reset control
// register (Intel PIIX4 datasheet §4.1.19 "RC—Reset Control Register";
// ICH/PCH datasheets "RST_CNT"). It sits inside the dword of PCI
// configuration mechanism #1's address register (0xcf8-0xcfb): only a
// byte access to 0xcf9 reaches it, so its range is exactly one port.
const ResetControlPort = 0xcf9

// Reset control register bits.
const (
	// ResetSystem (SYS_RST, bit 1) selects a hard reset (1) or a soft
	// one, an INIT of the CPU (0), for the next ResetCPU transition.
	ResetSystem = 1 << 1
	// ResetCPU (RST_CPU, bit 2): its transition from 0 to 1 starts the
	// reset that ResetSystem selects.
	ResetCPU = 1 << 2
	// ResetFull (FULL_RST, bit 3, ICH and later) makes a hard reset also
	// cycle power.
	ResetFull = 1 << 3
)

// ResetControl is the reset control register at ResetControlPort: the
// register Linux's reboot=p writes (arch/x86/kernel/reboot.c,
// BOOT_CF9_FORCE: first SYS_RST, then SYS_RST|RST_CPU|FULL_RST), and the
// one the reset vector of package firmware writes. Every reset it starts,
// hard or soft, is a devices.Reset: a micro-VM has no firmware that could
// resume a CPU after an INIT, so the only useful soft reset is a reboot.
// It implements bus.Device over one port.
type ResetControl struct {
	onPower devices.PowerHandler

	mu       sync.Mutex
	value    uint8 // SYS_RST and FULL_RST as last written
	cpuReset bool  // RST_CPU as last written, to see its 0-to-1 transition
}

// NewResetControl returns the register. A nil onPower makes resets no-ops.
func NewResetControl(onPower devices.PowerHandler) *ResetControl {
	return &ResetControl{onPower: onPower}
}

// Read returns SYS_RST and FULL_RST as last written. RST_CPU reads as 0,
// as QEMU's PIIX does: Linux reads the register and clears the bits it is
// about to set, and must then see its own write as a transition.
func (r *ResetControl) Read(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range data {
		data[i] = 0
	}
	if offset == 0 && len(data) > 0 {
		data[0] = r.value
	}
}

// Write serves a guest write; only its first byte, at offset 0, is the
// register (a wider access also covers the PCI ports that follow, which
// are not this device's).
func (r *ResetControl) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 {
		return
	}
	v := data[0]
	r.mu.Lock()
	r.value = v & (ResetSystem | ResetFull)
	start := v&ResetCPU != 0 && !r.cpuReset
	r.cpuReset = v&ResetCPU != 0
	r.mu.Unlock()
	// Outside the lock: the handler stops vCPUs, and one of them may be
	// about to access this device.
	if start && r.onPower != nil {
		r.onPower(devices.Reset)
	}
}
