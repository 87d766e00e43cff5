package virtio

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vmm-dev/vmm/memory"
)

// maxQueues bounds a device's queue count; virtio-net with many queue
// pairs stays far below it.
const maxQueues = 1024

// Interrupter is how a Core tells its transport that the driver must be
// interrupted; the transport chooses the line or vector. Both methods are
// called from device workers and vCPU goroutines, possibly while the
// transport's vCPU side waits in Device.Reset, so they must not take a
// lock that the transport holds across Core calls.
type Interrupter interface {
	// UsedBuffer reports used buffers in queue (virtio 1.2 §2.7.7).
	UsedBuffer(queue int) error
	// ConfigChange reports a configuration change or DEVICE_NEEDS_RESET
	// (virtio 1.2 §2.5, §2.1.2).
	ConfigChange() error
}

// Core is the transport-neutral half of a virtio transport (virtio 1.2
// §2.1, §2.2, §3.1): the feature and queue selectors every transport
// exposes, feature negotiation, the device status state machine, queue
// set-up, activation on DRIVER_OK, reset, and DEVICE_NEEDS_RESET. A
// transport (virtio-mmio here, virtio-pci in devices/virtio/pci) only
// decodes its registers into these calls and delivers interrupts.
//
// Every method is safe for concurrent use.
type Core struct {
	dev      Device
	mem      *memory.Memory
	irq      Interrupter
	maxSizes []uint16
	offered  uint64
	kicks    []*EventFD
	onReset  func()

	// Touched by device workers without mu: a worker may be inside Fail
	// or an interrupt while a vCPU holds mu and waits in Device.Reset.
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
	quiesced       bool // Quiesce stopped the running device (persist.go)
}

// queueRegs are one queue's registers as the driver last wrote them.
type queueRegs struct {
	num                  uint32
	desc, driver, device uint64
	ready                bool
	queue                *Queue // built when the driver enables the queue
}

// QueueArea names one of a queue's three guest-physical areas (§2.7).
type QueueArea int

const (
	AreaDesc   QueueArea = iota // Descriptor Area
	AreaDriver                  // Driver Area (available ring)
	AreaDevice                  // Device Area (used ring)
)

// NewCore checks dev's queues and creates one notification eventfd per
// queue. irq receives the interrupts; onReset, if set, runs under the
// Core's lock after every device reset so the transport can forget its
// own per-device state.
func NewCore(dev Device, mem *memory.Memory, irq Interrupter, onReset func()) (*Core, error) {
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
	c := &Core{
		dev:      dev,
		mem:      mem,
		irq:      irq,
		maxSizes: append([]uint16(nil), sizes...),
		offered:  dev.Features() | TransportFeatures,
		queues:   make([]queueRegs, len(sizes)),
		onReset:  onReset,
	}
	for range sizes {
		e, err := NewEventFD()
		if err != nil {
			return nil, errors.Join(fmt.Errorf("virtio %v: %w", dev.Type(), err), c.closeKicks())
		}
		c.kicks = append(c.kicks, e)
	}
	return c, nil
}

// Type returns the device's virtio device ID.
func (c *Core) Type() DeviceType { return c.dev.Type() }

// NumQueues returns how many queues the device has.
func (c *Core) NumQueues() int { return len(c.maxSizes) }

// QueueNotifyFDs returns one eventfd per queue, for KVM_IOEVENTFD on the
// transport's notification address, so guest notifications never exit to
// userspace.
func (c *Core) QueueNotifyFDs() []int {
	fds := make([]int, len(c.kicks))
	for i, k := range c.kicks {
		fds[i] = k.FD()
	}
	return fds
}

// Failure returns the error that last marked the device DEVICE_NEEDS_RESET,
// or nil.
func (c *Core) Failure() error {
	c.failMu.Lock()
	defer c.failMu.Unlock()
	return c.failure
}

// Closed reports whether Close was called; a closed transport ignores
// every access.
func (c *Core) Closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Running reports whether the driver set DRIVER_OK and the device runs.
func (c *Core) Running() bool { return c.running.Load() }

// ConfigGeneration returns the configuration atomicity value (§2.5.1).
func (c *Core) ConfigGeneration() uint32 { return c.configGeneration.Load() }

// ConfigChanged tells the driver that the device configuration space
// changed (virtio 1.2 §2.5).
func (c *Core) ConfigChanged() error {
	c.configGeneration.Add(1)
	if !c.running.Load() {
		return nil
	}
	return c.irq.ConfigChange()
}

