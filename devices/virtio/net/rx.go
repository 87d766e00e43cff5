package net

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/tap"
	"github.com/vmm-dev/vmm/devices/virtio"
)

// Receive buffer space to hold before reading a frame, with the header
// (virtio 1.2 §5.1.6.3.1): what the driver is told to post per frame.
const (
	rxNeedGSO   = HeaderSize + MaxFrameSize // a guest that accepts TSO frames
	rxNeedPlain = 1526                      // 12 + 1514: one MTU-sized frame
)

// signalEvery offers the guest an interrupt after this many frames even
// while more are queued, so it can refill buffers during a burst; its
// suppression (used_event, NO_INTERRUPT) decides whether one is raised.
const signalEvery = 16

// receiver moves frames from the backend into the receive queue on its
// own goroutine (virtio 1.2 §5.1.6.4). It pops chains until it holds room
// for the largest frame the guest accepts, then reads one frame across
// them with one readv and returns the chains it filled. Without buffers it
// sleeps on the queue's kick and leaves frames in the backend.
//
// The backend cannot say how long its next frame is, so a guest that
// posts less than the largest frame (mergeable buffers that add up to
// less than 64 KiB, with TSO) is served through a bounce buffer: the
// frame is read there, copied out once the guest has posted room for it,
// and held, not dropped, while it waits.
type receiver struct {
	n    *Net
	act  virtio.Activation
	q    *virtio.Queue
	kick *virtio.EventFD

	mergeable bool   // VIRTIO_NET_F_MRG_RXBUF: a frame may span chains
	guestCSUM bool   // VIRTIO_NET_F_GUEST_CSUM: header flags pass through
	need      uint64 // buffer bytes that hold any frame the guest accepts

	// held is a ring of popped chains not yet used; each slot keeps its
	// own slices, so Pop can reuse them.
	held        []virtio.Chain
	first       int    // index of the oldest held chain
	count       int    // number of held chains
	heldBytes   uint64 // their writable bytes
	iov         [][]byte
	ends        []uint64 // ends[i]: bytes of iov up to the end of chain first+i
	unsignalled int      // chains returned since the last interrupt offer

	bounce    []byte   // a frame read before the guest had room for it
	bounceIOV [][]byte // bounce as an iovec
	parked    int      // size of the frame in bounce; 0 when none

	stop  atomic.Bool
	stopc chan struct{} // closed with stop: ends a wait for tokens
	done  chan struct{}
}

func newReceiver(n *Net, act virtio.Activation) (*receiver, error) {
	if RXQueue >= len(act.Queues) || RXQueue >= len(act.Kicks) || act.Queues[RXQueue] == nil {
		return nil, fmt.Errorf("%w: receive queue %d was not enabled by the driver", virtio.ErrDevice, RXQueue)
	}
	q := act.Queues[RXQueue]
	r := &receiver{
		n:         n,
		act:       act,
		q:         q,
		kick:      act.Kicks[RXQueue],
		mergeable: act.Features&FeatureMrgRXBuf != 0,
		guestCSUM: act.Features&FeatureGuestCSUM != 0,
		need:      rxNeedPlain,
		held:      make([]virtio.Chain, q.Size()),
		stopc:     make(chan struct{}),
		done:      make(chan struct{}),
	}
	if offloads(act.Features)&^tap.OffloadCSUM != 0 {
		r.need = rxNeedGSO
	}
	return r, nil
}

func (r *receiver) start() { go r.run() }

// wait returns once the goroutine has stopped; stop must be set and the
// backend's read deadline passed.
func (r *receiver) wait() {
	// A failed signal means the eventfd is closed, which ends Wait too.
	_ = r.kick.Signal()
	<-r.done
}

func (r *receiver) run() {
	defer close(r.done)
	for ok := true; ok && !r.stop.Load(); {
		ready, err := r.fill()
		if err != nil {
			r.act.Fail(fmt.Errorf("receive queue: %w", err))
			return
		}
		switch {
		case r.parked > 0 && ready:
			ok = r.deliverParked()
		case r.parked > 0 && r.count == len(r.held):
			// Even the whole ring cannot hold it.
			r.n.count(&r.n.stats.rxDropped, "frame larger than all receive buffers dropped",
				fmt.Errorf("%w: %d bytes in %d posted bytes", ErrFrameSize, r.parked-HeaderSize, r.heldBytes))
			r.parked = 0
		case r.parked > 0:
			ok = r.waitForBuffers()
		case ready:
			ok = r.receiveDirect()
		case r.count > 0:
			ok = r.receiveBounced()
		default:
			ok = r.waitForBuffers()
		}
	}
}

