// Package vmgenid is the VM generation ID (Microsoft's "Virtual Machine
// Generation ID" specification): 16 bytes of guest memory that change
// whenever the VM may have been duplicated, so that the guest reseeds
// what must not be shared between copies. Linux's vmgenid driver (5.18
// and later, CONFIG_VMGENID) reads the ID at probe and again when the
// firmware notifies its ACPI device, and then reseeds its random number
// generator (add_vmfork_randomness).
//
// The package owns the ID and its place in guest memory; the machine
// describes it in the DSDT (package acpi) and wires the interrupt that
// stands for the notification. The ID is not saved in snapshots: it is in
// guest memory, and every restore writes a new one.
package vmgenid

import (
	"crypto/rand"
	"fmt"

	"github.com/vmm-dev/vmm/devices"
	"github.com/vmm-dev/vmm/memory"
)

// Size is the ID's length in bytes.
const Size = 16

// ID is one generation ID: random, as the specification asks of a
// 128-bit identifier that must never repeat.
type ID [Size]byte

// Device is the generation ID at a fixed guest address.
type Device struct {
	mem    *memory.Memory
	addr   memory.GuestAddr
	notify devices.Interrupt
	id     ID
}

// New returns the device for the ID at addr, whose Size bytes must lie in
// mem; notify is the event that tells the guest the ID changed (the GED's
// interrupt). New writes nothing: Init does for a new VM, Regenerate for
// a restored one.
func New(mem *memory.Memory, addr memory.GuestAddr, notify devices.Interrupt) (*Device, error) {
	if !mem.Contains(addr, Size) {
		return nil, fmt.Errorf("VM generation ID at %v: not in guest memory", addr)
	}
	return &Device{mem: mem, addr: addr, notify: notify}, nil
}

// Init writes a new ID, without a notification: for a VM that has not
// booted yet, whose driver reads the ID when it probes. (vmm boots a
// guest that reboots with --on-reboot=restart in a new VM, so it gets a
// new ID too: harmless, as nothing in the guest compares it across a
// boot.)
func (d *Device) Init() error {
	var id ID
	if _, err := rand.Read(id[:]); err != nil {
		return fmt.Errorf("new VM generation ID: %w", err)
	}
	if err := d.mem.WriteAt(id[:], d.addr); err != nil {
		return fmt.Errorf("write VM generation ID at %v: %w", d.addr, err)
	}
	d.id = id
	return nil
}

// Regenerate writes a new ID and notifies the guest: for a VM restored
// from a snapshot, which may be one of many copies. The notification is
// an edge on the event line; a guest that has not bound a driver to the
// event device has masked the line and reads the ID when it does.
func (d *Device) Regenerate() error {
	if err := d.Init(); err != nil {
		return err
	}
	if err := d.notify.Trigger(); err != nil {
		return fmt.Errorf("notify the guest of a new VM generation ID: %w", err)
	}
	return nil
}

// ID returns the current ID.
func (d *Device) ID() ID { return d.id }
