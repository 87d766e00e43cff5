package net_test

import (
	"encoding/binary"
	"fmt"
	stdnet "net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
	vnet "github.com/vmm-dev/vmm/devices/virtio/net"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

func TestNewBadMAC(t *testing.T) {
	for _, mac := range []stdnet.HardwareAddr{
		{1, 0, 0, 0, 0, 1},          // multicast
		{2, 0, 0, 0, 0},             // 5 bytes
		{0, 0, 0, 0, 0, 0},          // zero
		{2, 0, 0, 0, 0, 0, 0, 0, 1}, // EUI-64
	} {
		dev, peer := socketpair(t)
		_, err := vnet.NewWithBackend(dev, mac)
		require.ErrorIs(t, err, vnet.ErrMAC, "%v", mac)
		require.NoError(t, dev.Close())
		require.NoError(t, peer.Close())
		_, err = vnet.New(vnet.Config{TAP: "unused0", MAC: mac})
		require.ErrorIs(t, err, vnet.ErrMAC, "%v", mac)
	}
}

func TestRandomMAC(t *testing.T) {
	seen := map[string]bool{}
	for range 16 {
		mac, err := vnet.RandomMAC()
		require.NoError(t, err)
		require.Len(t, mac, 6)
		assert.Zero(t, mac[0]&1, "unicast")
		assert.NotZero(t, mac[0]&2, "locally administered")
		seen[mac.String()] = true
	}
	assert.Greater(t, len(seen), 1)

	dev, peer := socketpair(t)
	defer peer.Close()
	n, err := vnet.NewWithBackend(dev, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, n.Close()) }()
	var cfg [6]byte
	n.ReadConfig(0, cfg[:])
	assert.Equal(t, []byte(n.MAC()), cfg[:], "the generated MAC is in the config space")
	assert.NotZero(t, cfg[0]&2)
}

func TestConfigSpace(t *testing.T) {
	r := newRig(t, 1<<20)
	assert.Equal(t, testMAC, r.drv.ReadConfig(0, 6), "mac")
	for i := range 6 {
		assert.Equal(t, testMAC[i:i+1], r.drv.ReadConfig(uint64(i), 1), "mac byte %d", i)
	}
	assert.Equal(t, uint16(1), binary.LittleEndian.Uint16(r.drv.ReadConfig(6, 2)), "status: link up")
	assert.Equal(t, uint16(1), binary.LittleEndian.Uint16(r.drv.ReadConfig(8, 2)), "max_virtqueue_pairs")
	assert.Equal(t, []byte{0, 0}, r.drv.ReadConfig(10, 2), "past the config space")
	r.drv.Dev.Write(virtio.RegConfig, []byte{0xff, 0xff})
	assert.Equal(t, testMAC, r.drv.ReadConfig(0, 6), "the config space is read-only")
	assert.Equal(t, uint32(virtio.DeviceNet), r.drv.Read32(virtio.RegDeviceID))
}

func TestFeatureNegotiation(t *testing.T) {
	r := newRig(t, 1<<20)
	offered := r.drv.DeviceFeatures()
	assert.Equal(t, allFeatures, offered, "offered: %#x", offered)
	for _, f := range []uint64{vnet.FeatureGuestUFO, vnet.FeatureHostUFO, 1 << 17 /* CTRL_VQ */, 1 << 22 /* MQ */} {
		assert.Zero(t, offered&f, "feature %#x must not be offered", f)
	}
	// A minimal driver (MAC only) works; queue sizes are 256.
	rx, tx := r.start(t, virtio.FeatureVersion1|vnet.FeatureMAC, 0, 0)
	assert.Equal(t, uint16(vnet.QueueSize), rx.Size())
	assert.Equal(t, uint16(vnet.QueueSize), tx.Size())
	// Features not offered are refused at FEATURES_OK.
	r.drv.Reset()
	r.drv.SetStatus(virtio.StatusAcknowledge | virtio.StatusDriver)
	require.ErrorIs(t, r.drv.NegotiateExactly(virtio.FeatureVersion1|vnet.FeatureGuestUFO), virtiotest.ErrRefused)
}

// featureSets run the data-path tests with the usual drivers: Linux
// (everything, EVENT_IDX, mergeable buffers), one without EVENT_IDX or
// mergeable buffers, and a minimal one.
var featureSets = []struct {
	name     string
	features uint64
}{
	{"all", allFeatures},
	{"no event idx, no mrg", allFeatures &^ virtio.FeatureEventIdx &^ vnet.FeatureMrgRXBuf},
	{"minimal", virtio.FeatureVersion1 | vnet.FeatureMAC},
}

