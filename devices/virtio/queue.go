package virtio

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"github.com/vmm-dev/vmm/devices/virtio/internal/ringmem"
	"github.com/vmm-dev/vmm/memory"
)

// Split virtqueue flags (virtio 1.2 §2.7.5, §2.7.6, §2.7.8).
const (
	DescFlagNext         uint16 = 1 // VIRTQ_DESC_F_NEXT
	DescFlagWrite        uint16 = 2 // VIRTQ_DESC_F_WRITE: device-writable buffer
	DescFlagIndirect     uint16 = 4 // VIRTQ_DESC_F_INDIRECT
	AvailFlagNoInterrupt uint16 = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
	UsedFlagNoNotify     uint16 = 1 // VIRTQ_USED_F_NO_NOTIFY
)

// MaxQueueSize is the largest split virtqueue (virtio 1.2 §2.7).
const MaxQueueSize = 32768

// DescriptorSize is the size of one struct virtq_desc.
const DescriptorSize = 16

// Ring part sizes and alignments (virtio 1.2 §2.7, the table at its start).
// The avail and used sizes include used_event and avail_event.
func DescTableSize(size uint16) uint64 { return DescriptorSize * uint64(size) }
func AvailRingSize(size uint16) uint64 { return 6 + 2*uint64(size) }
func UsedRingSize(size uint16) uint64  { return 6 + 8*uint64(size) }

const (
	DescTableAlign = 16
	AvailRingAlign = 2
	UsedRingAlign  = 4
)

// Byte offsets inside the rings.
const (
	ringFlags = 0
	ringIdx   = 2
	ringStart = 4
)

// QueueConfig is what the driver programs for one queue (virtio 1.2 §4.2.3.2).
type QueueConfig struct {
	Size      uint16
	DescTable memory.GuestAddr // Descriptor Area
	AvailRing memory.GuestAddr // Driver Area
	UsedRing  memory.GuestAddr // Device Area
}

// Queue is the device side of one split virtqueue (virtio 1.2 §2.7).
//
// Pop, Push, EnableNotification and NeedsInterrupt keep the device's
// position in the rings and must be called by one goroutine at a time;
// Break may be called from anywhere.
type Queue struct {
	mem      *memory.Memory
	size     uint16
	indirect bool // VIRTIO_F_INDIRECT_DESC negotiated
	eventIdx bool // VIRTIO_F_EVENT_IDX negotiated

	desc  []byte        // descriptor table, read only by copying entries out
	avail ringmem.Span  // driver-written: flags, idx, ring[], used_event
	used  ringmem.Span  // device-written: flags, idx, avail_event
	elems []byte        // used ring bytes, for the 8-byte used elements
	state atomic.Uint32 // 1 once broken
	// usedAt and usedLen place the used ring, for the VMM's dirty log
	// (memory.MarkDirty): every write the device makes there is marked.
	usedAt  memory.GuestAddr
	usedLen uint64

	nextAvail uint16 // next avail ring entry to consume
	nextUsed  uint16 // used idx after the last Push
	signalled uint16 // used idx when NeedsInterrupt last ran
}

// NewQueue validates cfg against guest RAM and the device's maxSize, and
// returns the queue with the negotiated features applied.
func NewQueue(mem *memory.Memory, cfg QueueConfig, maxSize uint16, features uint64) (*Queue, error) {
	n := cfg.Size
	if n == 0 || n > maxSize || n > MaxQueueSize || n&(n-1) != 0 {
		return nil, fmt.Errorf("%w: %d (maximum %d, must be a power of two)", ErrQueueSize, n, maxSize)
	}
	if cfg.DescTable%DescTableAlign != 0 || cfg.AvailRing%AvailRingAlign != 0 || cfg.UsedRing%UsedRingAlign != 0 {
		return nil, fmt.Errorf("%w: descriptors %v, avail %v, used %v (need 16, 2, 4)",
			ErrQueueAlign, cfg.DescTable, cfg.AvailRing, cfg.UsedRing)
	}
	desc, err := mem.Slice(cfg.DescTable, DescTableSize(n))
	if err != nil {
		return nil, fmt.Errorf("%w: descriptor table: %w", ErrQueueAddress, err)
	}
	avail, err := ringmem.NewSpan(mem, cfg.AvailRing, AvailRingSize(n))
	if err != nil {
		return nil, fmt.Errorf("%w: avail ring: %w", ErrQueueAddress, err)
	}
	used, err := ringmem.NewSpan(mem, cfg.UsedRing, UsedRingSize(n))
	if err != nil {
		return nil, fmt.Errorf("%w: used ring: %w", ErrQueueAddress, err)
	}
	elems, err := mem.Slice(cfg.UsedRing, UsedRingSize(n))
	if err != nil {
		return nil, fmt.Errorf("%w: used ring: %w", ErrQueueAddress, err)
	}
	return &Queue{
		mem:      mem,
		size:     n,
		indirect: features&FeatureIndirectDesc != 0,
		eventIdx: features&FeatureEventIdx != 0,
		desc:     desc,
		avail:    avail,
		used:     used,
		elems:    elems,
		usedAt:   cfg.UsedRing,
		usedLen:  UsedRingSize(n),
	}, nil
}

