// Package devices holds the small contracts every emulated device shares
// with the machine that wires it: how it interrupts the guest and how it
// asks the machine to power off or reset.
package devices

// Interrupt raises a device's interrupt line towards the guest. Lines are
// edge-triggered: each Trigger delivers one interrupt. The machine pulses
// a GSI of KVM's irqchip (KVM_IRQ_LINE); tests use a counter.
type Interrupt interface {
	Trigger() error
}

// PowerAction is what a guest asked of the platform.
type PowerAction int

const (
	// PowerOff is an ACPI S5 request (the guest's poweroff).
	PowerOff PowerAction = iota + 1
	// Reset is a platform reset (ACPI reset register, i8042 pulse).
	Reset
)

func (a PowerAction) String() string {
	switch a {
	case PowerOff:
		return "power off"
	case Reset:
		return "reset"
	}
	return "unknown power action"
}

// PowerHandler receives power requests. It must not block: the machine
// records the request and stops the vCPUs.
type PowerHandler func(PowerAction)
