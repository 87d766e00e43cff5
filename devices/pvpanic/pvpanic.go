// Package pvpanic emulates the pvpanic device (QEMU's docs/specs/pvpanic.rst):
// one byte-wide register through which a guest kernel tells the host it
// panicked. Reading it returns the events the device supports; the guest
// writes the event that happened. Linux's pvpanic-mmio driver (a module in
// Debian's kernels) binds to it through the ACPI DSDT (_HID "QEMU0001",
// an I/O or memory resource) and writes from its panic notifier, before
// the kernel's own panic= timeout reboots or halts it: so vmm learns of a
// panic at once, even with panic=0, where the kernel never resets.
package pvpanic

// Port is the I/O port of the device: the one QEMU's ISA pvpanic uses,
// so a guest configured for it finds ours there too.
const Port = 0x505

// Event is a bit of the register.
type Event uint8

// Events (Linux include/uapi/misc/pvpanic.h).
const (
	// Panicked: the guest kernel panicked.
	Panicked Event = 1 << 0
	// CrashLoaded: the guest kernel panicked and is about to boot its
	// kdump crash kernel (it writes this instead of Panicked when one is
	// loaded, and only with crash_kexec_post_notifiers).
	CrashLoaded Event = 1 << 1
)

// Supported is what a read of the register returns. Other bits (such as
// Linux 6.9's PVPANIC_SHUTDOWN) are not offered, so the guest never sends
// them.
const Supported = Panicked | CrashLoaded

// Device is the register. It implements bus.Device over one port (or one
// byte of MMIO): bytes past the first read as zero and ignore writes.
type Device struct {
	onEvent func(Event)
}

// New returns the device; onEvent receives every supported event the
// guest writes (a nil onEvent drops them). It runs on the writing vCPU's
// thread and must not block.
func New(onEvent func(Event)) *Device { return &Device{onEvent: onEvent} }

// Read returns the supported events.
func (d *Device) Read(offset uint64, data []byte) {
	for i := range data {
		data[i] = 0
	}
	if offset == 0 && len(data) > 0 {
		data[0] = byte(Supported)
	}
}

// Write reports the events set in the first byte; unsupported bits are
// dropped, as a guest has no business setting them.
func (d *Device) Write(offset uint64, data []byte) {
	if offset != 0 || len(data) == 0 || d.onEvent == nil {
		return
	}
	if ev := Event(data[0]) & Supported; ev != 0 {
		d.onEvent(ev)
	}
}

func (e Event) String() string {
	switch e {
	case Panicked:
		return "panicked"
	case CrashLoaded:
		return "crash kernel loaded"
	case Panicked | CrashLoaded:
		return "panicked, crash kernel loaded"
	}
	return "no event"
}
