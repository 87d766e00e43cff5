package virtio_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
)

// A register access of FuzzMMIORegisters: 7 bytes, kind (bit 0 write,
// bits 1-2 width 1, 2, 4 or 8 bytes), offset (le16, within the window)
// and value (le32, repeated for 8-byte writes).
const fuzzOpSize = 7

type fuzzOp struct {
	write bool
	width int
	off   uint16
	val   uint32
}

func (o fuzzOp) bytes() []byte {
	b := make([]byte, fuzzOpSize)
	b[0] = byte(map[int]int{1: 0, 2: 1, 4: 2, 8: 3}[o.width]) << 1
	if o.write {
		b[0] |= 1
	}
	binary.LittleEndian.PutUint16(b[1:], o.off)
	binary.LittleEndian.PutUint32(b[3:], o.val)
	return b
}

func w32(off uint16, v uint32) fuzzOp { return fuzzOp{write: true, width: 4, off: off, val: v} }

func fuzzOps(ops ...fuzzOp) []byte {
	var b []byte
	for _, o := range ops {
		b = append(b, o.bytes()...)
	}
	return b
}

func fuzzMMIOSeeds() [][]byte {
	// A driver's whole handshake, with queue 0 of 16 at fixed addresses.
	handshake := []fuzzOp{
		w32(virtio.RegStatus, 1), w32(virtio.RegStatus, 3),
		w32(virtio.RegDriverFeaturesSel, 1), w32(virtio.RegDriverFeatures, 1),
		w32(virtio.RegStatus, 11),
		w32(virtio.RegQueueSel, 0), w32(virtio.RegQueueNum, 16),
		w32(virtio.RegQueueDescLow, 0x1000), w32(virtio.RegQueueDriverLow, 0x2000), w32(virtio.RegQueueDeviceLow, 0x3000),
		w32(virtio.RegQueueReady, 1), w32(virtio.RegStatus, 15),
	}
	return [][]byte{
		fuzzOps(handshake...),
		fuzzOps(append(handshake, w32(virtio.RegQueueNotify, 0), w32(virtio.RegQueueNotify, 0xffff), w32(virtio.RegStatus, 0x8f))...),
		fuzzOps(w32(virtio.RegStatus, 11), w32(virtio.RegQueueNum, 3), w32(virtio.RegQueueReady, 1), w32(virtio.RegStatus, 15)),
		fuzzOps(fuzzOp{width: 8, off: virtio.RegConfig + 6}, fuzzOp{write: true, width: 2, off: virtio.RegStatus, val: 0xffff},
			fuzzOp{write: true, width: 8, off: 0xff8, val: 0xffffffff}, fuzzOp{width: 1, off: 0xfff}),
	}
}

// FuzzMMIORegisters plays arbitrary register accesses, of any width and
// alignment, on a transport. It must never panic or hang, and afterwards
// a reset and a normal handshake must bring the device back (virtio 1.2
// §2.4: a reset returns the device to its initial state).
func FuzzMMIORegisters(f *testing.F) {
	for _, s := range fuzzMMIOSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 64*fuzzOpSize {
			return
		}
		r := newEchoRig(t, 16, 8)
		for ; len(data) >= fuzzOpSize; data = data[fuzzOpSize:] {
			width := 1 << (data[0] >> 1 & 3)
			off := uint64(binary.LittleEndian.Uint16(data[1:]) % virtio.MMIOSize)
			if off+uint64(width) > virtio.MMIOSize {
				continue // one access never crosses the window (bus checks it)
			}
			b := make([]byte, width)
			for i := range b {
				b[i] = data[3+i%4]
			}
			if data[0]&1 != 0 {
				r.mmio.Write(off, b)
			} else {
				r.mmio.Read(off, b)
			}
		}
		if err := r.drv.Init(virtio.TransportFeatures, 0); err != nil {
			t.Fatalf("handshake after reset: %v", err)
		}
		if r.drv.NeedsReset() {
			t.Fatal("DEVICE_NEEDS_RESET survived a reset")
		}
		q := r.drv.Queue(0)
		in, err := r.drv.Alloc(8, 8)
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.drv.Alloc(8, 8)
		if err != nil {
			t.Fatal(err)
		}
		want := []byte("hostile!")
		if err := r.drv.Mem.WriteAt(want, in); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Add([]virtiotest.Buf{{Addr: in, Len: 8}, {Addr: out, Len: 8, Writable: true}}); err != nil {
			t.Fatal(err)
		}
		q.Kick()
		u, err := q.WaitUsed(virtiotest.DefaultTimeout)
		if err != nil {
			t.Fatalf("request after reset: %v", err)
		}
		got := make([]byte, 8)
		if err := r.drv.Mem.ReadAt(got, out); err != nil {
			t.Fatal(err)
		}
		if u.Len != 8 || !bytes.Equal(got, want) {
			t.Fatalf("echo after reset: used len %d, %q", u.Len, got)
		}
	})
}
