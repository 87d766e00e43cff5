package vsock

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/vmm-dev/vmm/devices/virtio"
)

// session is the device between Activate and Reset: the transmit queue's
// worker, and one goroutine that owns the receive and event queues.
type session struct {
	v       *Vsock
	act     virtio.Activation
	rxq     *virtio.Queue
	evq     *virtio.Queue // nil when the driver did not enable it
	tx      *virtio.Worker
	kicks   chan struct{} // capacity 1: the driver added RX or event buffers
	stopc   chan struct{}
	done    chan struct{}
	quit    atomic.Bool
	relays  sync.WaitGroup
	kickFDs []*virtio.EventFD

	scratch [][]byte // the TX worker's payload slices
}

// startSession starts the queues; v.mu is held.
func (v *Vsock) startSession(act virtio.Activation) (*session, error) {
	for _, q := range []int{RXQueue, TXQueue} {
		if q >= len(act.Queues) || q >= len(act.Kicks) || act.Queues[q] == nil {
			return nil, fmt.Errorf("%w: queue %d was not enabled by the driver", virtio.ErrDevice, q)
		}
	}
	s := &session{v: v, act: act, rxq: act.Queues[RXQueue],
		kicks: make(chan struct{}, 1), stopc: make(chan struct{}), done: make(chan struct{})}
	if len(act.Queues) > EventQueue && len(act.Kicks) > EventQueue && act.Queues[EventQueue] != nil {
		s.evq = act.Queues[EventQueue]
	}
	w, err := virtio.StartWorker(act, TXQueue, s.handleTX)
	if err != nil {
		return nil, err
	}
	s.tx = w
	s.relay(act.Kicks[RXQueue])
	if s.evq != nil {
		s.relay(act.Kicks[EventQueue])
	}
	go s.run()
	return s, nil
}

// relay turns a queue's kick eventfd into a send on s.kicks, so the
// receive loop can wait for buffers and for work in one select.
func (s *session) relay(kick *virtio.EventFD) {
	s.relays.Add(1)
	go func() {
		defer s.relays.Done()
		for !s.quit.Load() {
			if _, err := kick.Wait(); err != nil {
				return // the transport closed the eventfd
			}
			select {
			case s.kicks <- struct{}{}:
			default:
			}
		}
	}()
	s.kickFDs = append(s.kickFDs, kick)
}

// stop ends the session's goroutines; v.mu must not be held (the
// transmit worker takes it).
func (s *session) stop() {
	s.quit.Store(true)
	close(s.stopc)
	s.tx.Stop()
	<-s.done
	for _, k := range s.kickFDs {
		// A failed signal means the eventfd is closed, which ends the
		// relay's Wait too.
		_ = k.Signal()
	}
	s.relays.Wait()
}

// run owns the receive and event queues until stop.
func (s *session) run() {
	defer close(s.done)
	v := s.v
	var chain, ev virtio.Chain
	held := false // chain holds a receive buffer not yet used
	defer func() {
		// A buffer taken for a packet that went away stays the driver's:
		// given back to the ring, the next session (after a quiesce for
		// a snapshot) takes it again instead of losing it.
		if held {
			s.rxq.Rewind(1)
		}
	}()
	for !s.quit.Load() {
		v.mu.Lock()
		eventDue := v.eventDue && s.evq != nil
		work := len(v.control) > 0 || len(v.ready) > 0
		v.mu.Unlock()

		if eventDue {
			ok, err := s.evq.Pop(&ev)
			if err != nil {
				s.act.Fail(fmt.Errorf("event queue: %w", err))
				return
			}
			if ok {
				if !s.sendEvent(&ev) {
					return
				}
				continue
			}
		}
		if work && !held {
			ok, err := s.rxq.Pop(&chain)
			if err != nil {
				s.act.Fail(fmt.Errorf("receive queue: %w", err))
				return
			}
			held = ok
		}
		if work && held {
			n, sent := s.fill(&chain)
			if sent {
				held = false
				if err := s.rxq.Push(chain.Head, n); err != nil {
					s.act.Fail(fmt.Errorf("receive queue: %w", err))
					return
				}
				if err := s.act.SignalUsed(s.rxq); err != nil {
					s.act.Fail(fmt.Errorf("receive queue: %w", err))
					return
				}
			}
			continue
		}
		// Sleep: for buffers when there is work, else for work; and for
		// an event buffer when an event waits.
		if work {
			more, err := s.rxq.EnableNotification()
			if err != nil {
				s.act.Fail(fmt.Errorf("receive queue: %w", err))
				return
			}
			if more {
				continue
			}
		}
		if eventDue {
			more, err := s.evq.EnableNotification()
			if err != nil {
				s.act.Fail(fmt.Errorf("event queue: %w", err))
				return
			}
			if more {
				continue
			}
		}
		select {
		case <-v.wake:
		case <-s.kicks:
		case <-s.stopc:
			return
		}
	}
}

