package vsock_test

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/devices/virtio/vsock"
)

func pattern(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i+8 <= n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

// hostDial connects a host program to guest port p through the device's
// socket, as Firecracker's protocol says, and returns the stream and the
// host port the device reported.
func hostDial(path string, p uint32) (*net.UnixConn, uint32, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, 0, err
	}
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", p); err != nil {
		return nil, 0, errors.Join(err, c.Close())
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var line []byte
	var b [1]byte
	for {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return nil, 0, errors.Join(fmt.Errorf("no OK line (got %q): %w", line, err), c.Close())
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	_ = c.SetReadDeadline(time.Time{})
	var port uint32
	if _, err := fmt.Sscanf(string(line), "OK %d", &port); err != nil {
		return nil, 0, errors.Join(fmt.Errorf("bad OK line %q", line), c.Close())
	}
	return c, port, nil
}

// result is what a host program saw of one stream.
type result struct {
	sum [32]byte
	n   int
	err error
}

// exchange writes send and half-closes, while reading to EOF; then
// closes.
func exchange(c *net.UnixConn, send []byte) result {
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		_, werr = c.Write(send)
		if werr == nil {
			werr = c.CloseWrite()
		}
	})
	h := sha256.New()
	n, rerr := io.Copy(h, c)
	wg.Wait()
	var r result
	copy(r.sum[:], h.Sum(nil))
	r.n, r.err = int(n), errors.Join(werr, rerr, c.Close())
	return r
}

func TestIdentityAndConfig(t *testing.T) {
	d, _ := newDevice(t)
	g := newGuest(t, d)
	assert.Equal(t, uint32(virtio.DeviceVsock), g.drv.Read32(virtio.RegDeviceID))
	assert.Equal(t, virtio.TransportFeatures, g.drv.DeviceFeatures())
	assert.Equal(t, uint64(guestCID), binary.LittleEndian.Uint64(g.drv.ReadConfig(0, 8)), "guest_cid")
	assert.Equal(t, []byte{guestCID, 0, 0, 0}, g.drv.ReadConfig(0, 4))
	assert.Equal(t, []byte{0, 0, 0, 0}, g.drv.ReadConfig(8, 4), "past the config space")
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	for _, cid := range []uint64{0, 1, 2, 0xffff_ffff, 1 << 40} {
		_, err := vsock.New(vsock.Config{GuestCID: cid, UDSPath: filepath.Join(dir, "a")})
		assert.ErrorIs(t, err, vsock.ErrCID, "cid %d", cid)
	}
	taken := filepath.Join(dir, "taken")
	require.NoError(t, os.WriteFile(taken, nil, 0o600))
	_, err := vsock.New(vsock.Config{GuestCID: 3, UDSPath: taken})
	assert.ErrorContains(t, err, "address already in use")
	_, err = vsock.New(vsock.Config{GuestCID: 3})
	assert.Error(t, err)
}

func TestParseConnect(t *testing.T) {
	for _, tc := range []struct {
		line string
		port uint32
		ok   bool
	}{
		{"CONNECT 52", 52, true},
		{"CONNECT 4294967295", 4294967295, true},
		{"CONNECT 1\r", 1, true},
		{"CONNECT  7", 7, true},
		{"CONNECT", 0, false},
		{"CONNECT x", 0, false},
		{"CONNECT 4294967296", 0, false},
		{"connect 5", 0, false},
		{"GET / HTTP/1.1", 0, false},
		{"", 0, false},
	} {
		p, err := vsock.ParseConnect(tc.line)
		if !tc.ok {
			assert.ErrorIs(t, err, vsock.ErrConnect, "%q", tc.line)
			continue
		}
		require.NoError(t, err, "%q", tc.line)
		assert.Equal(t, tc.port, p, "%q", tc.line)
	}
}

// hostInitiated has a host program connect to guest port 1234, where the
// guest accepts; toGuest and toHost cross at once.
func TestHostInitiated(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d)
	toGuest, toHost := pattern(4<<20, 1), pattern(3<<20+123, 2)
	var gc *gconn
	g.listen[1234] = func(c *gconn) { c.toSend = toHost; gc = c }
	done := make(chan result, 1)
	var hostPort uint32
	go func() {
		c, p, err := hostDial(path, 1234)
		if err != nil {
			done <- result{err: err}
			return
		}
		hostPort = p
		done <- exchange(c, toGuest)
	}()
	var r result
	finished := false
	g.run(30*time.Second, func() bool {
		if !finished {
			select {
			case r = <-done:
				finished = true
			default:
			}
		}
		return finished && gc != nil && gc.rst
	})
	require.NoError(t, r.err)
	assert.Equal(t, sha256.Sum256(toHost), r.sum, "host received the guest's bytes intact")
	assert.Equal(t, len(toHost), r.n)
	assert.Equal(t, len(toGuest), gc.recvN)
	assert.Equal(t, sha256.Sum256(toGuest), [32]byte(gc.recv.Sum(nil)), "guest received the host's bytes intact")
	assert.GreaterOrEqual(t, hostPort, uint32(1<<30))
	assert.Equal(t, hostPort, gc.key.hport, "OK names the port the guest sees")
	require.Eventually(t, func() bool { return d.Stats().Conns == 0 }, time.Second, time.Millisecond)
}