// Size returns the number of entries in the queue.
func (q *Queue) Size() uint16 { return q.size }

// Break stops the queue: later Pop and Push calls return ErrQueueBroken.
func (q *Queue) Break() { q.state.Store(1) }

// Broken reports whether the queue was stopped.
func (q *Queue) Broken() bool { return q.state.Load() != 0 }

func (q *Queue) fail(err error) error {
	q.Break()
	return err
}

// Pop takes the next available descriptor chain into c, reusing c's
// slices. It reports false when the driver has made nothing new
// available. Any error means the driver broke the ring rules; the queue is
// then broken and the device should call Activation.Fail.
func (q *Queue) Pop(c *Chain) (bool, error) {
	if q.Broken() {
		return false, ErrQueueBroken
	}
	// The atomic load orders every read below after the driver's writes
	// that preceded its idx update (virtio 1.2 §2.7.13.3.1).
	availIdx := q.avail.Load16(ringIdx)
	pending := availIdx - q.nextAvail
	if pending == 0 {
		return false, nil
	}
	if pending > q.size {
		return false, q.fail(fmt.Errorf("%w: avail idx %d is %d entries past the device's %d (queue size %d)",
			ErrAvailRing, availIdx, pending, q.nextAvail, q.size))
	}
	slot := uint64(q.nextAvail & (q.size - 1))
	head := q.avail.Load16(ringStart + 2*slot)
	if head >= q.size {
		return false, q.fail(fmt.Errorf("%w: entry %d names descriptor %d of %d", ErrAvailRing, slot, head, q.size))
	}
	q.nextAvail++
	if err := q.readChain(head, c); err != nil {
		return false, q.fail(fmt.Errorf("chain at descriptor %d: %w", head, err))
	}
	return true, nil
}

// Push returns the chain whose head is head to the driver, reporting n
// bytes written into its device-writable buffers (virtio 1.2 §2.7.8).
func (q *Queue) Push(head uint16, n uint32) error {
	if q.Broken() {
		return ErrQueueBroken
	}
	if head >= q.size {
		return fmt.Errorf("%w: head %d of %d", ErrUsedRing, head, q.size)
	}
	off := ringStart + 8*uint64(q.nextUsed&(q.size-1))
	binary.LittleEndian.PutUint32(q.elems[off:], uint32(head))
	binary.LittleEndian.PutUint32(q.elems[off+4:], n)
	q.nextUsed++
	// §2.7.8.2: the element is complete before idx moves; the atomic
	// store publishes it.
	if !q.used.Store16(ringIdx, q.nextUsed) {
		return q.fail(fmt.Errorf("%w: used idx word keeps changing", ErrUsedRing))
	}
	q.mem.MarkDirty(q.usedAt, q.usedLen)
	return nil
}

// EnableNotification prepares the device to sleep until the next
// notification and reports whether buffers arrived meanwhile, in which
// case the caller should Pop again instead of sleeping. With
// VIRTIO_F_EVENT_IDX it asks to be notified of the very next buffer
// (avail_event, §2.7.10); without it the driver always notifies because
// the device never sets VIRTQ_USED_F_NO_NOTIFY.
func (q *Queue) EnableNotification() (bool, error) {
	if q.Broken() {
		return false, ErrQueueBroken
	}
	if q.eventIdx {
		if !q.used.Store16(ringStart+8*uint64(q.size), q.nextAvail) {
			return false, q.fail(fmt.Errorf("%w: avail_event word keeps changing", ErrUsedRing))
		}
		q.mem.MarkDirty(q.usedAt, q.usedLen)
	}
	// Sequentially consistent atomics order the avail_event store before
	// this load, the store-load barrier §2.7.13.4 asks of the driver's
	// mirror image.
	return q.avail.Load16(ringIdx) != q.nextAvail, nil
}

// NeedsInterrupt reports whether the driver wants a used buffer
// notification for the buffers pushed since the last call (virtio 1.2
// §2.7.7).
func (q *Queue) NeedsInterrupt() bool {
	old, cur := q.signalled, q.nextUsed
	q.signalled = cur
	if old == cur {
		return false
	}
	if !q.eventIdx {
		return q.avail.Load16(ringFlags)&AvailFlagNoInterrupt == 0
	}
	// Notify when used idx stepped past used_event since the last
	// notification, in 16-bit wrapping arithmetic.
	usedEvent := q.avail.Load16(ringStart + 2*uint64(q.size))
	return cur-usedEvent-1 < cur-old
}
