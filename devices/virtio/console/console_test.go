package console_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/console"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

// syncBuffer is an Output that tests read while the device writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// guest plays Linux's virtio_console driver over the test driver.
type guest struct {
	t   *testing.T
	dev *console.Console
	drv *virtiotest.Driver
}

const ctrlRX, ctrlTX = 2, 3

func rxq(id int) uint16 {
	if id == 0 {
		return 0
	}
	return uint16(2 + 2*id)
}

func newGuest(t *testing.T, ports []console.Port) *guest {
	t.Helper()
	d, err := console.New(ports)
	require.NoError(t, err)
	drv, _ := virtiotest.Attach(t, d, 4<<20)
	t.Cleanup(d.Reset)
	sizes := make([]uint16, 2*(len(ports)+1))
	require.NoError(t, drv.Init(virtio.TransportFeatures|console.FeatureMultiport, sizes...))
	g := &guest{t: t, dev: d, drv: drv}
	for range 16 {
		g.postRX(ctrlRX, 512)
	}
	return g
}

func (g *guest) alloc(n int) memory.GuestAddr {
	a, err := g.drv.Alloc(uint64(n), 16)
	require.NoError(g.t, err)
	return a
}

func (g *guest) postRX(q uint16, n int) {
	_, err := g.drv.Queue(q).Add([]virtiotest.Buf{{Addr: g.alloc(n), Len: uint32(n), Writable: true}})
	require.NoError(g.t, err)
	g.drv.Queue(q).Kick()
}

// send puts raw bytes on a transmit queue and waits until they are used.
func (g *guest) send(q uint16, b []byte) {
	g.t.Helper()
	a := g.alloc(max(len(b), 1))
	require.NoError(g.t, g.drv.Mem.WriteAt(b, a))
	_, err := g.drv.Queue(q).Add([]virtiotest.Buf{{Addr: a, Len: uint32(len(b))}})
	require.NoError(g.t, err)
	g.drv.Queue(q).Kick()
	_, err = g.drv.Queue(q).WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(g.t, err)
}

func (g *guest) ctrl(id uint32, event, value uint16) {
	g.send(ctrlTX, console.Control{ID: id, Event: event, Value: value}.Encode())
}

// recv returns the next used buffer of receive queue q, and posts a new one.
func (g *guest) recv(q uint16) []byte {
	g.t.Helper()
	u, err := g.drv.Queue(q).WaitUsed(virtiotest.DefaultTimeout)
	require.NoError(g.t, err)
	// The test driver allocates buffers in order; read it back by
	// recording addresses would be cleaner, but each queue here has its
	// own buffers and the device fills them in ring order.
	addr := g.bufAddr(q, u.ID)
	b := make([]byte, u.Len)
	require.NoError(g.t, g.drv.Mem.ReadAt(b, addr))
	return b
}

func (g *guest) bufAddr(q uint16, head uint16) memory.GuestAddr {
	cfg := g.drv.Queue(q).Config
	var d [16]byte
	require.NoError(g.t, g.drv.Mem.ReadAt(d[:], cfg.DescTable+memory.GuestAddr(16*uint64(head))))
	return memory.GuestAddr(binary.LittleEndian.Uint64(d[:]))
}

func (g *guest) recvCtrl() console.Control {
	g.t.Helper()
	b := g.recv(ctrlRX)
	g.postRX(ctrlRX, 512)
	m, err := console.DecodeControl(b)
	require.NoError(g.t, err)
	if m.Event == console.EventPortName {
		m.Name = string(b[console.ControlSize:])
	}
	return m
}

// handshake runs Linux's start-up: DEVICE_READY, a PORT_READY for each
// DEVICE_ADD; it returns each port's name and whether the host opened it.
func (g *guest) handshake(n int) (names []string, open []bool) {
	g.t.Helper()
	g.ctrl(0, console.EventDeviceReady, 1)
	for i := range n {
		m := g.recvCtrl()
		require.Equal(g.t, console.Control{ID: uint32(i), Event: console.EventDeviceAdd}, m)
	}
	names, open = make([]string, n), make([]bool, n)
	for i := range n {
		g.ctrl(uint32(i), console.EventPortReady, 1)
		m := g.recvCtrl()
		require.Equal(g.t, console.EventPortName, m.Event)
		names[i] = m.Name
		m = g.recvCtrl()
		require.Equal(g.t, console.Control{ID: uint32(i), Event: console.EventPortOpen, Value: 1}, m)
		open[i] = true
	}
	return names, open
}