// enough reports whether the held chains can take the next frame: one
// chain without mergeable buffers (§5.1.6.3.1 has the driver make each
// big enough), else room for the parked frame or the largest one.
func (r *receiver) enough() bool {
	if !r.mergeable {
		return r.count > 0
	}
	want := r.need
	if r.parked > 0 {
		want = uint64(r.parked)
	}
	return r.heldBytes >= want
}

// fill pops chains until enough; false means the ring ran dry first, or
// every chain it can hold is held.
func (r *receiver) fill() (bool, error) {
	for !r.enough() {
		if r.count == len(r.held) {
			return false, nil
		}
		c := &r.held[(r.first+r.count)%len(r.held)]
		ok, err := r.q.Pop(c)
		if err != nil || !ok {
			return false, err
		}
		// §5.1.6.3.1: every buffer holds at least a header. One that
		// cannot is returned unused rather than split a header.
		if w := c.WritableLen(); w < HeaderSize {
			r.n.count(&r.n.stats.rxBadChains, "receive chain too small for a header returned unused",
				fmt.Errorf("%w: %d device-writable bytes", ErrHeader, w))
			if err := r.q.Push(c.Head, 0); err != nil {
				return false, err
			}
			r.unsignalled++
			continue
		}
		r.count++
		r.heldBytes += c.WritableLen()
	}
	return true, nil
}

// waitForBuffers sleeps until the driver adds receive buffers. It reports
// false when receiving must end.
func (r *receiver) waitForBuffers() bool {
	if !r.offerInterrupt() {
		return false
	}
	more, err := r.q.EnableNotification()
	if err != nil {
		r.act.Fail(fmt.Errorf("receive queue: %w", err))
		return false
	}
	if more {
		return true
	}
	r.n.stats.rxStalls.Add(1)
	if _, err := r.kick.Wait(); err != nil {
		return false // the transport closed the eventfd
	}
	return !r.stop.Load()
}

// offerInterrupt signals the chains returned so far, as the driver's
// suppression allows. It reports false after failing the device.
func (r *receiver) offerInterrupt() bool {
	r.unsignalled = 0
	if err := r.act.SignalUsed(r.q); err != nil {
		r.act.Fail(fmt.Errorf("receive queue: %w", err))
		return false
	}
	return true
}

// buildIOV lays the held chains' writable buffers end to end, the first
// frame's chains first; without mergeable buffers only the oldest chain.
func (r *receiver) buildIOV() {
	r.iov, r.ends = r.iov[:0], r.ends[:0]
	chains := r.count
	if !r.mergeable {
		chains = 1
	}
	var total uint64
	for i := 0; i < chains && len(r.iov) < iovMax; i++ {
		for _, b := range r.held[(r.first+i)%len(r.held)].Writable {
			if len(r.iov) == iovMax {
				break
			}
			r.iov = append(r.iov, b)
			total += uint64(len(b))
		}
		r.ends = append(r.ends, total)
	}
}

// read waits in the poller until the backend has a frame and reads it
// into iov. It returns the frame's size, 0 after dropping a runt, and
// false when receiving must end.
func (r *receiver) read(iov [][]byte) (int, bool) {
	if !r.limit() {
		return 0, false
	}
	var n int
	var rerr error
	err := r.n.conn.Read(func(fd uintptr) bool {
		for {
			n, rerr = unix.Readv(int(fd), iov)
			switch {
			case errors.Is(rerr, unix.EINTR):
				continue
			case errors.Is(rerr, unix.EAGAIN):
				// Nothing queued: let the driver see what arrived
				// before sleeping.
				if r.unsignalled > 0 && !r.offerInterrupt() {
					rerr = errStopped
					return true
				}
				return false
			}
			return true
		}
	})
	switch {
	case err != nil || r.stop.Load() || errors.Is(rerr, errStopped):
		return 0, false // stopping (deadline) or closed
	case rerr != nil:
		r.n.count(&r.n.stats.rxErrors, "backend read failed; receiving stops until the device is reset",
			fmt.Errorf("readv: %w", rerr))
		return 0, false
	case n == 0:
		// A TAP never returns an empty frame: the other end is gone.
		r.n.count(&r.n.stats.rxErrors, "backend closed; receiving stops until the device is reset", io.EOF)
		return 0, false
	case n < HeaderSize:
		r.n.count(&r.n.stats.rxRunts, "frame shorter than its header dropped",
			fmt.Errorf("%w: %d bytes", ErrFrameSize, n))
		return 0, true
	}
	r.n.rxLimit.Charge(uint64(n))
	return n, true
}

