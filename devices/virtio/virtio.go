// Package virtio implements the device side of virtio 1.2: split
// virtqueues (§2.7), the virtio-mmio transport version 2 (§4.2), and the
// contract between the transport and device models (block, net) that live
// in subpackages.
//
// Everything the guest puts in memory is treated as hostile: descriptors
// are copied out before they are checked, every address is checked against
// guest RAM, and a driver that breaks the ring rules gets the device marked
// DEVICE_NEEDS_RESET (§2.1) rather than a crashed VMM.
package virtio

import (
	"errors"
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// DeviceType is the virtio device ID (virtio 1.2 §5).
type DeviceType uint32

const (
	DeviceNet     DeviceType = 1
	DeviceBlock   DeviceType = 2
	DeviceEntropy DeviceType = 4
	DeviceBalloon DeviceType = 5
	DeviceVsock   DeviceType = 19
)

func (t DeviceType) String() string {
	switch t {
	case DeviceNet:
		return "net"
	case DeviceBlock:
		return "block"
	case DeviceEntropy:
		return "entropy"
	case DeviceBalloon:
		return "balloon"
	case DeviceVsock:
		return "vsock"
	}
	return fmt.Sprintf("virtio device type %d", uint32(t))
}

// Reserved feature bits the transport offers for every device (virtio 1.2 §6).
const (
	FeatureIndirectDesc uint64 = 1 << 28 // VIRTIO_F_INDIRECT_DESC
	FeatureEventIdx     uint64 = 1 << 29 // VIRTIO_F_EVENT_IDX
	FeatureVersion1     uint64 = 1 << 32 // VIRTIO_F_VERSION_1
)

// TransportFeatures are offered on top of a device's own features.
const TransportFeatures = FeatureIndirectDesc | FeatureEventIdx | FeatureVersion1

// Device status bits (virtio 1.2 §2.1).
const (
	StatusAcknowledge uint32 = 1
	StatusDriver      uint32 = 2
	StatusDriverOK    uint32 = 4
	StatusFeaturesOK  uint32 = 8
	StatusNeedsReset  uint32 = 64
	StatusFailed      uint32 = 128
)

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrQueueSize: zero, not a power of two, or above the device maximum.
	ErrQueueSize = errors.New("invalid virtqueue size")
	// ErrQueueAlign: a ring part is not aligned as §2.7 requires.
	ErrQueueAlign = errors.New("misaligned virtqueue ring")
	// ErrQueueAddress: a ring part is not wholly inside guest RAM.
	ErrQueueAddress = errors.New("virtqueue ring outside guest RAM")
	// ErrAvailRing: avail idx ran more than the queue size ahead, or a
	// ring entry names a descriptor past the table.
	ErrAvailRing = errors.New("corrupt available ring")
	// ErrDescriptorChain: a next index past the table, a loop, or a chain
	// longer than the queue size.
	ErrDescriptorChain = errors.New("corrupt descriptor chain")
	// ErrIndirect: an indirect descriptor the rules of §2.7.5.3 forbid.
	ErrIndirect = errors.New("invalid indirect descriptor")
	// ErrBufferAddress: a buffer not wholly inside one guest RAM region.
	ErrBufferAddress = errors.New("descriptor buffer outside guest RAM")
	// ErrDescriptorOrder: a device-readable buffer after a device-writable one.
	ErrDescriptorOrder = errors.New("device-readable descriptor after device-writable one")
	// ErrQueueBroken: the queue was stopped after an earlier error.
	ErrQueueBroken = errors.New("virtqueue is broken")
	// ErrUsedRing: the used ring could not be updated.
	ErrUsedRing = errors.New("cannot update used ring")
	// ErrFeatures: the driver accepted features that cannot be used.
	ErrFeatures = errors.New("unacceptable driver features")
	// ErrDevice: a device model is unusable (bad queue sizes, no queues).
	ErrDevice = errors.New("invalid virtio device")
)

// Device is one virtio device model behind a transport.
//
// The transport calls ReadConfig and WriteConfig from vCPU goroutines and
// serializes Activate and Reset. Between Activate and Reset the device
// owns its queues; it processes them on its own goroutines.
type Device interface {
	// Type returns the virtio device ID.
	Type() DeviceType
	// Features returns the device-specific feature bits; the transport
	// adds TransportFeatures.
	Features() uint64
	// QueueMaxSizes returns the largest size of each queue, in queue
	// order; each is a power of two no larger than 32768.
	QueueMaxSizes() []uint16
	// ReadConfig fills data from the device configuration space at
	// offset. Bytes past the end of the space read as zero.
	ReadConfig(offset uint64, data []byte)
	// WriteConfig stores data into the configuration space at offset.
	WriteConfig(offset uint64, data []byte)
	// Activate starts the device once the driver sets DRIVER_OK.
	Activate(act Activation) error
	// Reset stops the device's workers and forgets its queues. It returns
	// only when no worker touches guest memory any more. It is called on
	// a driver reset whether or not the device was activated.
	Reset()
}

// Quiescer is a Device with state that a driver reset clears but a
// snapshot must keep (the balloon's count of the driver's pages). Core
// stops it with Quiesce instead of Reset: its workers end as in Reset,
// buffers it holds go back to their rings, the rest stays; Activate then
// starts it again on the same queues.
type Quiescer interface {
	Quiesce()
}

// Activation is what a device receives when the driver sets DRIVER_OK.
type Activation struct {
	// Memory is guest RAM.
	Memory *memory.Memory
	// Features are the negotiated features, transport bits included.
	Features uint64
	// Queues holds one entry per QueueMaxSizes entry; nil for a queue
	// the driver did not enable.
	Queues []*Queue
	// Kicks[i] is signalled whenever the driver notifies queue i, whether
	// through KVM_IOEVENTFD or a QueueNotify write seen by the transport.
	Kicks []*EventFD
	// Interrupt raises the used-buffer interrupt. Devices normally call
	// SignalUsed, which honours the driver's suppression.
	Interrupt func() error
	// QueueInterrupt, when set, raises the used-buffer interrupt of one
	// queue: transports with a vector per queue (virtio-pci with MSI-X)
	// set it, and SignalUsed prefers it.
	QueueInterrupt func(queue int) error
	// Fail marks the device DEVICE_NEEDS_RESET after an error the driver
	// caused and cannot be told about through a request status; it stops
	// every queue (their Pop returns ErrQueueBroken). Safe from any
	// goroutine, including device workers.
	Fail func(err error)
}

// SignalUsed raises the used-buffer interrupt for q unless the driver
// asked for none at this point (virtio 1.2 §2.7.7).
func (a Activation) SignalUsed(q *Queue) error {
	if !q.NeedsInterrupt() {
		return nil
	}
	if a.QueueInterrupt != nil {
		for i, x := range a.Queues {
			if x == q {
				return a.QueueInterrupt(i)
			}
		}
	}
	return a.Interrupt()
}