// Close stops the device and releases the eventfds.
func (c *Core) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	c.dev.Reset()
	c.running.Store(false)
	return c.closeKicks()
}

func (c *Core) closeKicks() error {
	var errs []error
	for _, k := range c.kicks {
		if err := k.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	c.kicks = nil
	return errors.Join(errs...)
}

// ReadConfig reads the device configuration space; after Close it reads
// zeros.
func (c *Core) ReadConfig(offset uint64, data []byte) {
	clear(data)
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.dev.ReadConfig(offset, data)
	}
}

// WriteConfig writes the device configuration space.
func (c *Core) WriteConfig(offset uint64, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.dev.WriteConfig(offset, data)
	}
}

// DeviceFeatureSel and SetDeviceFeatureSel are the device feature word
// selector; DeviceFeatures returns the selected 32 bits of the offered
// features (zero past bit 63).
func (c *Core) DeviceFeatureSel() uint32 { return c.locked(func() uint32 { return c.deviceFeatSel }) }

func (c *Core) SetDeviceFeatureSel(v uint32) { c.lockedSet(func() { c.deviceFeatSel = v }) }

func (c *Core) DeviceFeatures() uint32 {
	return c.locked(func() uint32 {
		if c.deviceFeatSel < 2 {
			return uint32(c.offered >> (32 * c.deviceFeatSel))
		}
		return 0
	})
}

// DriverFeatureSel and SetDriverFeatureSel are the driver feature word
// selector; DriverFeatures and SetDriverFeatures the selected 32 bits of
// what the driver accepted.
func (c *Core) DriverFeatureSel() uint32 { return c.locked(func() uint32 { return c.driverFeatSel }) }

func (c *Core) SetDriverFeatureSel(v uint32) { c.lockedSet(func() { c.driverFeatSel = v }) }

func (c *Core) DriverFeatures() uint32 {
	return c.locked(func() uint32 {
		if c.driverFeatSel < 2 {
			return uint32(c.driverFeatures >> (32 * c.driverFeatSel))
		}
		return 0
	})
}

func (c *Core) SetDriverFeatures(v uint32) {
	c.lockedSet(func() {
		// §2.2.1: features are fixed once FEATURES_OK is set.
		if c.driverFeatSel >= 2 || c.status&StatusFeaturesOK != 0 {
			return
		}
		shift := 32 * c.driverFeatSel
		c.driverFeatures = c.driverFeatures&^(0xffff_ffff<<shift) | uint64(v)<<shift
	})
}

// QueueSel and SetQueueSel are the queue selector. A selector past the
// last queue selects nothing: reads give zero, writes are ignored.
func (c *Core) QueueSel() uint32 { return c.locked(func() uint32 { return c.queueSel }) }

func (c *Core) SetQueueSel(v uint32) { c.lockedSet(func() { c.queueSel = v }) }

// QueueNumMax returns the selected queue's maximum size, 0 if none.
func (c *Core) QueueNumMax() uint32 {
	return c.locked(func() uint32 {
		if c.queueSel < uint32(len(c.maxSizes)) {
			return uint32(c.maxSizes[c.queueSel])
		}
		return 0
	})
}

// QueueNum returns the selected queue's size as the driver set it.
func (c *Core) QueueNum() uint32 {
	return c.locked(func() uint32 {
		if q := c.selectedQueue(); q != nil {
			return q.num
		}
		return 0
	})
}

// SetQueueNum sets the selected queue's size.
func (c *Core) SetQueueNum(v uint32) {
	c.lockedSet(func() {
		if q := c.configurableQueue(); q != nil {
			q.num = v
		}
	})
}

// QueueAddr returns one of the selected queue's areas.
func (c *Core) QueueAddr(area QueueArea) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if q := c.selectedQueue(); q != nil {
		if r := q.area(area); r != nil {
			return *r
		}
	}
	return 0
}

// SetQueueAddrHalf sets the low or high 32 bits of one of the selected
// queue's areas.
func (c *Core) SetQueueAddrHalf(area QueueArea, high bool, v uint32) {
	c.lockedSet(func() {
		if q := c.configurableQueue(); q != nil {
			if r := q.area(area); r != nil {
				setHalf(r, high, v)
			}
		}
	})
}

func (q *queueRegs) area(a QueueArea) *uint64 {
	switch a {
	case AreaDesc:
		return &q.desc
	case AreaDriver:
		return &q.driver
	case AreaDevice:
		return &q.device
	}
	return nil
}

func setHalf(reg *uint64, high bool, v uint32) {
	if high {
		*reg = *reg&0xffff_ffff | uint64(v)<<32
	} else {
		*reg = *reg&^0xffff_ffff | uint64(v)
	}
}