func TestIdentityAndConfig(t *testing.T) {
	g := newGuest(t, []console.Port{{Name: "a"}, {Name: "b"}, {Name: "c"}})
	assert.Equal(t, uint32(3), g.drv.Read32(virtio.RegDeviceID))
	assert.NotZero(t, g.drv.DeviceFeatures()&console.FeatureMultiport)
	assert.Equal(t, []byte{0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0}, g.drv.ReadConfig(0, 12), "max_nr_ports 3 (§5.3.4)")
}

func TestNamedPortsCarrySeparateStreams(t *testing.T) {
	out, errs := &syncBuffer{}, &syncBuffer{}
	in := "line one\n\x00\xffbinary"
	g := newGuest(t, []console.Port{
		{Name: "vmm.stdin", Input: strings.NewReader(in)},
		{Name: "vmm.stdout", Output: out},
		{Name: "vmm.stderr", Output: errs},
	})
	names, _ := g.handshake(3)
	assert.Equal(t, []string{"vmm.stdin", "vmm.stdout", "vmm.stderr"}, names)

	g.send(rxq(1)+1, []byte("to stdout\x00\x01"))
	g.send(rxq(2)+1, []byte("to stderr"))
	g.send(rxq(1)+1, []byte(" more"))
	g.dev.Flush()
	assert.Equal(t, "to stdout\x00\x01 more", out.String())
	assert.Equal(t, "to stderr", errs.String())

	// Input waits for the guest to open the port, then ends in PORT_OPEN 0.
	g.postRX(rxq(0), 4)
	g.postRX(rxq(0), 64)
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, uint16(0), g.drv.Queue(rxq(0)).UsedIdx(), "nothing before the guest opens the port")
	g.ctrl(0, console.EventPortOpen, 1)
	got := string(g.recv(rxq(0))) + string(g.recv(rxq(0)))
	assert.Equal(t, in, got)
	assert.Equal(t, console.Control{ID: 0, Event: console.EventPortOpen, Value: 0}, g.recvCtrl(), "end of input")
	assert.False(t, g.drv.NeedsReset())
}

// A slow guest holds the reader back: the device takes one chunk at a
// time and the bytes arrive whole and in order.
func TestLargeInputInOrder(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 20000) // 320 KB
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write(data)
		_ = pw.Close()
	}()
	g := newGuest(t, []console.Port{{Name: "in", Input: pr}})
	g.handshake(1)
	g.ctrl(0, console.EventPortOpen, 1)
	var got []byte
	for len(got) < len(data) {
		g.postRX(0, 4096)
		got = append(got, g.recv(0)...)
	}
	assert.Equal(t, data, got)
	assert.Equal(t, console.EventPortOpen, g.recvCtrl().Event)
}

func TestHostileControlMessages(t *testing.T) {
	out := &syncBuffer{}
	g := newGuest(t, []console.Port{{Name: "p0"}, {Name: "p1", Output: out}})
	g.handshake(2)
	for _, m := range [][]byte{
		{},
		{1, 2, 3},
		console.Control{ID: 99, Event: console.EventPortReady, Value: 1}.Encode(),
		console.Control{ID: 1 << 31, Event: console.EventPortOpen, Value: 1}.Encode(),
		console.Control{ID: 0, Event: console.EventResize}.Encode(),
		console.Control{ID: 0, Event: 0xffff, Value: 0xffff}.Encode(),
	} {
		g.send(ctrlTX, m)
	}
	assert.Equal(t, uint64(6), g.dev.Malformed())
	// A flood of DEVICE_READY with no receive buffers posted is bounded.
	for range 600 {
		g.send(ctrlTX, console.Control{Event: console.EventDeviceReady, Value: 1}.Encode())
	}
	assert.False(t, g.drv.NeedsReset(), "bad messages are ignored, not fatal")
	g.send(rxq(1)+1, []byte("still works"))
	g.dev.Flush()
	assert.Equal(t, "still works", out.String())
}