func TestGuestInitiated(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path + "_5000", Net: "unix"})
	require.NoError(t, err)
	defer l.Close()
	toGuest, toHost := pattern(3<<20, 3), pattern(4<<20+7, 4)
	done := make(chan result, 1)
	go func() {
		c, err := l.AcceptUnix()
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- exchange(c, toGuest)
	}()
	gc := g.connect(5000, toHost)
	var r result
	finished := false
	g.run(30*time.Second, func() bool {
		if !finished {
			select {
			case r = <-done:
				finished = true
			default:
			}
		}
		return finished && gc.rst
	})
	require.NoError(t, r.err)
	assert.False(t, gc.refused)
	assert.Equal(t, sha256.Sum256(toHost), r.sum)
	assert.Equal(t, len(toGuest), gc.recvN)
	assert.Equal(t, sha256.Sum256(toGuest), [32]byte(gc.recv.Sum(nil)))
}

// Test32Connections runs 16 host-initiated and 16 guest-initiated
// streams at once, each moving 256 KiB (plus a bit) each way.
func Test32Connections(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d)
	const each = 16
	size := func(i int) int { return 256<<10 + 997*i }
	want := map[uint32][32]byte{} // guest port -> what the guest must receive
	results := make(chan result, 2*each)
	// Host-initiated: guest ports 2000+i, each with its own data.
	for i := range each {
		port := uint32(2000 + i)
		toHost := pattern(size(i), uint64(100+i))
		g.listen[port] = func(c *gconn) { c.toSend = toHost }
		toGuest := pattern(size(i), uint64(200+i))
		want[port] = sha256.Sum256(toGuest)
		go func() {
			c, _, err := hostDial(path, port)
			if err != nil {
				results <- result{err: err}
				return
			}
			r := exchange(c, toGuest)
			if r.err == nil && r.sum != sha256.Sum256(toHost) {
				r.err = fmt.Errorf("port %d: host got wrong bytes (%d)", port, r.n)
			}
			results <- r
		}()
	}
	// Guest-initiated: to host ports 6000+i.
	var gconns []*gconn
	wantGuest := map[*gconn][32]byte{}
	for i := range each {
		port := uint32(6000 + i)
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: fmt.Sprintf("%s_%d", path, port), Net: "unix"})
		require.NoError(t, err)
		defer l.Close()
		toHost, toGuest := pattern(size(i), uint64(300+i)), pattern(size(i), uint64(400+i))
		go func() {
			c, err := l.AcceptUnix()
			if err != nil {
				results <- result{err: err}
				return
			}
			r := exchange(c, toGuest)
			if r.err == nil && r.sum != sha256.Sum256(toHost) {
				r.err = fmt.Errorf("port %d: host got wrong bytes (%d)", port, r.n)
			}
			results <- r
		}()
		gc := g.connect(port, toHost)
		gconns = append(gconns, gc)
		wantGuest[gc] = sha256.Sum256(toGuest)
	}
	got := 0
	g.run(60*time.Second, func() bool {
		for {
			select {
			case r := <-results:
				require.NoError(t, r.err)
				got++
				continue
			default:
			}
			break
		}
		return got == 2*each && len(g.closed) == 2*each
	})
	for _, c := range g.closed {
		if w, ok := wantGuest[c]; ok {
			assert.Equal(t, w, [32]byte(c.recv.Sum(nil)), "guest-initiated %v", c.key)
		} else {
			assert.Equal(t, want[c.key.gport], [32]byte(c.recv.Sum(nil)), "host-initiated %v", c.key)
		}
	}
	require.Eventually(t, func() bool { return d.Stats().Conns == 0 }, time.Second, time.Millisecond)
}

