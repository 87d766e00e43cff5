package console

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vmm-dev/vmm/devices/virtio"
)

// session is one activation: the queues the driver set up and the
// goroutines serving them.
type session struct {
	c   *Console
	act virtio.Activation

	stopped atomic.Bool
	done    chan struct{}
	wg      sync.WaitGroup

	ctrlMu sync.Mutex // held while the control transmitq is drained
	rxMu   sync.Mutex // held while receive queues are filled
	failed atomic.Bool
}

func startSession(c *Console, act virtio.Activation) *session {
	s := &session{c: c, act: act, done: make(chan struct{})}
	// Transmit queues: one goroutine each, woken by the guest's kicks.
	for _, p := range c.ports {
		s.loop(txQueue(p.id), func() { s.drainTX(p) })
	}
	s.loop(ctrlTX, s.drainControl)
	// Receive queues: a kick means new buffers; the fill loop also wakes
	// for host input and control replies.
	for _, q := range append([]int{ctrlRX}, rxQueues(c)...) {
		s.loop(q, func() { c.mu.Lock(); c.kickLocked(); c.mu.Unlock() })
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			s.fill()
			select {
			case <-c.wake:
			case <-s.done:
				return
			}
		}
	}()
	return s
}

func rxQueues(c *Console) []int {
	var qs []int
	for _, p := range c.ports {
		qs = append(qs, rxQueue(p.id))
	}
	return qs
}

// loop runs f at once and after every kick of queue q until stop.
func (s *session) loop(q int, f func()) {
	kick := s.act.Kicks[q]
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for !s.stopped.Load() {
			f()
			if s.stopped.Load() {
				return
			}
			if _, err := kick.Wait(); err != nil {
				return // the transport closed the eventfd
			}
		}
	}()
}

// stop ends the session. What the guest had already queued for the
// host goes out first, at most a queue's worth per port: a driver that
// resets the device on its way to power-off (Linux does from 6.12, in
// virtio_dev_shutdown) has handed those bytes over, and a command's
// last output must not be lost to it.
func (s *session) stop() {
	for _, p := range s.c.ports {
		s.drainTXAtMost(p, QueueSize)
	}
	s.stopped.Store(true)
	close(s.done)
	for _, k := range s.act.Kicks {
		if k != nil {
			if err := k.Signal(); err != nil {
				slog.Debug("virtio-console stop: cannot wake a queue's goroutine", "err", err)
			}
		}
	}
	s.wg.Wait()
}

// fail breaks the device after a ring error (DEVICE_NEEDS_RESET), once.
func (s *session) fail(err error) {
	if s.failed.CompareAndSwap(false, true) {
		s.act.Fail(fmt.Errorf("virtio-console: %w", err))
	}
}

// drainTX writes what the guest queued on p's transmitq to p.Output.
func (s *session) drainTX(p *port) { s.drainTXAtMost(p, -1) }

// drainTXAtMost is drainTX for at most limit chains (-1: no limit).
func (s *session) drainTXAtMost(p *port, limit int) {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	q := s.act.Queues[txQueue(p.id)]
	var ch virtio.Chain
	s.drain(q, &ch, limit, func(ch *virtio.Chain) {
		if p.Output == nil {
			return
		}
		for _, b := range ch.Readable {
			// The slices alias guest RAM, which the guest may change while
			// the write runs; it gets what it raced for, and nothing of the
			// host's.
			if _, err := p.Output.Write(b); err != nil {
				slog.Warn("virtio-console: port output failed; its bytes are dropped", "port", p.Name, "err", err)
				p.Output = nil
				return
			}
		}
	})
}

// drainControl handles the control messages the guest queued.
func (s *session) drainControl() {
	s.ctrlMu.Lock()
	defer s.ctrlMu.Unlock()
	q := s.act.Queues[ctrlTX]
	var ch virtio.Chain
	var msg []byte
	s.drain(q, &ch, -1, func(ch *virtio.Chain) {
		// A message may span buffers; copy it out first so the guest
		// cannot change it under the decoder. Only the header matters.
		msg = msg[:0]
		for _, b := range ch.Readable {
			msg = append(msg, b[:min(len(b), ControlSize-len(msg))]...)
			if len(msg) == ControlSize {
				break
			}
		}
		s.c.handleControl(s, msg)
	})
}