func TestTransmit(t *testing.T) {
	frame := ethFrame(1514, 7)
	plain := vnet.Header{}
	csum := vnet.Header{Flags: vnet.FlagNeedsCSUM, CSumStart: 34, CSumOffset: 16}
	tso := vnet.Header{Flags: vnet.FlagNeedsCSUM, GSOType: vnet.GSOTCPv4, HdrLen: 66, GSOSize: 1448, CSumStart: 34, CSumOffset: 16}
	for _, fs := range featureSets {
		t.Run(fs.name, func(t *testing.T) {
			r := newRig(t, 4<<20)
			_, tx := r.start(t, fs.features, 0, 0)
			for _, tc := range []struct {
				name     string
				hdr      vnet.Header
				split    []int // buffer sizes; the rest in a last buffer
				indirect bool
				needs    uint64
			}{
				{"header and frame in one buffer", plain, nil, false, 0},
				{"header apart", plain, []int{12}, false, 0},
				{"header split", plain, []int{5, 3, 9}, false, 0},
				{"many pieces, indirect", plain, []int{12, 100, 1, 1, 200}, true, virtio.FeatureIndirectDesc},
				{"partial checksum", csum, []int{12}, false, vnet.FeatureCSUM},
				{"TSO", tso, []int{12, 54}, false, vnet.FeatureHostTSO4 | vnet.FeatureCSUM},
			} {
				if fs.features&tc.needs != tc.needs {
					continue
				}
				want := withHeader(tc.hdr, frame)
				addr := r.alloc(t, len(want), want)
				var bufs []virtiotest.Buf
				off := 0
				for _, n := range tc.split {
					bufs = append(bufs, virtiotest.Buf{Addr: addr + memory.GuestAddr(off), Len: uint32(n)})
					off += n
				}
				bufs = append(bufs, virtiotest.Buf{Addr: addr + memory.GuestAddr(off), Len: uint32(len(want) - off)})
				add := tx.Add
				if tc.indirect {
					add = tx.AddIndirect
				}
				head, err := add(bufs)
				require.NoError(t, err)
				tx.Kick()
				u, err := tx.WaitUsed(virtiotest.DefaultTimeout)
				require.NoError(t, err, tc.name)
				assert.Equal(t, head, u.ID)
				assert.Zero(t, u.Len, "transmit writes nothing into the chain")
				got, err := r.recvPeer(t, virtiotest.DefaultTimeout)
				require.NoError(t, err, tc.name)
				assert.Equal(t, want, got, tc.name)
			}
			st := r.net.Stats()
			assert.Zero(t, st.TXMalformed+st.TXErrors+st.TXOversized, "%+v", st)
			assert.Equal(t, st.TXFrames*uint64(len(frame)), st.TXBytes)
		})
	}
}