// sendEvent writes VIRTIO_VSOCK_EVENT_TRANSPORT_RESET into an event
// buffer (§5.10.6.7). It reports false after failing the device.
func (s *session) sendEvent(c *virtio.Chain) bool {
	var e [EventSize]byte
	binary.LittleEndian.PutUint32(e[:], EventTransportReset)
	var n uint32
	if c.WritableLen() >= EventSize {
		n = writeBytes(c.Writable, e[:])
		s.v.mu.Lock()
		s.v.eventDue = false
		s.v.mu.Unlock()
	} else {
		logOnce(&s.v.stats.malformed, "event buffer smaller than an event returned unused",
			fmt.Errorf("%w: %d writable bytes", ErrHeader, c.WritableLen()))
	}
	if err := s.evq.Push(c.Head, n); err != nil {
		s.act.Fail(fmt.Errorf("event queue: %w", err))
		return false
	}
	if err := s.act.SignalUsed(s.evq); err != nil {
		s.act.Fail(fmt.Errorf("event queue: %w", err))
		return false
	}
	return true
}

func writeBytes(bufs [][]byte, data []byte) uint32 {
	var n uint32
	for _, b := range bufs {
		k := copy(b, data)
		data = data[k:]
		n += uint32(k)
		if len(data) == 0 {
			break
		}
	}
	return n
}

// fill puts the next packet for the guest into c and returns its length;
// false when there was none after all (its connection went away), and c
// stays held. A buffer too small for a header is returned unused: the
// driver must post at least a header's worth (§5.10.6.2).
func (s *session) fill(c *virtio.Chain) (uint32, bool) {
	v := s.v
	room := c.WritableLen()
	if room < HeaderSize {
		logOnce(&v.stats.malformed, "receive buffer smaller than a packet header returned unused",
			fmt.Errorf("%w: %d writable bytes", ErrHeader, room))
		return 0, true
	}
	room -= HeaderSize
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.control) > 0 {
		h := v.control[0]
		v.control = v.control[1:]
		return writePacket(c.Writable, h, nil), true
	}
	for len(v.ready) > 0 {
		cn := v.ready[0]
		v.ready[0] = nil
		v.ready = v.ready[1:]
		cn.queued = false
		if cn.closed || !cn.hasWork() {
			continue
		}
		n := v.packetLocked(cn, c.Writable, room)
		v.markReadyLocked(cn) // to the back of the line: connections take turns
		return n, true
	}
	return 0, false
}

// packetLocked writes cn's most urgent packet into bufs, whose payload
// room is room bytes (§5.10.6.4): a reset first, then the handshake, the
// data, a credit update, and the shutdown once the data is all out.
func (v *Vsock) packetLocked(cn *conn, bufs [][]byte, room uint64) uint32 {
	h := Header{SrcCID: HostCID, DstCID: v.cid, SrcPort: cn.key.local, DstPort: cn.key.peer,
		Type: TypeStream, BufAlloc: BufAlloc, FwdCnt: cn.fwdCnt}
	// Every packet carries fwd_cnt, so each one is a credit update too.
	cn.sentFC, cn.needCredit = cn.fwdCnt, false
	var payload []byte
	switch {
	case cn.needRST:
		h.Op = OpRST
		v.closeLocked(cn)
	case cn.needRequest:
		h.Op, cn.needRequest = OpRequest, false
	case cn.needResponse:
		h.Op, cn.needResponse = OpResponse, false
	case len(cn.pending) > 0 && cn.peerFree() > 0:
		n := min(uint64(len(cn.pending)), room, uint64(cn.peerFree()), MaxPayload)
		payload = cn.pending[:n]
		h.Op, h.Len = OpRW, uint32(n)
		cn.txCnt += uint32(n)
		defer func() {
			cn.pending = cn.pending[n:]
			if len(cn.pending) == 0 {
				cn.pending = nil
			}
			cn.cond.Broadcast() // the reader may read again
		}()
	case cn.needShutdown && len(cn.pending) == 0 && !cn.shutdownSent:
		// The host program will send no more.
		h.Op, h.Flags, cn.shutdownSent = OpShutdown, ShutdownSend, true
	default:
		h.Op = OpCreditUpdate
	}
	return writePacket(bufs, h, payload)
}

