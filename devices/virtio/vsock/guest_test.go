package vsock_test

import (
	"crypto/sha256"
	"fmt"
	"hash"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/devices/virtio/vsock"
	"github.com/vmm-dev/vmm/memory"
)

const (
	guestCID   = 3
	rxBufSize  = vsock.HeaderSize + 4096 // what Linux posts
	rxBufs     = 128
	txSlotSize = vsock.HeaderSize + 16<<10
	guestAlloc = 128 << 10 // the guest's buf_alloc per connection
)

// gkey names a guest connection: its own port and the host's.
type gkey struct{ gport, hport uint32 }

// gconn is one connection as the test's guest stack sees it.
type gconn struct {
	key         gkey
	established bool
	toSend      []byte // bytes still to send
	sent        int
	shutAfter   bool // SHUTDOWN(SEND) once toSend is out, SHUTDOWN(both) after the host's
	shutSent    bool // SHUTDOWN(SEND) sent
	shutAll     bool // SHUTDOWN(both) sent
	recv        hash.Hash
	recvN       int
	keep        []byte // received bytes, when wanted
	keepAll     bool
	peerAlloc   uint32
	peerFwd     uint32
	txCnt       uint32
	fwdCnt      uint32
	fwdSent     uint32
	peerShut    uint32
	rst         bool
	refused     bool // got RST before being established
}

func (c *gconn) peerFree() int64 { return int64(c.peerAlloc) - int64(c.txCnt-c.peerFwd) }

// guest plays Linux's virtio-vsock driver with the test driver: it posts
// receive buffers, answers the device's packets, and sends data within
// the device's credit. One goroutine (the test's) drives it.
type guest struct {
	t        *testing.T
	dev      *vsock.Vsock
	drv      *virtiotest.Driver
	mmio     *virtio.MMIO // the transport, for quiesce and save
	rx, tx   *virtiotest.Queue
	ev       *virtiotest.Queue
	rxAddr   map[uint16]memory.GuestAddr
	slots    []memory.GuestAddr // free TX buffers
	inFlight map[uint16]memory.GuestAddr
	control  []vsock.Header // packets waiting for a TX slot
	conns    map[gkey]*gconn
	listen   map[uint32]func(*gconn) // port -> set up an accepted connection
	events   []uint32
	closed   []*gconn // connections ended by an RST
	rsts     int      // RST packets seen, for connections or not
	evAddr   map[uint16]memory.GuestAddr
	nextPort uint32
}

func newDevice(t *testing.T) (*vsock.Vsock, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v.sock")
	d, err := vsock.New(vsock.Config{GuestCID: guestCID, UDSPath: path})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d, path
}

func newGuest(t *testing.T, d *vsock.Vsock) *guest {
	t.Helper()
	drv, mmio := virtiotest.Attach(t, d, 32<<20)
	require.NoError(t, drv.Init(virtio.TransportFeatures, 0, 0, 0))
	g := &guest{t: t, dev: d, drv: drv, mmio: mmio, rx: drv.Queue(0), tx: drv.Queue(1), ev: drv.Queue(2),
		rxAddr: map[uint16]memory.GuestAddr{}, inFlight: map[uint16]memory.GuestAddr{},
		conns: map[gkey]*gconn{}, listen: map[uint32]func(*gconn){}, evAddr: map[uint16]memory.GuestAddr{},
		nextPort: 40000}
	for range rxBufs {
		a, err := drv.Alloc(rxBufSize, 64)
		require.NoError(t, err)
		g.postRX(a)
	}
	for range 200 {
		a, err := drv.Alloc(txSlotSize, 64)
		require.NoError(t, err)
		g.slots = append(g.slots, a)
	}
	for range 4 {
		a, err := drv.Alloc(vsock.EventSize, 8)
		require.NoError(t, err)
		h, err := g.ev.Add([]virtiotest.Buf{{Addr: a, Len: vsock.EventSize, Writable: true}})
		require.NoError(t, err)
		g.evAddr[h] = a
	}
	g.rx.Kick()
	g.ev.Kick()
	return g
}