// TestTransmitMalformed sends chains a driver must not send: each is
// returned with length 0, nothing reaches the backend, a counter moves,
// and a good frame still goes through afterwards.
func TestTransmitMalformed(t *testing.T) {
	r := newRig(t, 4<<20)
	_, tx := r.start(t, virtio.TransportFeatures|vnet.FeatureCSUM|vnet.FeatureHostTSO4, 0, 0)
	good := withHeader(vnet.Header{}, ethFrame(100, 1))
	big := withHeader(vnet.Header{}, ethFrame(vnet.MaxFrameSize+1, 1))
	bad := func(h vnet.Header, n int) []byte { return withHeader(h, ethFrame(n, 2)) }
	tests := []struct {
		name      string
		data      []byte
		writable  bool // the whole chain device-writable: nothing to read
		oversized bool
	}{
		{"no readable part", good, true, false},
		{"shorter than a header", good[:8], false, false},
		{"runt frame", good[:12+13], false, false},
		{"oversized", big, false, true},
		{"DATA_VALID on transmit", bad(vnet.Header{Flags: vnet.FlagDataValid}, 100), false, false},
		{"unknown flag", bad(vnet.Header{Flags: 0x80}, 100), false, false},
		{"checksum past the frame", bad(vnet.Header{Flags: vnet.FlagNeedsCSUM, CSumStart: 90, CSumOffset: 9}, 100), false, false},
		{"hdr_len past the frame", bad(vnet.Header{HdrLen: 101}, 100), false, false},
		{"TSO6 not negotiated", bad(vnet.Header{Flags: vnet.FlagNeedsCSUM, GSOType: vnet.GSOTCPv6, GSOSize: 1000, CSumStart: 54, CSumOffset: 16}, 100), false, false},
		{"UDP GSO not offered", bad(vnet.Header{Flags: vnet.FlagNeedsCSUM, GSOType: vnet.GSOUDP, GSOSize: 1000, CSumStart: 34, CSumOffset: 6}, 100), false, false},
		{"ECN not negotiated", bad(vnet.Header{Flags: vnet.FlagNeedsCSUM, GSOType: vnet.GSOTCPv4 | vnet.GSOECN, GSOSize: 1000, CSumStart: 34, CSumOffset: 16}, 100), false, false},
		{"TSO without NEEDS_CSUM", bad(vnet.Header{GSOType: vnet.GSOTCPv4, GSOSize: 1000}, 100), false, false},
		{"TSO with gso_size 0", bad(vnet.Header{Flags: vnet.FlagNeedsCSUM, GSOType: vnet.GSOTCPv4, CSumStart: 34, CSumOffset: 16}, 100), false, false},
	}
	for _, tc := range tests {
		before := r.net.Stats()
		addr := r.alloc(t, len(tc.data), tc.data)
		_, err := tx.Add([]virtiotest.Buf{{Addr: addr, Len: uint32(len(tc.data)), Writable: tc.writable}})
		require.NoError(t, err)
		tx.Kick()
		u, err := tx.WaitUsed(virtiotest.DefaultTimeout)
		require.NoError(t, err, tc.name)
		assert.Zero(t, u.Len, tc.name)
		after := r.net.Stats()
		if tc.oversized {
			assert.Equal(t, before.TXOversized+1, after.TXOversized, tc.name)
		} else {
			assert.Equal(t, before.TXMalformed+1, after.TXMalformed, tc.name)
		}
		assert.Zero(t, after.TXFrames, tc.name)
		assert.False(t, r.drv.NeedsReset(), tc.name)
	}
	require.True(t, r.peerEmpty(t), "a dropped frame reached the backend")

	r.transmitAndExpect(t, tx, good)
}

// rxPost posts count receive chains of size bytes each (one buffer).
func rxPost(t testing.TB, r *rig, rx *virtiotest.Queue, count, size int) map[uint16]memory.GuestAddr {
	t.Helper()
	bufs := map[uint16]memory.GuestAddr{}
	for range count {
		addr := r.alloc(t, size, nil)
		head, err := rx.Add([]virtiotest.Buf{{Addr: addr, Len: uint32(size), Writable: true}})
		require.NoError(t, err)
		bufs[head] = addr
	}
	rx.Kick()
	return bufs
}

func TestReceive(t *testing.T) {
	for _, fs := range featureSets {
		t.Run(fs.name, func(t *testing.T) {
			r := newRig(t, 16<<20)
			rx, _ := r.start(t, fs.features, 0, 0)
			// Buffers a non-mergeable driver without TSO posts: a
			// header and an MTU-sized frame; 64 KiB with TSO. A
			// mergeable driver posts enough for a 64 KiB frame.
			size := 1526
			if fs.features&vnet.FeatureMrgRXBuf == 0 && fs.features&vnet.FeatureGuestTSO4 != 0 {
				size = 65562
			}
			bufs := rxPost(t, r, rx, 64, size)
			for i, n := range []int{60, 1514, 14} {
				frame := ethFrame(n, byte(i))
				r.sendPeer(t, withHeader(vnet.Header{Flags: vnet.FlagDataValid, NumBuffers: 77}, frame))
				u, err := rx.WaitUsed(virtiotest.DefaultTimeout)
				require.NoError(t, err)
				require.Equal(t, uint32(vnet.HeaderSize+n), u.Len)
				got := r.guest(t, bufs[u.ID], int(u.Len))
				var hb [vnet.HeaderSize]byte
				copy(hb[:], got)
				h := vnet.ParseHeader(hb)
				assert.Equal(t, uint16(1), h.NumBuffers, "num_buffers")
				if fs.features&vnet.FeatureGuestCSUM != 0 {
					assert.Equal(t, vnet.FlagDataValid, h.Flags, "flags pass through with GUEST_CSUM")
				} else {
					assert.Zero(t, h.Flags, "§5.1.6.4.1: flags are zero without GUEST_CSUM")
				}
				assert.Equal(t, frame, got[vnet.HeaderSize:])
			}
			st := r.net.Stats()
			assert.Equal(t, uint64(3), st.RXFrames)
			assert.Equal(t, uint64(60+1514+14), st.RXBytes)
		})
	}
}