// handleTX takes one packet from the guest (§5.10.6.4 to §5.10.6.6). A
// packet that breaks the rules of its connection resets that connection,
// and one that is not a packet at all is dropped and counted: neither
// breaks the device, which serves other connections.
func (s *session) handleTX(c *virtio.Chain) (uint32, error) {
	v := s.v
	h, payload, err := readPacket(c.Readable, s.scratch)
	s.scratch = payload[:0]
	if err != nil {
		logOnce(&v.stats.malformed, "malformed transmit packet dropped", err)
		return 0, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.packetFromGuestLocked(h, payload)
	return 0, nil
}

// packetFromGuestLocked applies one packet; payload aliases guest memory.
func (v *Vsock) packetFromGuestLocked(h Header, payload [][]byte) {
	refuse := func(why string) {
		logOnce(&v.stats.refused, "packet refused with RST", fmt.Errorf("%s: %v from %d:%d to %d:%d",
			why, h.Op, h.SrcCID, h.SrcPort, h.DstCID, h.DstPort))
		if h.Op != OpRST {
			v.replyRSTLocked(h)
		}
	}
	switch {
	case h.SrcCID != v.cid:
		refuse("source CID is not the guest's")
		return
	case h.DstCID != HostCID:
		refuse("destination is not the host")
		return
	case h.Type != TypeStream:
		refuse("not a stream socket")
		return
	}
	key := connKey{local: h.DstPort, peer: h.SrcPort}
	cn := v.conns[key]
	if h.Op == OpRequest {
		if cn != nil {
			refuse("REQUEST for a connection that exists")
			return
		}
		cn, ok := v.newConnLocked(key, stateDialing)
		if !ok {
			refuse("too many connections")
			return
		}
		cn.updatePeer(h)
		v.connWG.Add(1)
		go func() {
			defer v.connWG.Done()
			v.dial(cn)
		}()
		return
	}
	if cn == nil {
		if h.Op != OpRST {
			refuse("no such connection")
		}
		return
	}
	if h.Op == OpRST {
		v.closeLocked(cn)
		return
	}
	cn.updatePeer(h)
	switch h.Op {
	case OpResponse:
		if cn.state != stateRequesting || cn.needRequest {
			refuse("RESPONSE to no REQUEST")
			v.resetLocked(cn)
			return
		}
		v.establishLocked(cn)
	case OpShutdown:
		cn.gShut |= h.Flags & shutdownBoth
		if cn.state != stateEstablished && cn.gShut == shutdownBoth {
			v.resetLocked(cn)
		}
	case OpRW:
		if cn.state != stateEstablished || cn.gShut&ShutdownSend != 0 {
			refuse("data on a connection not open for it")
			v.resetLocked(cn)
			return
		}
		// §5.10.6.3: the guest may not send more than the free space we
		// advertised; one that does loses the connection, not bytes.
		if used := uint64(cn.rxCnt - cn.fwdCnt); used+uint64(h.Len) > BufAlloc {
			refuse(fmt.Sprintf("credit exceeded (%d buffered, %d more)", used, h.Len))
			v.resetLocked(cn)
			return
		}
		for _, b := range payload {
			cn.txbuf = append(cn.txbuf, b...)
		}
		cn.rxCnt += h.Len
	case OpCreditUpdate:
		// Taken above: the reader and the receive loop may go on.
	case OpCreditRequest:
		cn.needCredit = true
	default:
		refuse("unknown operation")
		v.resetLocked(cn)
		return
	}
	cn.cond.Broadcast()
	v.markReadyLocked(cn)
}