func TestRefusesWithoutMultiport(t *testing.T) {
	d, err := console.New([]console.Port{{Name: "x"}})
	require.NoError(t, err)
	drv, _ := virtiotest.Attach(t, d, 1<<20)
	t.Cleanup(d.Reset)
	assert.Error(t, drv.Init(virtio.TransportFeatures, 0, 0, 0, 0))
}

func TestNewRejectsBadPorts(t *testing.T) {
	_, err := console.New(nil)
	assert.ErrorIs(t, err, console.ErrPorts)
	_, err = console.New([]console.Port{{Name: "a"}, {Name: "a"}})
	assert.ErrorIs(t, err, console.ErrPorts)
	_, err = console.New([]console.Port{{Name: strings.Repeat("n", 256)}})
	assert.ErrorIs(t, err, console.ErrPorts)
}

func TestResetThenAgain(t *testing.T) {
	out := &syncBuffer{}
	g := newGuest(t, []console.Port{{Name: "o", Output: out}})
	g.handshake(1)
	g.drv.Reset()
	require.NoError(t, g.drv.Init(virtio.TransportFeatures|console.FeatureMultiport, 0, 0, 0, 0))
	for range 4 {
		g.postRX(ctrlRX, 512)
	}
	g.handshake(1)
	g.send(1, []byte("x"))
	g.dev.Flush()
	assert.Equal(t, "x", out.String())
}

// FuzzControlQueue feeds arbitrary control messages to a running device
// through its control transmitq: it must neither crash, nor hang, nor
// break its rings, and the data path must still work afterwards.
func FuzzControlQueue(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 3, 0, 1, 0})
	f.Add([]byte{1, 0, 0, 0, 6, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 6, 0, 1, 0, 5})
	f.Add(bytes.Repeat([]byte{0, 0, 0, 0, 0, 0, 1, 0}, 40))
	f.Fuzz(func(t *testing.T, data []byte) {
		out := &syncBuffer{}
		g := newGuest(t, []console.Port{{Name: "in", Input: strings.NewReader("x")}, {Name: "out", Output: out}})
		// Messages of 1 to 12 bytes, as the input's bytes say.
		for len(data) > 0 {
			n := min(int(data[0]%12)+1, len(data))
			g.send(ctrlTX, data[:n])
			data = data[n:]
		}
		g.dev.Flush()
		require.False(t, g.drv.NeedsReset())
		g.send(3+2, []byte("ok"))
		g.dev.Flush()
		require.Equal(t, "ok", out.String())
	})
}

// An output-only port stays open for the host side when the guest opens
// it: Linux blocks writes to a port whose host side is closed.
func TestOutputPortStaysHostOpen(t *testing.T) {
	out := &syncBuffer{}
	g := newGuest(t, []console.Port{{Name: "out", Output: out}})
	g.handshake(1)
	g.ctrl(0, console.EventPortOpen, 1)
	time.Sleep(20 * time.Millisecond)
	_, ok, err := g.drv.Queue(ctrlRX).PopUsed()
	require.NoError(t, err)
	assert.False(t, ok, "no PORT_OPEN 0 for a port without input")
}

// Bytes the guest queued before a reset still reach the host.
func TestResetDeliversQueuedOutput(t *testing.T) {
	out := &syncBuffer{}
	g := newGuest(t, []console.Port{{Name: "out", Output: out}})
	g.handshake(1)
	a := g.alloc(4)
	require.NoError(t, g.drv.Mem.WriteAt([]byte("last"), a))
	_, err := g.drv.Queue(1).Add([]virtiotest.Buf{{Addr: a, Len: 4}})
	require.NoError(t, err) // published without a kick
	g.dev.Reset()
	assert.Equal(t, "last", out.String())
}