// limit waits until the receive limiter is out of debt. A frame's size
// is known only once it is read, so it is charged after the read (Charge)
// and the next read waits out any debt it left: frames are delayed in the
// backend's queue, in order, never dropped by the device. The guest
// first gets an interrupt for what was already delivered.
func (r *receiver) limit() bool {
	if d, _ := r.n.rxLimit.TryWait(); d == 0 {
		return true
	}
	if r.unsignalled > 0 && !r.offerInterrupt() {
		return false
	}
	return r.n.rxLimit.Wait(r.stopc) == nil
}

// errStopped ends a read after the device was failed.
var errStopped = errors.New("receiver stopped")

// receiveDirect reads a frame straight into the held chains.
func (r *receiver) receiveDirect() bool {
	r.buildIOV()
	n, ok := r.read(r.iov)
	if !ok || n == 0 {
		return ok // a runt leaves the chains held for the next frame
	}
	if room := r.ends[len(r.ends)-1]; uint64(n) == room && room < r.need {
		r.n.count(&r.n.stats.rxTruncated, "frame filled the guest's buffers and may have been cut short",
			fmt.Errorf("%w: %d bytes", ErrFrameSize, n-HeaderSize))
	}
	return r.complete(uint64(n))
}

// receiveBounced reads a frame into the bounce buffer when the guest has
// posted less than the largest frame, and delivers it if it fits.
func (r *receiver) receiveBounced() bool {
	if r.bounce == nil {
		r.bounce = make([]byte, HeaderSize+MaxFrameSize)
		r.bounceIOV = [][]byte{r.bounce}
	}
	n, ok := r.read(r.bounceIOV)
	if !ok || n == 0 {
		return ok
	}
	if n == len(r.bounce) {
		r.n.count(&r.n.stats.rxTruncated, "frame filled the bounce buffer and may have been cut short",
			fmt.Errorf("%w: %d bytes", ErrFrameSize, n-HeaderSize))
	}
	r.parked = n
	if r.heldBytes < uint64(n) {
		return true // it waits for buffers, and the backend with it
	}
	return r.deliverParked()
}

// deliverParked copies the bounced frame into the held chains.
func (r *receiver) deliverParked() bool {
	r.buildIOV()
	n, frame := 0, r.bounce[:r.parked]
	for _, b := range r.iov {
		k := copy(b, frame[n:])
		if n += k; n == len(frame) {
			break
		}
	}
	if n < len(frame) {
		// Only when more than iovMax tiny buffers would be needed.
		r.n.count(&r.n.stats.rxTruncated, "frame cut to the buffers that one read can fill",
			fmt.Errorf("%w: %d of %d bytes", ErrFrameSize, n, len(frame)))
	}
	r.parked = 0
	return r.complete(uint64(n))
}

// complete returns the chains holding the n bytes just placed, and offers
// an interrupt now and then during a burst.
func (r *receiver) complete(n uint64) bool {
	if err := r.deliver(n); err != nil {
		r.act.Fail(fmt.Errorf("receive queue: %w", err))
		return false
	}
	if r.unsignalled >= signalEvery {
		return r.offerInterrupt()
	}
	return true
}

// deliver completes the chains that hold the n bytes of a frame: it sets
// num_buffers (§5.1.6.4: the number of buffers the frame spans; 1 without
// MRG_RXBUF), clears the flags when the guest did not negotiate
// GUEST_CSUM (§5.1.6.4.1), and returns each chain with the bytes written
// into it.
func (r *receiver) deliver(n uint64) error {
	chains := 0
	for chains < len(r.ends) && (chains == 0 || r.ends[chains-1] < n) {
		chains++
	}
	putIOV16(r.iov, hdrNumBuffers, uint16(chains))
	if !r.guestCSUM {
		putIOV8(r.iov, hdrFlags, 0)
	}
	var start uint64
	for i := range chains {
		c := &r.held[r.first]
		used := min(n, r.ends[i]) - start
		start = r.ends[i]
		if err := r.q.Push(c.Head, uint32(used)); err != nil {
			return err
		}
		r.heldBytes -= c.WritableLen()
		r.first = (r.first + 1) % len(r.held)
		r.count--
		r.unsignalled++
	}
	r.n.stats.rxFrames.Add(1)
	r.n.stats.rxBytes.Add(n - HeaderSize)
	return nil
}

// putIOV8 and putIOV16 write a header field at byte offset off of the
// buffers laid end to end: a driver may split the header (§2.7.4.1).
func putIOV8(iov [][]byte, off int, v byte) {
	for _, b := range iov {
		if off < len(b) {
			b[off] = v
			return
		}
		off -= len(b)
	}
}

func putIOV16(iov [][]byte, off int, v uint16) {
	putIOV8(iov, off, byte(v))
	putIOV8(iov, off+1, byte(v>>8))
}
