package virtio

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vmm-dev/vmm/devices"
	"github.com/vmm-dev/vmm/memory"
)

// maxQueues bounds a device's queue count; virtio-net with many queue
// pairs stays far below it.
const maxQueues = 1024

// MMIO is the virtio-mmio version 2 transport (virtio 1.2 §4.2) for one
// device. It implements bus.Device for a MMIOSize window.
type MMIO struct {
	dev      Device
	mem      *memory.Memory
	irq      devices.Interrupt
	maxSizes []uint16
	offered  uint64
	kicks    []*EventFD

	// Touched by device workers without mu: a worker may be inside Fail
	// or Interrupt while a vCPU holds mu and waits in Device.Reset.
	interruptStatus  atomic.Uint32
	needsReset       atomic.Bool
	running          atomic.Bool // DRIVER_OK set and device activated
	configGeneration atomic.Uint32
	live             atomic.Pointer[[]*Queue]
	failMu           sync.Mutex
	failure          error

	mu             sync.Mutex
	closed         bool
	status         uint32
	deviceFeatSel  uint32
	driverFeatSel  uint32
	driverFeatures uint64
	queueSel       uint32
	queues         []queueRegs
}

// queueRegs are one queue's registers as the driver last wrote them.
type queueRegs struct {
	num                  uint32
	desc, driver, device uint64
	ready                bool
	queue                *Queue // built when the driver sets QueueReady
}

// NewMMIO wraps dev in a virtio-mmio transport that raises irq and lets
// the device reach mem. It creates one notification eventfd per queue.
func NewMMIO(dev Device, mem *memory.Memory, irq devices.Interrupt) (*MMIO, error) {
	sizes := dev.QueueMaxSizes()
	if len(sizes) == 0 || len(sizes) > maxQueues {
		return nil, fmt.Errorf("%w: %v device has %d queues (1 to %d)", ErrDevice, dev.Type(), len(sizes), maxQueues)
	}
	for i, n := range sizes {
		if n == 0 || n > MaxQueueSize || n&(n-1) != 0 {
			return nil, fmt.Errorf("%w: %v device queue %d: maximum size %d is not a power of two up to %d",
				ErrDevice, dev.Type(), i, n, MaxQueueSize)
		}
	}
	m := &MMIO{
		dev:      dev,
		mem:      mem,
		irq:      irq,
		maxSizes: append([]uint16(nil), sizes...),
		offered:  dev.Features() | TransportFeatures,
		queues:   make([]queueRegs, len(sizes)),
	}
	for range sizes {
		e, err := NewEventFD()
		if err != nil {
			return nil, errors.Join(fmt.Errorf("virtio-mmio %v: %w", dev.Type(), err), m.closeKicks())
		}
		m.kicks = append(m.kicks, e)
	}
	return m, nil
}

// QueueNotifyFDs returns one eventfd per queue. The machine registers each
// with KVM_IOEVENTFD at window base + RegQueueNotify, 4 bytes, datamatch
// the queue index, so guest notifications never exit to userspace.
func (m *MMIO) QueueNotifyFDs() []int {
	fds := make([]int, len(m.kicks))
	for i, k := range m.kicks {
		fds[i] = k.FD()
	}
	return fds
}

// Failure returns the error that last marked the device DEVICE_NEEDS_RESET,
// or nil.
func (m *MMIO) Failure() error {
	m.failMu.Lock()
	defer m.failMu.Unlock()
	return m.failure
}

// ConfigChanged tells the driver that the device configuration space
// changed (virtio 1.2 §2.5, §4.2.2: ConfigGeneration).
func (m *MMIO) ConfigChanged() error {
	m.configGeneration.Add(1)
	if !m.running.Load() {
		return nil
	}
	return m.raise(InterruptConfigChange)
}

// Close stops the device and releases the eventfds.
func (m *MMIO) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	m.dev.Reset()
	m.running.Store(false)
	return m.closeKicks()
}

func (m *MMIO) closeKicks() error {
	var errs []error
	for _, k := range m.kicks {
		if err := k.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	m.kicks = nil
	return errors.Join(errs...)
}

func (m *MMIO) raise(bit uint32) error {
	m.interruptStatus.Or(bit)
	if err := m.irq.Trigger(); err != nil {
		return fmt.Errorf("virtio-mmio %v: interrupt: %w", m.dev.Type(), err)
	}
	return nil
}

func (m *MMIO) raiseUsed() error { return m.raise(InterruptUsedBuffer) }

// fail marks the device DEVICE_NEEDS_RESET and stops its queues (virtio
// 1.2 §2.1.2). Only the first failure since the last reset is recorded.
func (m *MMIO) fail(err error) {
	if m.needsReset.Swap(true) {
		return
	}
	err = fmt.Errorf("virtio-mmio %v: %w", m.dev.Type(), err)
	m.failMu.Lock()
	m.failure = err
	m.failMu.Unlock()
	if qs := m.live.Load(); qs != nil {
		for _, q := range *qs {
			if q != nil {
				q.Break()
			}
		}
	}
	slog.Warn("virtio device needs reset", "err", err)
	// §2.1.2: once DRIVER_OK is set, setting DEVICE_NEEDS_RESET must be
	// announced with a configuration change notification.
	if m.running.Load() {
		if ierr := m.raise(InterruptConfigChange); ierr != nil {
			slog.Warn("virtio device needs reset: cannot notify the driver", "err", ierr)
		}
	}
}