// TestRefusals: nobody listens, on either side; and a bad CONNECT line.
func TestRefusals(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d)
	gc := g.connect(7777, nil)
	g.run(5*time.Second, func() bool { return gc.rst })
	assert.True(t, gc.refused, "a guest connect to a port nobody listens on is reset")

	done := make(chan error, 1)
	go func() { _, _, err := hostDial(path, 9999); done <- err }()
	var err error
	g.run(5*time.Second, func() bool {
		select {
		case err = <-done:
			return true
		default:
			return false
		}
	})
	assert.ErrorContains(t, err, "no OK line", "the guest refused: the host program sees EOF")

	c, err := net.Dial("unix", path)
	require.NoError(t, err)
	_, err = c.Write([]byte("HELLO\n"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(make([]byte, 1))
	assert.ErrorIs(t, err, io.EOF, "a bad CONNECT line closes the socket")
	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return d.Stats().Conns == 0 }, time.Second, time.Millisecond)
}

// TestResetMidTransfer: the guest resets one connection while bytes
// flow; the host program sees its stream end, another connection goes
// on; then a driver reset ends the rest, and the device works again.
func TestResetMidTransfer(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d)
	var victim, survivor *gconn
	g.listen[1] = func(c *gconn) { c.toSend = pattern(8<<20, 5); c.shutAfter = false; victim = c }
	g.listen[2] = func(c *gconn) { c.toSend = pattern(1<<20, 6); survivor = c }
	vres, sres := make(chan result, 1), make(chan result, 1)
	go func() {
		c, _, err := hostDial(path, 1)
		if err != nil {
			vres <- result{err: err}
			return
		}
		vres <- exchange(c, pattern(8<<20, 7))
	}()
	go func() {
		c, _, err := hostDial(path, 2)
		if err != nil {
			sres <- result{err: err}
			return
		}
		sres <- exchange(c, pattern(1<<20, 8))
	}()
	g.run(20*time.Second, func() bool { return victim != nil && victim.recvN > 1<<20 })
	rst := g.header(victim, vsock.OpRST)
	g.control1(rst)
	delete(g.conns, victim.key)
	var vr, sr result
	vDone, sDone := false, false
	g.run(30*time.Second, func() bool {
		select {
		case vr = <-vres:
			vDone = true
		case sr = <-sres:
			sDone = true
		default:
		}
		return vDone && sDone && survivor != nil && survivor.rst
	})
	assert.Less(t, vr.n, 8<<20, "the reset stream ended early")
	require.NoError(t, sr.err)
	assert.Equal(t, sha256.Sum256(pattern(1<<20, 6)), sr.sum, "the other stream was not touched")
	assert.Equal(t, sha256.Sum256(pattern(1<<20, 8)), [32]byte(survivor.recv.Sum(nil)))
	require.Eventually(t, func() bool { return d.Stats().Conns == 0 }, time.Second, time.Millisecond)

	// A driver reset mid-transfer closes the host side.
	g.listen[3] = func(c *gconn) { c.toSend = pattern(8<<20, 9); c.shutAfter = false; victim = c }
	victim = nil
	res := make(chan result, 1)
	go func() {
		c, _, err := hostDial(path, 3)
		if err != nil {
			res <- result{err: err}
			return
		}
		res <- exchange(c, pattern(8<<20, 10))
	}()
	g.run(20*time.Second, func() bool { return victim != nil && victim.recvN > 1<<20 })
	g.drv.Reset()
	select {
	case r := <-res:
		assert.Less(t, r.n, 8<<20)
	case <-time.After(10 * time.Second):
		t.Fatal("the host stream did not end after a driver reset")
	}
	assert.Equal(t, 0, d.Stats().Conns)
	g2 := newGuest(t, d)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path + "_80", Net: "unix"})
	require.NoError(t, err)
	defer l.Close()
	go func() {
		if c, err := l.AcceptUnix(); err == nil {
			exchange(c, []byte("after reset"))
		}
	}()
	gc := g2.connect(80, []byte("hi"))
	g2.run(10*time.Second, func() bool { return gc.rst })
	assert.Equal(t, sha256.Sum256([]byte("after reset")), [32]byte(gc.recv.Sum(nil)))
}

// streamFromGuest has a host program connect to port and the guest's
// listener there send it 1 MiB and keep the stream open; it returns once
// the guest's side is established, with the host's result to come.
func (g *guest) streamFromGuest(path string, port uint32) chan result {
	var gc *gconn
	g.listen[port] = func(c *gconn) { c.toSend = pattern(1<<20, 1); c.shutAfter = false; gc = c }
	res := make(chan result, 1)
	go func() {
		c, _, err := hostDial(path, port)
		if err != nil {
			res <- result{err: err}
			return
		}
		res <- exchange(c, nil)
	}()
	g.run(10*time.Second, func() bool { return gc != nil && gc.established })
	return res
}

