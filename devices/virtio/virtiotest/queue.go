package virtiotest

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/internal/ringmem"
	"github.com/vmm-dev/vmm/memory"
)

// Buf is one buffer of a chain, as the driver describes it.
type Buf struct {
	Addr     memory.GuestAddr
	Len      uint32
	Writable bool // device-writable
}

// Desc is a raw struct virtq_desc, for building malformed tables.
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

// Used is one used ring element.
type Used struct {
	ID  uint16
	Len uint32
}

// indirectTable is guest memory kept for one head's indirect table.
type indirectTable struct {
	addr    memory.GuestAddr
	entries int
}

// Queue is the driver side of one split virtqueue.
type Queue struct {
	d      *Driver
	Index  uint16
	Config virtio.QueueConfig

	desc  []byte
	avail ringmem.Span
	used  ringmem.Span
	elems []byte

	free     []uint16        // free descriptor indices
	chains   [][]uint16      // descriptors held by each outstanding head
	raw      []bool          // heads published by PublishRaw
	tables   []indirectTable // per head, reused
	availIdx uint16          // avail idx as last published
	kicked   uint16          // avail idx at the last Kick
	lastUsed uint16          // next used element to read
}

func newQueue(d *Driver, index uint16, cfg virtio.QueueConfig) (*Queue, error) {
	n := cfg.Size
	desc, err := d.Mem.Slice(cfg.DescTable, virtio.DescTableSize(n))
	if err != nil {
		return nil, err
	}
	avail, err := ringmem.NewSpan(d.Mem, cfg.AvailRing, virtio.AvailRingSize(n))
	if err != nil {
		return nil, err
	}
	used, err := ringmem.NewSpan(d.Mem, cfg.UsedRing, virtio.UsedRingSize(n))
	if err != nil {
		return nil, err
	}
	elems, err := d.Mem.Slice(cfg.UsedRing, virtio.UsedRingSize(n))
	if err != nil {
		return nil, err
	}
	q := &Queue{
		d: d, Index: index, Config: cfg,
		desc: desc, avail: avail, used: used, elems: elems,
		chains: make([][]uint16, n),
		raw:    make([]bool, n),
		tables: make([]indirectTable, n),
	}
	for i := int(n) - 1; i >= 0; i-- {
		q.free = append(q.free, uint16(i))
	}
	return q, nil
}

// Size returns the queue size.
func (q *Queue) Size() uint16 { return q.Config.Size }

// Free returns how many descriptors are free.
func (q *Queue) Free() int { return len(q.free) }

func (q *Queue) eventIdx() bool { return q.d.features&virtio.FeatureEventIdx != 0 }

func (q *Queue) takeDescriptors(n int) ([]uint16, error) {
	if n == 0 || n > len(q.free) {
		return nil, fmt.Errorf("%w: %d descriptors wanted, %d free", ErrNoSpace, n, len(q.free))
	}
	ids := make([]uint16, n)
	for i := range ids {
		ids[i] = q.free[len(q.free)-1]
		q.free = q.free[:len(q.free)-1]
	}
	return ids, nil
}

// Add makes bufs available as one direct chain and returns its head.
func (q *Queue) Add(bufs []Buf) (uint16, error) {
	ids, err := q.takeDescriptors(len(bufs))
	if err != nil {
		return 0, err
	}
	for i, b := range bufs {
		d := Desc{Addr: uint64(b.Addr), Len: b.Len}
		if b.Writable {
			d.Flags |= virtio.DescFlagWrite
		}
		if i+1 < len(bufs) {
			d.Flags |= virtio.DescFlagNext
			d.Next = ids[i+1]
		}
		q.WriteDesc(ids[i], d)
	}
	q.chains[ids[0]] = ids
	q.publish(ids[0])
	return ids[0], nil
}

// AddIndirect makes bufs available through one indirect table (virtio
// 1.2 §2.7.5.3) and returns the head.
func (q *Queue) AddIndirect(bufs []Buf) (uint16, error) {
	if len(bufs) == 0 {
		return 0, fmt.Errorf("%w: empty chain", ErrNoSpace)
	}
	ids, err := q.takeDescriptors(1)
	if err != nil {
		return 0, err
	}
	head := ids[0]
	t := &q.tables[head]
	if t.entries < len(bufs) {
		addr, err := q.d.Alloc(uint64(len(bufs))*virtio.DescriptorSize, 16)
		if err != nil {
			q.free = append(q.free, head)
			return 0, err
		}
		*t = indirectTable{addr: addr, entries: len(bufs)}
	}
	table := make([]Desc, len(bufs))
	for i, b := range bufs {
		table[i] = Desc{Addr: uint64(b.Addr), Len: b.Len}
		if b.Writable {
			table[i].Flags |= virtio.DescFlagWrite
		}
		if i+1 < len(bufs) {
			table[i].Flags |= virtio.DescFlagNext
			table[i].Next = uint16(i + 1)
		}
	}
	if err := q.d.WriteDescriptors(t.addr, table); err != nil {
		return 0, err
	}
	q.WriteDesc(head, Desc{Addr: uint64(t.addr), Len: uint32(len(bufs)) * virtio.DescriptorSize, Flags: virtio.DescFlagIndirect})
	q.chains[head] = ids
	q.publish(head)
	return head, nil
}

// publish places head in the next avail ring entry and then moves avail
// idx, atomically, as §2.7.13 orders it.
func (q *Queue) publish(head uint16) {
	slot := uint64(q.availIdx & (q.Config.Size - 1))
	q.avail.Store16(4+2*slot, head)
	q.availIdx++
	q.avail.Store16(2, q.availIdx)
}

