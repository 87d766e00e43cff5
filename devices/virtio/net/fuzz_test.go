package net_test

import (
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
	vnet "github.com/vmm-dev/vmm/devices/virtio/net"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
)

// FuzzTXHeader checks ValidateTX on any header, frame length and feature
// set: it never panics, and whatever it accepts obeys the rules the
// backend relies on.
func FuzzTXHeader(f *testing.F) {
	plain := vnet.Header{}.Bytes()
	tso := vnet.Header{Flags: vnet.FlagNeedsCSUM, GSOType: vnet.GSOTCPv4, HdrLen: 54, GSOSize: 1448, CSumStart: 34, CSumOffset: 16}.Bytes()
	f.Add(plain[:], 1514, allFeatures)
	f.Add(tso[:], 65000, allFeatures)
	f.Add(tso[:], 65000, uint64(0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 70000, ^uint64(0))
	f.Fuzz(func(t *testing.T, raw []byte, frameLen int, features uint64) {
		var b [vnet.HeaderSize]byte
		copy(b[:], raw)
		h := vnet.ParseHeader(b)
		require.Equal(t, b, h.Bytes(), "encoding round trip")
		err := vnet.ValidateTX(h, frameLen, features)
		if err != nil {
			require.True(t, errors.Is(err, vnet.ErrHeader) || errors.Is(err, vnet.ErrFrameSize), "%v", err)
			return
		}
		require.GreaterOrEqual(t, frameLen, 14)
		require.LessOrEqual(t, frameLen, vnet.MaxFrameSize)
		require.Zero(t, h.Flags&^vnet.FlagNeedsCSUM)
		require.LessOrEqual(t, int(h.HdrLen), frameLen)
		if h.Flags != 0 {
			require.NotZero(t, features&vnet.FeatureCSUM)
			require.LessOrEqual(t, int(h.CSumStart)+int(h.CSumOffset)+2, frameLen)
		}
		switch h.GSOType &^ vnet.GSOECN {
		case vnet.GSONone:
			require.Zero(t, h.GSOType)
		case vnet.GSOTCPv4:
			require.NotZero(t, features&vnet.FeatureHostTSO4)
		case vnet.GSOTCPv6:
			require.NotZero(t, features&vnet.FeatureHostTSO6)
		default:
			t.Fatalf("accepted gso_type %#x", h.GSOType)
		}
		if h.GSOType != vnet.GSONone {
			require.NotZero(t, h.Flags&vnet.FlagNeedsCSUM)
			require.NotZero(t, h.GSOSize)
		}
		if h.GSOType&vnet.GSOECN != 0 {
			require.NotZero(t, features&vnet.FeatureHostECN)
		}
	})
}

// Guest memory for the chain fuzzers: the fuzzed queue's descriptor table
// at 0, its rings at fuzzAvail and fuzzUsed, the other queue's rings past
// fuzzSpan; the input is copied over [0, fuzzSpan) except the rings, so it
// chooses descriptors, indirect tables, headers and frames.
const (
	fuzzQueueSize = 8
	fuzzAvail     = 0x100
	fuzzUsed      = 0x200
	fuzzRingsEnd  = 0x300
	fuzzSpan      = 0x20000
	fuzzRAM       = 0x40000
	fuzzOther     = 0x30000
)

// fuzzFeatures picks a feature set from one input byte.
func fuzzFeatures(sel byte) uint64 {
	f := virtio.FeatureVersion1 | vnet.FeatureMAC
	opt := []uint64{virtio.FeatureIndirectDesc, virtio.FeatureEventIdx, vnet.FeatureCSUM | vnet.FeatureGuestCSUM,
		vnet.FeatureHostTSO4 | vnet.FeatureGuestTSO4, vnet.FeatureHostTSO6 | vnet.FeatureGuestTSO6,
		vnet.FeatureHostECN | vnet.FeatureGuestECN, vnet.FeatureMrgRXBuf, vnet.FeatureStatus}
	for i, o := range opt {
		if sel&(1<<i) != 0 {
			f |= o
		}
	}
	return f
}

type fuzzRig struct {
	*rig
	features uint64
	q        *virtiotest.Queue
}

// newFuzzRig starts a device with queue index at the fixed fuzz layout and
// the other queue elsewhere, then writes mem over guest memory.
func newFuzzRig(t *testing.T, sel byte, index uint16, mem []byte) *fuzzRig {
	r := newRig(t, fuzzRAM)
	features := fuzzFeatures(sel)
	require.NoError(t, r.drv.Negotiate(features))
	fuzzed := virtio.QueueConfig{Size: fuzzQueueSize, DescTable: 0, AvailRing: fuzzAvail, UsedRing: fuzzUsed}
	other := virtio.QueueConfig{Size: fuzzQueueSize, DescTable: fuzzOther, AvailRing: fuzzOther + 0x100, UsedRing: fuzzOther + 0x200}
	cfgs := map[uint16]virtio.QueueConfig{index: fuzzed, 1 - index: other}
	var q *virtiotest.Queue
	for i := uint16(0); i < 2; i++ {
		vq, err := r.drv.SetupQueueAt(i, cfgs[i])
		require.NoError(t, err)
		if i == index {
			q = vq
		}
	}
	require.NoError(t, r.drv.DriverOK())
	mem = mem[:min(len(mem), fuzzSpan)]
	require.NoError(t, r.mem.WriteAt(mem[:min(len(mem), fuzzAvail)], 0))
	if len(mem) > fuzzRingsEnd {
		require.NoError(t, r.mem.WriteAt(mem[fuzzRingsEnd:], fuzzRingsEnd))
	}
	return &fuzzRig{rig: r, features: features, q: q}
}

// publish makes up to fuzzQueueSize heads from the input available; some
// may be out of range on purpose. It returns how many.
func (r *fuzzRig) publish(heads []byte) int {
	n := min(len(heads), fuzzQueueSize)
	for _, h := range heads[:n] {
		r.q.PublishRaw(uint16(h % (2 * fuzzQueueSize)))
	}
	r.q.Notify()
	return n
}

// settle waits until the device used n chains or asked for a reset. A
// device that does neither hangs, which fails the fuzzer.
func (r *fuzzRig) settle(t *testing.T, n int) {
	waitFor(t, func() bool { return r.q.UsedIdx() == uint16(n) || r.drv.NeedsReset() },
		"the device neither used every chain nor asked for a reset")
}

// waitFor polls cond; a device that never gets there hangs, which fails
// the fuzzer.
func waitFor(t *testing.T, cond func() bool, msg string) {
	deadline := time.Now().Add(virtiotest.DefaultTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

func fuzzDesc(mem []byte, i int, addr uint64, n uint32, flags, next uint16) {
	b := mem[16*i:]
	binary.LittleEndian.PutUint64(b, addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

// fuzzSeeds returns inputs: sel, the head count byte, prefix, heads
// 0, 2, 3, then memory.
func fuzzSeeds(prefix ...byte) [][]byte {
	var seeds [][]byte
	mem := make([]byte, 0x2000)
	// A header and a frame in two descriptors, and the same through an
	// indirect table; a third chain writable only.
	h := vnet.Header{}.Bytes()
	copy(mem[0x1000:], h[:])
	copy(mem[0x1000+12:], ethFrame(200, 1))
	fuzzDesc(mem, 0, 0x1000, 12, virtio.DescFlagNext, 1)
	fuzzDesc(mem, 1, 0x1000+12, 200, 0, 0)
	fuzzDesc(mem, 2, 0x800, 32, virtio.DescFlagIndirect, 0)
	fuzzDesc(mem, 0x80, 0x1000, 12, virtio.DescFlagNext, 1)
	fuzzDesc(mem, 0x81, 0x1000+12, 200, 0, 0)
	fuzzDesc(mem, 3, 0x1800, 2048, virtio.DescFlagWrite, 0)
	for _, sel := range []byte{0xff, 0x00, 0x41} {
		in := append(append([]byte{sel, 2}, prefix...), 0, 2, 3)
		seeds = append(seeds, append(in, mem...))
	}
	return seeds
}

// FuzzTXChain sends arbitrary transmit chains through the test driver to a
// device on a socketpair. Nothing panics or hangs; every chain is used or
// the device asks for a reset; every frame that reaches the backend has a
// header the negotiated features allow and a sane length.
func FuzzTXChain(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 2 {
			return
		}
		nheads := int(in[1]%fuzzQueueSize) + 1
		if len(in) < 2+nheads {
			return
		}
		heads, mem := in[2:2+nheads], in[2+nheads:]
		r := newFuzzRig(t, in[0], vnet.TXQueue, mem)
		r.settle(t, r.publish(heads))
		for {
			frame, err := r.recvPeer(t, time.Millisecond)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			require.NoError(t, err)
			require.GreaterOrEqual(t, len(frame), vnet.HeaderSize+14)
			require.LessOrEqual(t, len(frame), vnet.HeaderSize+vnet.MaxFrameSize)
			var hb [vnet.HeaderSize]byte
			copy(hb[:], frame)
			require.NoError(t, vnet.ValidateTX(vnet.ParseHeader(hb), len(frame)-vnet.HeaderSize, r.features))
		}
	})
}

// FuzzRXChain offers arbitrary receive chains and frames of arbitrary
// sizes: nothing panics or hangs, and the device delivers at most the one
// frame it was given.
func FuzzRXChain(f *testing.F) {
	for _, s := range fuzzSeeds(0xdc, 0x05) { // a 1500-byte frame
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 4 {
			return
		}
		nheads := int(in[1]%fuzzQueueSize) + 1
		frameLen := int(binary.LittleEndian.Uint16(in[2:]))
		if len(in) < 4+nheads {
			return
		}
		heads, mem := in[4:4+nheads], in[4+nheads:]
		r := newFuzzRig(t, in[0], vnet.RXQueue, mem)
		frame := make([]byte, frameLen)
		for i := range frame {
			frame[i] = byte(i)
		}
		r.sendPeer(t, frame)
		// The receiver sleeps on the empty ring before the chains come.
		waitFor(t, func() bool { return r.net.Stats().RXStalls > 0 }, "the receiver never waited for buffers")
		stalls := r.net.Stats().RXStalls
		r.publish(heads)
		// It then takes the frame, asks for a reset, or sleeps again
		// for lack of room, having used the chains too small to keep.
		waitFor(t, func() bool {
			st := r.net.Stats()
			return st.RXFrames+st.RXRunts+st.RXErrors > 0 || st.RXStalls > stalls || r.drv.NeedsReset()
		}, "the receiver neither took the frame, nor slept, nor asked for a reset")
		// Used lengths are not checked: a hostile chain may point into
		// the used ring itself, and the frame then overwrites them.
		st := r.net.Stats()
		require.LessOrEqual(t, st.RXFrames, uint64(1))
		require.LessOrEqual(t, st.RXBytes+vnet.HeaderSize*st.RXFrames, uint64(frameLen))
	})
}