func (g *guest) postRX(a memory.GuestAddr) {
	h, err := g.rx.Add([]virtiotest.Buf{{Addr: a, Len: rxBufSize, Writable: true}})
	require.NoError(g.t, err)
	g.rxAddr[h] = a
}

func (g *guest) header(c *gconn, op vsock.Op) vsock.Header {
	return vsock.Header{SrcCID: guestCID, DstCID: vsock.HostCID, SrcPort: c.key.gport, DstPort: c.key.hport,
		Type: vsock.TypeStream, Op: op, BufAlloc: guestAlloc, FwdCnt: c.fwdCnt}
}

// send queues one packet; false when no TX slot is free.
func (g *guest) send(h vsock.Header, payload []byte) bool {
	if len(g.slots) == 0 {
		return false
	}
	a := g.slots[len(g.slots)-1]
	g.slots = g.slots[:len(g.slots)-1]
	h.Len = uint32(len(payload))
	raw := h.Bytes()
	require.NoError(g.t, g.drv.Mem.WriteAt(raw[:], a))
	require.NoError(g.t, g.drv.Mem.WriteAt(payload, a+vsock.HeaderSize))
	head, err := g.tx.Add([]virtiotest.Buf{{Addr: a, Len: uint32(vsock.HeaderSize + len(payload))}})
	require.NoError(g.t, err)
	g.inFlight[head] = a
	return true
}

func (g *guest) control1(h vsock.Header) { g.control = append(g.control, h) }

// connect starts a guest-initiated connection to host port p.
func (g *guest) connect(p uint32, data []byte) *gconn {
	c := g.newConn(gkey{gport: g.nextPort, hport: p}, data)
	g.nextPort++
	g.control1(g.header(c, vsock.OpRequest))
	return c
}

func (g *guest) newConn(k gkey, data []byte) *gconn {
	c := &gconn{key: k, toSend: data, shutAfter: true, recv: sha256.New()}
	g.conns[k] = c
	return c
}

// step does one round of driver work and reports whether anything
// happened.
func (g *guest) step() bool {
	progress := false
	for {
		u, ok, err := g.rx.PopUsed()
		require.NoError(g.t, err)
		if !ok {
			break
		}
		progress = true
		a := g.rxAddr[u.ID]
		delete(g.rxAddr, u.ID)
		buf := make([]byte, u.Len)
		require.NoError(g.t, g.drv.Mem.ReadAt(buf, a))
		g.receive(buf)
		g.postRX(a)
	}
	for {
		u, ok, err := g.ev.PopUsed()
		require.NoError(g.t, err)
		if !ok {
			break
		}
		progress = true
		var b [4]byte
		require.NoError(g.t, g.drv.Mem.ReadAt(b[:], g.evAddr[u.ID]))
		g.events = append(g.events, uint32(b[0])|uint32(b[1])<<8|uint32(b[2])<<16|uint32(b[3])<<24)
	}
	for {
		u, ok, err := g.tx.PopUsed()
		require.NoError(g.t, err)
		if !ok {
			break
		}
		g.slots = append(g.slots, g.inFlight[u.ID])
		delete(g.inFlight, u.ID)
	}
	for len(g.control) > 0 && g.send(g.control[0], nil) {
		g.control = g.control[1:]
		progress = true
	}
	for _, c := range g.conns {
		for c.established && !c.rst && c.sent < len(c.toSend) && c.peerFree() > 0 && len(g.slots) > 0 {
			n := min(len(c.toSend)-c.sent, txSlotSize-vsock.HeaderSize, int(c.peerFree()))
			if !g.send(g.header(c, vsock.OpRW), c.toSend[c.sent:c.sent+n]) {
				break
			}
			c.sent += n
			c.txCnt += uint32(n)
			c.fwdSent = c.fwdCnt
			progress = true
		}
		if c.established && !c.rst && c.shutAfter && !c.shutSent && c.sent == len(c.toSend) {
			h := g.header(c, vsock.OpShutdown)
			h.Flags = vsock.ShutdownSend
			if g.send(h, nil) {
				c.shutSent = true
				progress = true
			}
		}
		if c.shutSent && !c.shutAll && !c.wantsMore() {
			h := g.header(c, vsock.OpShutdown)
			h.Flags = vsock.ShutdownRCV | vsock.ShutdownSend
			if g.send(h, nil) {
				c.shutAll = true
				progress = true
			}
		}
	}
	g.rx.Kick()
	g.tx.Kick()
	return progress
}