// Kick notifies the device unless it suppressed notifications (virtio
// 1.2 §2.7.10), as a Linux driver does.
func (q *Queue) Kick() {
	old, cur := q.kicked, q.availIdx
	q.kicked = cur
	if q.eventIdx() {
		availEvent := q.used.Load16(4 + 8*uint64(q.Config.Size))
		if cur-availEvent-1 >= cur-old {
			return
		}
	} else if q.used.Load16(0)&virtio.UsedFlagNoNotify != 0 {
		return
	}
	q.Notify()
}

// Notify writes QueueNotify unconditionally.
func (q *Queue) Notify() {
	q.kicked = q.availIdx
	q.d.Write32(virtio.RegQueueNotify, uint32(q.Index))
}

// SetNoInterrupt sets or clears VIRTQ_AVAIL_F_NO_INTERRUPT.
func (q *Queue) SetNoInterrupt(on bool) {
	var v uint16
	if on {
		v = virtio.AvailFlagNoInterrupt
	}
	q.avail.Store16(0, v)
}

// SetUsedEvent writes used_event (VIRTIO_F_EVENT_IDX).
func (q *Queue) SetUsedEvent(v uint16) { q.avail.Store16(4+2*uint64(q.Config.Size), v) }

// AvailEvent reads the device's avail_event (VIRTIO_F_EVENT_IDX).
func (q *Queue) AvailEvent() uint16 { return q.used.Load16(4 + 8*uint64(q.Config.Size)) }

// UsedIdx reads the device's used idx.
func (q *Queue) UsedIdx() uint16 { return q.used.Load16(2) }

// PopUsed takes the next used element, if any, and frees its descriptors.
func (q *Queue) PopUsed() (Used, bool, error) {
	idx := q.used.Load16(2)
	if idx == q.lastUsed {
		return Used{}, false, nil
	}
	if idx-q.lastUsed > q.Config.Size {
		return Used{}, false, fmt.Errorf("%w: used idx %d is %d past %d", ErrDeviceBug, idx, idx-q.lastUsed, q.lastUsed)
	}
	off := 4 + 8*uint64(q.lastUsed&(q.Config.Size-1))
	id := binary.LittleEndian.Uint32(q.elems[off:])
	u := Used{ID: uint16(id), Len: binary.LittleEndian.Uint32(q.elems[off+4:])}
	q.lastUsed++
	switch {
	case id < uint32(q.Config.Size) && q.chains[id] != nil:
		q.free = append(q.free, q.chains[id]...)
		q.chains[id] = nil
	case id < uint32(q.Config.Size) && q.raw[id]:
		q.raw[id] = false
	default:
		return u, true, fmt.Errorf("%w: used id %d is not outstanding", ErrDeviceBug, id)
	}
	return u, true, nil
}

// WaitUsed returns the next used element, waiting up to timeout for the
// device's interrupt. It re-enables interrupts the way §2.7.14 describes.
func (q *Queue) WaitUsed(timeout time.Duration) (Used, error) {
	if u, ok, err := q.PopUsed(); ok || err != nil {
		return u, err
	}
	deadline := time.Now().Add(timeout)
	for {
		if q.eventIdx() {
			q.SetUsedEvent(q.lastUsed)
		}
		// Re-check after re-enabling: the device may have used a buffer
		// before it could see used_event (§2.7.14).
		if u, ok, err := q.PopUsed(); ok || err != nil {
			return u, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return Used{}, fmt.Errorf("%w: queue %d: no used buffer after %v", ErrTimeout, q.Index, timeout)
		}
		fired, err := q.d.IRQ.Wait(min(left, waitSlice))
		if err != nil {
			return Used{}, err
		}
		if fired {
			q.d.AckInterrupts()
		}
	}
}

// WriteDesc writes descriptor i of the queue's table as given.
func (q *Queue) WriteDesc(i uint16, d Desc) {
	b := q.desc[virtio.DescriptorSize*uint64(i):]
	binary.LittleEndian.PutUint64(b[0:], d.Addr)
	binary.LittleEndian.PutUint32(b[8:], d.Len)
	binary.LittleEndian.PutUint16(b[12:], d.Flags)
	binary.LittleEndian.PutUint16(b[14:], d.Next)
}

// PublishRaw makes heads available without checking them, for malformed
// chains written with WriteDesc.
func (q *Queue) PublishRaw(heads ...uint16) {
	for _, h := range heads {
		if h < q.Config.Size {
			q.raw[h] = true
		}
		q.publish(h)
	}
}

// SetAvailIdx overwrites avail idx, for hostile tests.
func (q *Queue) SetAvailIdx(v uint16) {
	q.availIdx = v
	q.avail.Store16(2, v)
}

// WriteDescriptors writes a descriptor table (indirect or not) at addr.
func (d *Driver) WriteDescriptors(addr memory.GuestAddr, descs []Desc) error {
	b, err := d.Mem.Slice(addr, uint64(len(descs))*virtio.DescriptorSize)
	if err != nil {
		return err
	}
	for i, e := range descs {
		p := b[i*virtio.DescriptorSize:]
		binary.LittleEndian.PutUint64(p[0:], e.Addr)
		binary.LittleEndian.PutUint32(p[8:], e.Len)
		binary.LittleEndian.PutUint16(p[12:], e.Flags)
		binary.LittleEndian.PutUint16(p[14:], e.Next)
	}
	return nil
}