// QueueReady reports whether the selected queue is enabled.
func (c *Core) QueueReady() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.selectedQueue()
	return q != nil && q.ready
}

// SetQueueReady enables (non-zero) or disables the selected queue.
func (c *Core) SetQueueReady(v uint32) { c.lockedSet(func() { c.writeQueueReady(v) }) }

// Status returns the device status, NEEDS_RESET included.
func (c *Core) Status() uint32 {
	return c.locked(func() uint32 {
		s := c.status
		if c.needsReset.Load() {
			s |= StatusNeedsReset
		}
		return s
	})
}

// SetStatus writes the device status; 0 resets the device.
func (c *Core) SetStatus(v uint32) { c.lockedSet(func() { c.writeStatus(v) }) }

// Notify is a driver notification of queue, when it reaches the transport
// instead of KVM_IOEVENTFD. Indexes past the last queue are ignored.
func (c *Core) Notify(queue uint32) {
	c.lockedSet(func() {
		if queue >= uint32(len(c.kicks)) {
			return
		}
		if err := c.kicks[queue].Signal(); err != nil {
			c.fail(err)
		}
	})
}

// Fail marks the device DEVICE_NEEDS_RESET for a reason the transport
// found (virtio 1.2 §2.1.2). Safe from any goroutine.
func (c *Core) Fail(err error) { c.fail(err) }

func (c *Core) locked(f func() uint32) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0
	}
	return f()
}

func (c *Core) lockedSet(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		f()
	}
}

func (c *Core) selectedQueue() *queueRegs {
	if c.queueSel >= uint32(len(c.queues)) {
		return nil
	}
	return &c.queues[c.queueSel]
}

// configurableQueue returns the selected queue if the driver may still
// program it: §4.2.2.2 and §4.1.4.3.2 forbid touching an enabled queue's
// registers, and queues are fixed once DRIVER_OK is set.
func (c *Core) configurableQueue() *queueRegs {
	q := c.selectedQueue()
	if q == nil || q.ready || c.status&StatusDriverOK != 0 {
		return nil
	}
	return q
}

func (c *Core) writeQueueReady(v uint32) {
	q := c.selectedQueue()
	if q == nil {
		return
	}
	if v == 0 {
		// Without VIRTIO_F_RING_RESET a live queue cannot be stopped on
		// its own; before DRIVER_OK the driver may change its mind.
		if c.status&StatusDriverOK == 0 {
			q.ready, q.queue = false, nil
		}
		return
	}
	if c.configurableQueue() == nil {
		return
	}
	// §3.1.1: queues are set up after FEATURES_OK, and their layout
	// depends on the negotiated features.
	if c.status&StatusFeaturesOK == 0 {
		c.fail(fmt.Errorf("queue %d enabled before FEATURES_OK", c.queueSel))
		return
	}
	if q.num > MaxQueueSize {
		c.fail(fmt.Errorf("queue %d: %w: %d", c.queueSel, ErrQueueSize, q.num))
		return
	}
	cfg := QueueConfig{
		Size:      uint16(q.num),
		DescTable: memory.GuestAddr(q.desc),
		AvailRing: memory.GuestAddr(q.driver),
		UsedRing:  memory.GuestAddr(q.device),
	}
	vq, err := NewQueue(c.mem, cfg, c.maxSizes[c.queueSel], c.driverFeatures)
	if err != nil {
		c.fail(fmt.Errorf("queue %d: %w", c.queueSel, err))
		return
	}
	q.ready, q.queue = true, vq
}

// fail marks the device DEVICE_NEEDS_RESET and stops its queues (virtio
// 1.2 §2.1.2). Only the first failure since the last reset is recorded.
func (c *Core) fail(err error) {
	if c.needsReset.Swap(true) {
		return
	}
	err = fmt.Errorf("virtio %v: %w", c.dev.Type(), err)
	c.failMu.Lock()
	c.failure = err
	c.failMu.Unlock()
	if qs := c.live.Load(); qs != nil {
		for _, q := range *qs {
			if q != nil {
				q.Break()
			}
		}
	}
	slog.Warn("virtio device needs reset", "err", err)
	// §2.1.2: once DRIVER_OK is set, setting DEVICE_NEEDS_RESET must be
	// announced with a configuration change notification.
	if c.running.Load() {
		if ierr := c.irq.ConfigChange(); ierr != nil {
			slog.Warn("virtio device needs reset: cannot notify the driver", "err", ierr)
		}
	}
}
