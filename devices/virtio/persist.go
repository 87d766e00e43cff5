package virtio

import (
	"errors"
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// Snapshot state of the transport-neutral device (Core) and its queues:
// what the driver programmed (features, status, queue addresses) and
// where the device stood in each ring (virtio 1.2 §2.7: next available
// entry to consume, next used index), generic over virtio-mmio and
// virtio-pci. A device's own state (a NIC's MAC, a balloon's target) is
// its package's.

// ErrState reports a saved state that cannot be loaded.
var ErrState = errors.New("invalid virtio device state")

// QueueState is one queue's programmed registers and ring positions.
type QueueState struct {
	Num                  uint32
	Desc, Driver, Device uint64
	Ready                bool
	NextAvail, NextUsed  uint16
	Signalled            uint16
}

// CoreState is a Core's state.
type CoreState struct {
	DeviceType       DeviceType
	Status           uint32
	DeviceFeatSel    uint32
	DriverFeatSel    uint32
	DriverFeatures   uint64
	QueueSel         uint32
	ConfigGeneration uint32
	NeedsReset       bool
	Failure          string
	Queues           []QueueState
}

// Rewind gives back the last n chains Pop took and no Push returned, so
// they are taken again by the next Pop: for a device that stops holding
// unused buffers (a NIC's receive buffers) and must not lose them.
func (q *Queue) Rewind(n uint16) { q.nextAvail -= n }

// Quiesce stops a running device's workers once their requests in
// flight have completed (Device.Reset, or Quiescer.Quiesce; either keeps
// the Core's queues and their positions), so Save sees rings that no
// worker moves. Unquiesce
// starts them again on the same queues.
func (c *Core) Quiesce() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || !c.running.Load() || c.quiesced {
		return
	}
	if q, ok := c.dev.(Quiescer); ok {
		q.Quiesce()
	} else {
		c.dev.Reset()
	}
	c.quiesced = true
}

// Unquiesce undoes Quiesce: the device is activated again with its
// queues where they were, and every queue is kicked so requests the
// driver made meanwhile are served.
func (c *Core) Unquiesce() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.quiesced {
		return
	}
	c.quiesced = false
	if c.closed || c.needsReset.Load() {
		return
	}
	c.activate()
	c.kickAll()
}

func (c *Core) kickAll() {
	for _, k := range c.kicks {
		if err := k.Signal(); err != nil {
			c.fail(fmt.Errorf("kick after restore: %w", err))
			return
		}
	}
}

// Save returns the Core's state. The device must be quiesced or never
// have been activated, so that no worker moves the rings.
func (c *Core) Save() (CoreState, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running.Load() && !c.quiesced {
		return CoreState{}, fmt.Errorf("virtio %v: save: the device is running: quiesce it first", c.dev.Type())
	}
	s := CoreState{
		DeviceType: c.dev.Type(), Status: c.status, DeviceFeatSel: c.deviceFeatSel,
		DriverFeatSel: c.driverFeatSel, DriverFeatures: c.driverFeatures, QueueSel: c.queueSel,
		ConfigGeneration: c.configGeneration.Load(), NeedsReset: c.needsReset.Load(),
	}
	if err := c.Failure(); err != nil && s.NeedsReset {
		s.Failure = err.Error()
	}
	for _, r := range c.queues {
		qs := QueueState{Num: r.num, Desc: r.desc, Driver: r.driver, Device: r.device, Ready: r.ready}
		if r.queue != nil {
			qs.NextAvail, qs.NextUsed, qs.Signalled = r.queue.nextAvail, r.queue.nextUsed, r.queue.signalled
		}
		s.Queues = append(s.Queues, qs)
	}
	return s, nil
}