// With VIRTIO_NET_F_MRG_RXBUF a frame larger than one buffer spans
// several chains, and the first header's num_buffers says how many.
func TestReceiveMergeable(t *testing.T) {
	for _, tc := range []struct {
		name     string
		features uint64
		bufSize  int
		frames   []int
	}{
		{"TSO guest, 2 KiB buffers", allFeatures, 2048, []int{5000, 100, 65550, 2036, 2037}},
		{"plain guest, 1 KiB buffers", virtio.TransportFeatures | vnet.FeatureMrgRXBuf, 1024, []int{1514, 1012, 1013, 60}},
		{"smallest buffers", allFeatures, vnet.HeaderSize, []int{14, 1514}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, 32<<20)
			rx, _ := r.start(t, tc.features, 0, 0)
			// Keep the ring full, as Linux does.
			bufs := rxPost(t, r, rx, int(rx.Size()), tc.bufSize)
			for i, n := range tc.frames {
				frame := ethFrame(n, byte(i))
				r.sendPeer(t, withHeader(vnet.Header{}, frame))
				var got []byte
				want := (vnet.HeaderSize + n + tc.bufSize - 1) / tc.bufSize
				var heads []uint16
				for j := 0; j < want; j++ {
					u, err := rx.WaitUsed(virtiotest.DefaultTimeout)
					require.NoError(t, err)
					heads = append(heads, u.ID)
					if j < want-1 {
						require.Equal(t, uint32(tc.bufSize), u.Len, "frame %d buffer %d is full", i, j)
					}
					got = append(got, r.guest(t, bufs[u.ID], int(u.Len))...)
				}
				require.Len(t, got, vnet.HeaderSize+n)
				assert.Equal(t, uint16(want), binary.LittleEndian.Uint16(got[10:]), "frame %d: num_buffers", i)
				assert.Equal(t, frame, got[vnet.HeaderSize:], "frame %d", i)
				_, more, err := rx.PopUsed()
				require.NoError(t, err)
				assert.False(t, more, "frame %d used more buffers than num_buffers", i)
				// Give the buffers back, as the driver does.
				for _, h := range heads {
					addr := bufs[h]
					delete(bufs, h)
					nh, err := rx.Add([]virtiotest.Buf{{Addr: addr, Len: uint32(tc.bufSize), Writable: true}})
					require.NoError(t, err)
					bufs[nh] = addr
				}
				rx.Kick()
			}
			assert.Zero(t, r.net.Stats().RXTruncated)
		})
	}
}

// Without receive buffers the device leaves frames in the backend; they
// all arrive, in order, once the guest posts buffers and kicks.
func TestReceiveBackPressure(t *testing.T) {
	for _, fs := range featureSets {
		t.Run(fs.name, func(t *testing.T) {
			r := newRig(t, 8<<20)
			rx, _ := r.start(t, fs.features, 0, 0)
			const frames = 50
			for i := range frames {
				r.sendPeer(t, withHeader(vnet.Header{}, ethFrame(100+i, byte(i))))
			}
			time.Sleep(50 * time.Millisecond)
			st := r.net.Stats()
			assert.Zero(t, st.RXFrames)
			assert.Positive(t, st.RXStalls, "the receiver waits for buffers")
			_, ok, err := rx.PopUsed()
			require.NoError(t, err)
			require.False(t, ok)

			// Post buffers a few at a time: receiving resumes on each kick.
			bufs := map[uint16]memory.GuestAddr{}
			got := 0
			for got < frames {
				for h, a := range rxPost(t, r, rx, 5, 65562) {
					bufs[h] = a
				}
				for range 5 {
					u, err := rx.WaitUsed(virtiotest.DefaultTimeout)
					require.NoError(t, err, "frame %d", got)
					frame := ethFrame(100+got, byte(got))
					require.Equal(t, uint32(vnet.HeaderSize+len(frame)), u.Len, "frame %d", got)
					assert.Equal(t, frame, r.guest(t, bufs[u.ID]+vnet.HeaderSize, len(frame)), "frame %d", got)
					got++
				}
			}
			assert.Equal(t, uint64(frames), r.net.Stats().RXFrames)
		})
	}
}