// drain pops every chain of a device-readable queue, hands it to use and
// returns it with used length 0 (§5.3.6.1: the device writes nothing to
// transmit buffers).
func (s *session) drain(q *virtio.Queue, ch *virtio.Chain, limit int, use func(*virtio.Chain)) {
	for ; limit != 0 && !s.stopped.Load(); limit-- {
		ok, err := q.Pop(ch)
		if err != nil {
			s.fail(err)
			return
		}
		if !ok {
			more, err := q.EnableNotification()
			if err != nil {
				s.fail(err)
				return
			}
			if !more {
				return
			}
			continue
		}
		use(ch)
		if err := q.Push(ch.Head, 0); err != nil {
			s.fail(err)
			return
		}
		if err := s.act.SignalUsed(q); err != nil {
			s.fail(err)
			return
		}
	}
}

// fill gives the guest what waits for it: control messages, input for
// open ports, and end-of-file as PORT_OPEN 0 once a port's input ended.
func (s *session) fill() {
	s.rxMu.Lock()
	defer s.rxMu.Unlock()
	c := s.c
	var ch virtio.Chain
	for _, p := range c.ports {
		s.fillPort(p, &ch)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	q := s.act.Queues[ctrlRX]
	for len(c.ctrlOut) > 0 && !s.stopped.Load() {
		ok, err := q.Pop(&ch)
		if err != nil {
			s.fail(err)
			return
		}
		if !ok {
			more, err := q.EnableNotification()
			if err != nil {
				s.fail(err)
				return
			}
			if !more {
				return // the next kick of the queue wakes us
			}
			continue
		}
		n := copyTo(ch.Writable, c.ctrlOut[0])
		// A message cut short by a tiny buffer is the driver's loss;
		// Linux posts page-sized ones.
		c.ctrlOut = c.ctrlOut[1:]
		if err := q.Push(ch.Head, uint32(n)); err != nil {
			s.fail(err)
			return
		}
		if err := s.act.SignalUsed(q); err != nil {
			s.fail(err)
			return
		}
	}
}

// fillPort moves p's pending input into its receiveq while the guest
// holds the port open, then tells it of the input's end.
func (s *session) fillPort(p *port, ch *virtio.Chain) {
	c := s.c
	q := s.act.Queues[rxQueue(p.id)]
	c.mu.Lock()
	defer c.mu.Unlock()
	for p.guestOpen && len(p.pending) > 0 && !s.stopped.Load() {
		ok, err := q.Pop(ch)
		if err != nil {
			s.fail(err)
			return
		}
		if !ok {
			more, err := q.EnableNotification()
			if err != nil {
				s.fail(err)
				return
			}
			if !more {
				return
			}
			continue
		}
		n := copyTo(ch.Writable, p.pending)
		p.pending = p.pending[n:]
		if err := q.Push(ch.Head, uint32(n)); err != nil {
			s.fail(err)
			return
		}
		if err := s.act.SignalUsed(q); err != nil {
			s.fail(err)
			return
		}
	}
	if len(p.pending) == 0 && !p.inputEOF && !p.wantRead {
		p.wantRead = true
		select {
		case p.more <- struct{}{}:
		default:
		}
	}
	if p.Input != nil && p.guestOpen && len(p.pending) == 0 && p.inputEOF && !p.eofSent {
		// Linux reads end-of-file from a port whose host side is closed
		// once its buffered data is consumed (virtio_console.c,
		// port_fops_read).
		p.eofSent, p.hostOpen = true, false
		c.sendControlLocked(Control{ID: p.id, Event: EventPortOpen, Value: 0})
	}
}

// copyTo copies src into the writable buffers and returns how much fit.
func copyTo(dst [][]byte, src []byte) int {
	n := 0
	for _, b := range dst {
		if n == len(src) {
			break
		}
		n += copy(b, src[n:])
	}
	return n
}