// Restore loads a saved state into a Core that the driver has not
// touched (a freshly built device), checking it as the driver's own
// register writes are checked: features offered, queue sizes, ring
// addresses inside guest RAM. A device that was running is activated
// and every queue kicked, so nothing in flight at the snapshot waits
// forever for a notification that came before it.
func (c *Core) Restore(s CoreState) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%w: virtio %v: %s", ErrState, c.dev.Type(), fmt.Sprintf(format, a...))
	}
	switch {
	case c.closed:
		return fail("device closed")
	case c.status != 0:
		return fail("the driver already set up this device")
	case s.DeviceType != c.dev.Type():
		return fail("state of a %v device", s.DeviceType)
	case len(s.Queues) != len(c.queues):
		return fail("%d queues saved, the device has %d", len(s.Queues), len(c.queues))
	case s.DriverFeatures&^c.offered != 0:
		return fail("driver features %#x not offered (%#x)", s.DriverFeatures, c.offered)
	case s.Status&^0xff != 0:
		return fail("status %#x", s.Status)
	}
	queues := make([]queueRegs, len(c.queues))
	for i, q := range s.Queues {
		queues[i] = queueRegs{num: q.Num, desc: q.Desc, driver: q.Driver, device: q.Device}
		if !q.Ready {
			continue
		}
		if q.Num > MaxQueueSize {
			return fail("queue %d size %d", i, q.Num)
		}
		vq, err := NewQueue(c.mem, QueueConfig{Size: uint16(q.Num), DescTable: memory.GuestAddr(q.Desc),
			AvailRing: memory.GuestAddr(q.Driver), UsedRing: memory.GuestAddr(q.Device)}, c.maxSizes[i], s.DriverFeatures)
		if err != nil {
			return fail("queue %d: %v", i, err)
		}
		if q.NextAvail-q.NextUsed > uint16(q.Num) {
			return fail("queue %d: %d chains in flight in a queue of %d", i, q.NextAvail-q.NextUsed, q.Num)
		}
		vq.nextAvail, vq.nextUsed, vq.signalled = q.NextAvail, q.NextUsed, q.Signalled
		queues[i].ready, queues[i].queue = true, vq
	}
	c.queues = queues
	c.status = s.Status &^ StatusNeedsReset
	c.deviceFeatSel, c.driverFeatSel, c.driverFeatures, c.queueSel = s.DeviceFeatSel, s.DriverFeatSel, s.DriverFeatures, s.QueueSel
	c.configGeneration.Store(s.ConfigGeneration)
	if s.NeedsReset {
		c.needsReset.Store(true)
		c.failMu.Lock()
		c.failure = fmt.Errorf("virtio %v: before the snapshot: %s", c.dev.Type(), s.Failure)
		c.failMu.Unlock()
	}
	if c.status&StatusDriverOK != 0 {
		c.activate()
		if !c.needsReset.Load() {
			c.kickAll()
		}
	}
	return nil
}

// MMIOState is a virtio-mmio transport's state: the Core's and the
// interrupt status register.
type MMIOState struct {
	Core            CoreState
	InterruptStatus uint32
}

// Save returns the transport's state (see Core.Save).
func (m *MMIO) Save() (MMIOState, error) {
	cs, err := m.Core.Save()
	return MMIOState{Core: cs, InterruptStatus: m.interruptStatus.Load()}, err
}

// Restore loads a saved state (see Core.Restore). An interrupt the
// driver had not acknowledged is raised again: the restored in-kernel
// irqchip has the line's edge in its own state or not, and a second edge
// costs the driver one spurious check at most.
func (m *MMIO) Restore(s MMIOState) error {
	if s.InterruptStatus&^0x3 != 0 {
		return fmt.Errorf("%w: virtio-mmio interrupt status %#x", ErrState, s.InterruptStatus)
	}
	if err := m.Core.Restore(s.Core); err != nil {
		return err
	}
	m.interruptStatus.Store(s.InterruptStatus)
	if s.InterruptStatus != 0 {
		if err := m.irq.Trigger(); err != nil {
			return fmt.Errorf("virtio-mmio: restore: raise the pending interrupt: %w", err)
		}
	}
	return nil
}
