package machine

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// irqLine is a guest interrupt line backed by an eventfd that KVM_IRQFD
// binds to a GSI: a write injects an edge on the in-kernel IOAPIC without
// an ioctl or a vCPU exit.
type irqLine struct {
	fd  int
	gsi uint32
}

func (m *Machine) newIRQLine(gsi uint32) (*irqLine, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("eventfd for GSI %d: %w", gsi, err)
	}
	m.onClose(func() error { return unix.Close(fd) })
	if err := m.vm.RegisterIRQFD(fd, gsi); err != nil {
		return nil, fmt.Errorf("GSI %d: %w", gsi, err)
	}
	return &irqLine{fd: fd, gsi: gsi}, nil
}

// Trigger raises one edge. EAGAIN means the counter is saturated, which
// only happens when KVM has not consumed earlier edges yet: the
// interrupt is already pending, so nothing is lost.
func (l *irqLine) Trigger() error {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(l.fd, one[:]); err != nil && err != unix.EAGAIN {
		return fmt.Errorf("raise GSI %d: %w", l.gsi, err)
	}
	return nil
}
