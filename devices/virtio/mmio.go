package virtio

import (
	"fmt"
	"sync/atomic"

	"github.com/vmm-dev/vmm/devices"
	"github.com/vmm-dev/vmm/memory"
)

// MMIO is the virtio-mmio version 2 transport (virtio 1.2 §4.2) for one
// device. It implements bus.Device for a MMIOSize window; the
// transport-neutral state lives in its Core.
type MMIO struct {
	*Core
	irq devices.Interrupt
	// interruptStatus is written by device workers through the
	// Interrupter methods, without any lock.
	interruptStatus atomic.Uint32
}

// NewMMIO wraps dev in a virtio-mmio transport that raises irq and lets
// the device reach mem. It creates one notification eventfd per queue.
func NewMMIO(dev Device, mem *memory.Memory, irq devices.Interrupt) (*MMIO, error) {
	m := &MMIO{irq: irq}
	core, err := NewCore(dev, mem, mmioInterrupter{m}, func() { m.interruptStatus.Store(0) })
	if err != nil {
		return nil, fmt.Errorf("virtio-mmio: %w", err)
	}
	m.Core = core
	return m, nil
}

// QueueNotifyFDs returns one eventfd per queue. The machine registers each
// with KVM_IOEVENTFD at window base + RegQueueNotify, 4 bytes, datamatch
// the queue index, so guest notifications never exit to userspace.
func (m *MMIO) QueueNotifyFDs() []int { return m.Core.QueueNotifyFDs() }

// mmioInterrupter raises the one interrupt line of the device with the
// cause in InterruptStatus (§4.2.2).
type mmioInterrupter struct{ m *MMIO }

func (i mmioInterrupter) UsedBuffer(int) error { return i.m.raise(InterruptUsedBuffer) }

func (i mmioInterrupter) ConfigChange() error { return i.m.raise(InterruptConfigChange) }

func (m *MMIO) raise(bit uint32) error {
	m.interruptStatus.Or(bit)
	if err := m.irq.Trigger(); err != nil {
		return fmt.Errorf("virtio-mmio %v: interrupt: %w", m.Type(), err)
	}
	return nil
}

// InterruptStatus returns the InterruptStatus register: the causes raised
// that the driver has not acknowledged.
func (m *MMIO) InterruptStatus() uint32 { return m.interruptStatus.Load() }