// wantsMore: a connection that still expects bytes from the host does
// not shut its receive side yet; it waits for the host's SHUTDOWN.
func (c *gconn) wantsMore() bool { return c.peerShut&vsock.ShutdownSend == 0 }

func (g *guest) receive(buf []byte) {
	require.GreaterOrEqual(g.t, len(buf), vsock.HeaderSize, "used length of a receive buffer")
	h := vsock.ParseHeader(buf)
	require.Equal(g.t, uint64(vsock.HostCID), h.SrcCID)
	require.Equal(g.t, uint64(guestCID), h.DstCID)
	require.Equal(g.t, vsock.TypeStream, h.Type)
	require.Equal(g.t, int(h.Len), len(buf)-vsock.HeaderSize, "payload length matches the used length")
	k := gkey{gport: h.DstPort, hport: h.SrcPort}
	c := g.conns[k]
	if h.Op == vsock.OpRST {
		g.rsts++
	}
	if h.Op == vsock.OpRequest {
		require.Nil(g.t, c, "REQUEST for an existing connection")
		setup, ok := g.listen[h.DstPort]
		if !ok {
			g.control1(vsock.Header{SrcCID: guestCID, DstCID: vsock.HostCID, SrcPort: h.DstPort, DstPort: h.SrcPort,
				Type: vsock.TypeStream, Op: vsock.OpRST})
			return
		}
		c = g.newConn(k, nil)
		c.established = true
		c.peerAlloc, c.peerFwd = h.BufAlloc, h.FwdCnt
		setup(c)
		g.control1(g.header(c, vsock.OpResponse))
		return
	}
	if c == nil {
		return // a late packet for a closed connection
	}
	c.peerAlloc, c.peerFwd = h.BufAlloc, h.FwdCnt
	switch h.Op {
	case vsock.OpResponse:
		c.established = true
	case vsock.OpRW:
		require.True(g.t, c.established)
		require.LessOrEqual(g.t, int64(c.fwdCnt)+int64(h.Len)-int64(c.fwdSent), int64(guestAlloc), "the device kept to the guest's credit")
		c.recv.Write(buf[vsock.HeaderSize:])
		if c.keepAll {
			c.keep = append(c.keep, buf[vsock.HeaderSize:]...)
		}
		c.recvN += int(h.Len)
		c.fwdCnt += h.Len
		if c.fwdCnt-c.fwdSent >= guestAlloc/2 {
			c.fwdSent = c.fwdCnt
			g.control1(g.header(c, vsock.OpCreditUpdate))
		}
	case vsock.OpShutdown:
		c.peerShut |= h.Flags
	case vsock.OpRST:
		if !c.established {
			c.refused = true
		}
		c.rst = true
		delete(g.conns, k)
		g.closed = append(g.closed, c)
	case vsock.OpCreditUpdate:
	case vsock.OpCreditRequest:
		g.control1(g.header(c, vsock.OpCreditUpdate))
	default:
		g.t.Fatalf("unexpected %v", h.Op)
	}
}

// run steps the guest until done returns true.
func (g *guest) run(timeout time.Duration, done func() bool) {
	g.t.Helper()
	deadline := time.Now().Add(timeout)
	for !done() {
		if time.Now().After(deadline) {
			g.t.Fatalf("guest: not done after %v (%d connections: %s)", timeout, len(g.conns), g.describe())
		}
		if !g.step() {
			if _, err := g.drv.IRQ.Wait(2 * time.Millisecond); err != nil {
				g.t.Fatal(err)
			}
			g.drv.AckInterrupts()
		}
		require.False(g.t, g.drv.NeedsReset(), "the device broke")
	}
}

func (g *guest) describe() string {
	s := ""
	for k, c := range g.conns {
		s += fmt.Sprintf("[%v est=%v sent=%d/%d recv=%d peerFree=%d shut=%v peerShut=%d] ",
			k, c.established, c.sent, len(c.toSend), c.recvN, c.peerFree(), c.shutSent, c.peerShut)
	}
	return s
}