// A receive chain that cannot hold a header is returned unused.
func TestReceiveBadChains(t *testing.T) {
	r := newRig(t, 4<<20)
	rx, _ := r.start(t, allFeatures, 0, 0)
	ro := r.alloc(t, 2048, nil)
	badRO, err := rx.Add([]virtiotest.Buf{{Addr: ro, Len: 2048}}) // device-readable only
	require.NoError(t, err)
	small := r.alloc(t, 64, nil)
	badSmall, err := rx.Add([]virtiotest.Buf{{Addr: small, Len: 11, Writable: true}})
	require.NoError(t, err)
	rx.Kick()
	for _, want := range []uint16{badRO, badSmall} {
		u, err := rx.WaitUsed(virtiotest.DefaultTimeout)
		require.NoError(t, err)
		assert.Equal(t, want, u.ID)
		assert.Zero(t, u.Len)
	}
	assert.Equal(t, uint64(2), r.net.Stats().RXBadChains)
	assert.False(t, r.drv.NeedsReset())

	// A runt from the backend is dropped without using buffers.
	bufs := rxPost(t, r, rx, 64, 2048)
	r.sendPeer(t, []byte{1, 2, 3})
	frame := ethFrame(80, 9)
	r.receiveAndExpect(t, rx, bufs, frame)
	assert.Equal(t, uint64(1), r.net.Stats().RXRunts)
}

// Chains that point outside guest RAM break the ring rules: the device
// asks for a reset (virtio 1.2 §2.1.2) and keeps running for the host.
func TestChainOutsideRAM(t *testing.T) {
	for _, q := range []int{vnet.RXQueue, vnet.TXQueue} {
		t.Run(fmt.Sprintf("queue %d", q), func(t *testing.T) {
			r := newRig(t, 1<<20)
			rx, tx := r.start(t, allFeatures, 0, 0)
			vq := []*virtiotest.Queue{rx, tx}[q]
			_, err := vq.Add([]virtiotest.Buf{{Addr: 1 << 40, Len: 2048, Writable: q == vnet.RXQueue}})
			require.NoError(t, err)
			vq.Kick()
			require.Eventually(t, r.drv.NeedsReset, virtiotest.DefaultTimeout, time.Millisecond)
			// The driver resets and starts over.
			rx, tx = r.start(t, allFeatures, 0, 0)
			bufs := rxPost(t, r, rx, 64, 2048)
			frame := ethFrame(60, 3)
			r.receiveAndExpect(t, rx, bufs, frame)
			_ = tx
		})
	}
}

// Reset stops both workers promptly, whatever they wait on, and the
// device works again after the driver starts over.
func TestResetWhileBusy(t *testing.T) {
	r := newRig(t, 8<<20)
	rx, tx := r.start(t, allFeatures, 0, 0)
	rxPost(t, r, rx, 64, 2048) // the receiver now waits on the backend
	// The transmitter fills the socket until it waits for room.
	frame := withHeader(vnet.Header{}, ethFrame(60000, 1))
	addr := r.alloc(t, len(frame), frame)
	for range 200 {
		if tx.Free() == 0 {
			break
		}
		_, err := tx.Add([]virtiotest.Buf{{Addr: addr, Len: uint32(len(frame))}})
		require.NoError(t, err)
	}
	tx.Kick()
	time.Sleep(50 * time.Millisecond)
	done := make(chan struct{})
	go func() {
		r.drv.Reset()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(virtiotest.DefaultTimeout):
		t.Fatal("reset did not return")
	}
	// Drain what the transmitter sent, then run again.
	for !r.peerEmpty(t) {
	}
	rx, tx = r.start(t, allFeatures, 0, 0)
	bufs := rxPost(t, r, rx, 64, 2048)
	small := ethFrame(64, 5)
	r.receiveAndExpect(t, rx, bufs, small)
	r.transmitAndExpect(t, tx, withHeader(vnet.Header{}, small))
}

func TestActivateTwice(t *testing.T) {
	r := newRig(t, 1<<20)
	r.start(t, allFeatures, 0, 0)
	require.ErrorIs(t, r.net.Activate(virtio.Activation{}), vnet.ErrActive)
}

