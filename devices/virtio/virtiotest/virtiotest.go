// Package virtiotest plays the guest's virtio driver against a device
// model through the virtio-mmio registers and guest memory built from Go
// slices, so device models are tested without KVM (in the manner of a
// mock driver). It negotiates features, sets up split virtqueues, builds
// direct and indirect descriptor chains, kicks, and waits for used
// buffers; it also writes raw, malformed rings for hostile-guest tests.
//
// Ring indices go through the same atomic accessors the device uses, so
// `go test -race` checks the ordering between driver and device.
package virtiotest

import (
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/memory"
)

// DefaultTimeout is how long waits last before they report ErrTimeout.
const DefaultTimeout = 5 * time.Second

// Sentinel errors.
var (
	// ErrTimeout: the device did not answer in time.
	ErrTimeout = errors.New("virtio test driver: timed out")
	// ErrRefused: the device refused a step of initialization.
	ErrRefused = errors.New("virtio test driver: device refused")
	// ErrNoSpace: guest memory or descriptors ran out.
	ErrNoSpace = errors.New("virtio test driver: out of space")
	// ErrDeviceBug: the device wrote something a driver must not accept.
	ErrDeviceBug = errors.New("virtio test driver: device misbehaved")
)

// NewMemory returns size bytes of guest RAM at guest address 0, backed by
// a Go slice so the race detector watches both sides of the rings.
func NewMemory(size uint64) *memory.Memory {
	return memory.FromSlices(memory.Region{Base: 0, Host: make([]byte, size)})
}

// IRQ is a devices.Interrupt for tests, backed by an eventfd: Trigger is
// one system call, as the machine's KVM_IRQ_LINE pulse is two, and the
// driver side wakes through Go's poller, so a device worker pays about
// what it pays in a real VM rather than a Go scheduler hand-off.
type IRQ struct {
	count atomic.Uint64
	efd   *virtio.EventFD
	err   error // eventfd creation failed: Trigger and Wait report it
}

// NewIRQ returns an IRQ that has never fired. Close releases its eventfd.
func NewIRQ() *IRQ {
	e, err := virtio.NewEventFD()
	return &IRQ{efd: e, err: err}
}

// Close releases the eventfd.
func (i *IRQ) Close() error {
	if i.err != nil {
		return nil
	}
	return i.efd.Close()
}

// Trigger fires the interrupt.
func (i *IRQ) Trigger() error {
	if i.err != nil {
		return i.err
	}
	i.count.Add(1)
	return i.efd.Signal()
}

// Count returns how many times the interrupt fired.
func (i *IRQ) Count() uint64 { return i.count.Load() }

// Wait blocks until the interrupt fires, or fired since the last Wait,
// and reports false if it did not within timeout. Each firing wakes one
// waiter; callers that may share an IRQ wait in short slices and re-check
// what they wait for, as WaitUsed does.
func (i *IRQ) Wait(timeout time.Duration) (bool, error) {
	if i.err != nil {
		return false, i.err
	}
	if err := i.efd.SetDeadline(time.Now().Add(timeout)); err != nil {
		return false, err
	}
	_, err := i.efd.Wait()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false, nil
	}
	return err == nil, err
}

// WaitFor waits until Count reaches n, reporting false on timeout.
func (i *IRQ) WaitFor(n uint64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for i.Count() < n {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		if _, err := i.Wait(min(left, waitSlice)); err != nil {
			return false
		}
	}
	return true
}

// waitSlice bounds one sleep on an IRQ, so a wake taken by another waiter
// of the same IRQ costs a few milliseconds, not a test timeout.
const waitSlice = 10 * time.Millisecond

// Attach puts dev behind a virtio-mmio transport on ram bytes of fresh
// guest memory and returns the driver for it, with the transport. The
// transport and the IRQ are closed when tb ends; dev is the caller's.
func Attach(tb testing.TB, dev virtio.Device, ram uint64) (*Driver, *virtio.MMIO) {
	tb.Helper()
	mem := NewMemory(ram)
	irq := NewIRQ()
	m, err := virtio.NewMMIO(dev, mem, irq)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := errors.Join(m.Close(), irq.Close()); err != nil {
			tb.Error(err)
		}
	})
	return NewDriver(m, mem, irq), m
}
