package virtio

import (
	"fmt"
	"strings"
)

// RingState is what a queue's rings in guest memory say, for telling
// where a stalled device and its driver wait on each other: who has work
// the other has not seen, and who is owed a notification. It is read with
// the rings' atomic loads, so any goroutine may take it while the device
// runs; it changes nothing.
type RingState struct {
	Size       uint16
	AvailIdx   uint16 // avail idx: buffers the driver has made available
	AvailFlags uint16 // avail flags (VIRTQ_AVAIL_F_NO_INTERRUPT)
	UsedEvent  uint16 // used_event: the driver wants an interrupt past it (EVENT_IDX)
	UsedIdx    uint16 // used idx: buffers the device has returned
	AvailEvent uint16 // avail_event: the device wants a notification past it (EVENT_IDX)
	EventIdx   bool   // VIRTIO_F_EVENT_IDX negotiated
	Broken     bool   // the device stopped the queue (a ring rule broken, or reset)
}

// RingState reads the queue's rings.
func (q *Queue) RingState() RingState {
	return RingState{
		Size:       q.size,
		AvailIdx:   q.avail.Load16(ringIdx),
		AvailFlags: q.avail.Load16(ringFlags),
		UsedEvent:  q.avail.Load16(ringStart + 2*uint64(q.size)),
		UsedIdx:    q.used.Load16(ringIdx),
		AvailEvent: q.used.Load16(ringStart + 8*uint64(q.size)),
		EventIdx:   q.eventIdx,
		Broken:     q.Broken(),
	}
}

// InFlight is how many available buffers the device has not returned:
// those it is serving or has not yet taken.
func (s RingState) InFlight() uint16 { return s.AvailIdx - s.UsedIdx }

// String gives the indices and what they mean for each side, e.g.
// "avail 5123, used 5120 (3 in flight), device notified past 5122,
// interrupt past 5119".
func (s RingState) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "size %d, avail idx %d, used idx %d (%d in flight)", s.Size, s.AvailIdx, s.UsedIdx, s.InFlight())
	if s.EventIdx {
		fmt.Fprintf(&b, ", avail_event %d, used_event %d", s.AvailEvent, s.UsedEvent)
	} else if s.AvailFlags&AvailFlagNoInterrupt != 0 {
		b.WriteString(", interrupts suppressed (NO_INTERRUPT)")
	}
	if s.Broken {
		b.WriteString(", broken")
	}
	return b.String()
}

// RingStates returns the rings of each queue the running device uses,
// by queue index; nil entries are queues the driver did not enable, and
// the whole slice is nil while the device is not running.
func (c *Core) RingStates() []*RingState {
	qs := c.live.Load()
	if qs == nil {
		return nil
	}
	states := make([]*RingState, len(*qs))
	for i, q := range *qs {
		if q != nil {
			st := q.RingState()
			states[i] = &st
		}
	}
	return states
}