// The device raises receive interrupts only as the driver's suppression
// allows (virtio 1.2 §2.7.7, §2.7.10).
func TestReceiveInterruptSuppression(t *testing.T) {
	send := func(r *rig, from, n int) {
		for i := from; i < from+n; i++ {
			r.sendPeer(t, withHeader(vnet.Header{}, ethFrame(60, byte(i))))
		}
		require.Eventually(t, func() bool { return r.net.Stats().RXFrames == uint64(from+n) },
			virtiotest.DefaultTimeout, time.Millisecond)
	}
	t.Run("NO_INTERRUPT", func(t *testing.T) {
		r := newRig(t, 4<<20)
		rx, _ := r.start(t, allFeatures&^virtio.FeatureEventIdx, 0, 0)
		rx.SetNoInterrupt(true)
		rxPost(t, r, rx, 64, 2048)
		before := r.drv.IRQ.Count()
		send(r, 0, 20)
		assert.Equal(t, before, r.drv.IRQ.Count())
	})
	t.Run("EVENT_IDX", func(t *testing.T) {
		r := newRig(t, 4<<20)
		rx, _ := r.start(t, allFeatures, 0, 0)
		rx.SetUsedEvent(100) // interrupt once used idx passes 100
		rxPost(t, r, rx, 64, 2048)
		before := r.drv.IRQ.Count()
		send(r, 0, 20)
		assert.Equal(t, before, r.drv.IRQ.Count(), "no interrupt before used_event")
		rx.SetUsedEvent(24)
		send(r, 20, 10)
		require.Eventually(t, func() bool { return r.drv.IRQ.Count() > before }, virtiotest.DefaultTimeout, time.Millisecond)
	})
}

// A guest that accepts 64 KiB frames but posts less than that in all is
// served through the bounce buffer: small frames flow, a large one waits
// (holding back the backend) until the guest posts room, and one larger
// than the whole ring can ever hold is dropped.
func TestReceiveFewBuffers(t *testing.T) {
	r := newRig(t, 8<<20)
	rx, _ := r.start(t, allFeatures, 16, 0)
	bufs := rxPost(t, r, rx, 8, 2048)
	readFrame := func(want []byte) {
		t.Helper()
		var got []byte
		var heads []uint16
		for len(got) < vnet.HeaderSize+len(want) {
			u, err := rx.WaitUsed(virtiotest.DefaultTimeout)
			require.NoError(t, err, "%+v", r.net.Stats())
			heads = append(heads, u.ID)
			got = append(got, r.guest(t, bufs[u.ID], int(u.Len))...)
		}
		assert.Equal(t, uint16(len(heads)), binary.LittleEndian.Uint16(got[10:]), "num_buffers")
		assert.Equal(t, want, got[vnet.HeaderSize:])
		for _, h := range heads {
			delete(bufs, h)
		}
	}

	small := ethFrame(1500, 1)
	r.sendPeer(t, withHeader(vnet.Header{}, small))
	readFrame(small)

	// 20000 bytes need 10 buffers; 7 are posted.
	large := ethFrame(20000, 2)
	r.sendPeer(t, withHeader(vnet.Header{}, large))
	after := ethFrame(100, 3)
	r.sendPeer(t, withHeader(vnet.Header{}, after))
	time.Sleep(50 * time.Millisecond)
	_, ok, err := rx.PopUsed()
	require.NoError(t, err)
	require.False(t, ok, "the large frame must wait for room")
	for h, a := range rxPost(t, r, rx, 8, 2048) {
		bufs[h] = a
	}
	readFrame(large)
	readFrame(after)

	// 16 buffers of 2 KiB can never hold 40000 bytes.
	for h, a := range rxPost(t, r, rx, 16-len(bufs), 2048) {
		bufs[h] = a
	}
	r.sendPeer(t, withHeader(vnet.Header{}, ethFrame(40000, 4)))
	r.sendPeer(t, withHeader(vnet.Header{}, small))
	readFrame(small)
	st := r.net.Stats()
	assert.Equal(t, uint64(1), st.RXDropped)
	assert.Zero(t, st.RXTruncated)
	assert.Equal(t, uint64(4), st.RXFrames)
}

func TestStatsString(t *testing.T) {
	assert.Equal(t, "rx 3 frames (100 bytes), tx 2 frames (50 bytes), 1 waits for receive buffers",
		vnet.Stats{RXFrames: 3, RXBytes: 100, TXFrames: 2, TXBytes: 50, RXStalls: 1}.String())
	assert.Equal(t, "rx 0 frames (0 bytes), tx 0 frames (0 bytes), 0 waits for receive buffers, 4 malformed tx, 1 rx dropped",
		vnet.Stats{TXMalformed: 4, RXDropped: 1}.String())
}