func TestTransportReset(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d)
	res := g.streamFromGuest(path, 1)
	d.TransportReset()
	g.run(10*time.Second, func() bool { return len(g.events) == 1 })
	assert.Equal(t, uint32(vsock.EventTransportReset), g.events[0])
	select {
	case <-res:
	case <-time.After(5 * time.Second):
		t.Fatal("the host stream survived a transport reset")
	}
	assert.Equal(t, 0, d.Stats().Conns)
}

// TestSnapshotCycle is what a snapshot does to a running device: quiesce
// (its connections end), save, unquiesce on the same queues, and a
// transport reset so the guest drops the connections too. The device then
// serves new connections as before, so no receive buffer was lost.
func TestSnapshotCycle(t *testing.T) {
	d, path := newDevice(t)
	g := newGuest(t, d)
	res := g.streamFromGuest(path, 1)
	for i := range 3 {
		g.mmio.Quiesce()
		st, err := g.mmio.Save()
		require.NoError(t, err, "cycle %d", i)
		assert.Equal(t, uint32(virtio.StatusDriverOK), st.Core.Status&virtio.StatusDriverOK)
		g.mmio.Unquiesce()
		d.TransportReset()
		g.run(10*time.Second, func() bool { return len(g.events) == i+1 })
	}
	select {
	case <-res:
	case <-time.After(5 * time.Second):
		t.Fatal("the host stream survived the snapshot")
	}
	assert.Equal(t, 0, d.Stats().Conns)

	// A new connection after the cycles moves its data both ways.
	g.listen[2] = func(c *gconn) { c.toSend = pattern(256<<10, 2); c.shutAfter = true }
	done := make(chan result, 1)
	go func() {
		c, _, err := hostDial(path, 2)
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- exchange(c, pattern(256<<10, 3))
	}()
	var r result
	g.run(20*time.Second, func() bool {
		select {
		case r = <-done:
			return true
		default:
			return false
		}
	})
	require.NoError(t, r.err)
}

// A device whose driver is not running takes no event for later.
func TestTransportResetInactive(t *testing.T) {
	d, path := newDevice(t)
	d.TransportReset()
	g := newGuest(t, d)
	var gc *gconn
	g.listen[1] = func(c *gconn) { gc = c }
	res := make(chan result, 1)
	go func() {
		c, _, err := hostDial(path, 1)
		if err != nil {
			res <- result{err: err}
			return
		}
		res <- result{err: c.Close()}
	}()
	g.run(10*time.Second, func() bool { return gc != nil && gc.established })
	require.NoError(t, (<-res).err)
	assert.Empty(t, g.events, "a reset before the driver came is no event for it")
}

// TestHostileGuest: packets the device must refuse without breaking.
func TestHostileGuest(t *testing.T) {
	d, _ := newDevice(t)
	g := newGuest(t, d)
	base := vsock.Header{SrcCID: guestCID, DstCID: vsock.HostCID, SrcPort: 1, DstPort: 2, Type: vsock.TypeStream}
	for _, h := range []vsock.Header{
		func() vsock.Header { h := base; h.SrcCID = 7; h.Op = vsock.OpRequest; return h }(),
		func() vsock.Header { h := base; h.DstCID = 9; h.Op = vsock.OpRequest; return h }(),
		func() vsock.Header { h := base; h.Type = 2; h.Op = vsock.OpRequest; return h }(),
		func() vsock.Header { h := base; h.Op = vsock.OpRW; return h }(),
		func() vsock.Header { h := base; h.Op = 99; return h }(),
	} {
		require.True(t, g.send(h, []byte("x")))
	}
	// A chain shorter than a header, and one whose len lies.
	a := g.slots[0]
	head, err := g.tx.Add([]virtiotest.Buf{{Addr: a, Len: 10}})
	require.NoError(t, err)
	g.inFlight[head] = a
	g.slots = g.slots[1:]
	liar := base
	liar.Op, liar.Len = vsock.OpRW, 1000
	raw := liar.Bytes()
	b := g.slots[0]
	require.NoError(t, g.drv.Mem.WriteAt(raw[:], b))
	head, err = g.tx.Add([]virtiotest.Buf{{Addr: b, Len: vsock.HeaderSize + 10}})
	require.NoError(t, err)
	g.inFlight[head] = b
	g.slots = g.slots[1:]
	g.tx.Kick()
	// The RSTs come back on the receive queue while the transmit worker
	// may still be on the two malformed chains behind them: wait for both.
	g.run(5*time.Second, func() bool { return g.rsts == 5 && d.Stats().Malformed == 2 })
	assert.False(t, g.drv.NeedsReset())
	st := d.Stats()
	assert.Equal(t, uint64(2), st.Malformed)
	assert.Equal(t, uint64(5), st.Refused)
	assert.Zero(t, st.Conns)
}
