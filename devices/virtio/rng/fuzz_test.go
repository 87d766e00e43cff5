package rng

import (
	"encoding/binary"
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/memory"
)

// Guest memory for FuzzChain: a queue's descriptor table at 0, its avail
// ring at fuzzAvail, the input copied over it all.
const (
	fuzzMemSize   = 16 << 10
	fuzzQueueSize = 8
	fuzzAvail     = 0x100
	fuzzUsed      = 0x200
)

func fuzzSeed(mode byte, descs [][4]uint64) []byte {
	im := make([]byte, 0x300)
	for i, d := range descs {
		b := im[16*i:]
		binary.LittleEndian.PutUint64(b, d[0])
		binary.LittleEndian.PutUint32(b[8:], uint32(d[1]))
		binary.LittleEndian.PutUint16(b[12:], uint16(d[2]))
		binary.LittleEndian.PutUint16(b[14:], uint16(d[3]))
	}
	binary.LittleEndian.PutUint16(im[fuzzAvail+2:], 1)
	return append([]byte{mode}, im...)
}

// FuzzChain serves arbitrary rings, so the input chooses the chains.
// Nothing may panic, and every used length fits the chain's writable
// bytes and MaxRequest.
func FuzzChain(f *testing.F) {
	w, n, ind := uint64(virtio.DescFlagWrite), uint64(virtio.DescFlagNext), uint64(virtio.DescFlagIndirect)
	f.Add(fuzzSeed(0, [][4]uint64{{0x1000, 64, w, 0}}))
	f.Add(fuzzSeed(0, [][4]uint64{{0x1000, 16, n, 1}, {0x1100, 32, w | n, 2}, {0x1200, 8, w, 0}}))
	f.Add(fuzzSeed(0, [][4]uint64{{0x1000, 16, 0, 0}}))
	f.Add(fuzzSeed(0, [][4]uint64{{0x1000, 0xffffffff, w, 0}}))
	f.Add(fuzzSeed(1, [][4]uint64{{0x280, 32, ind, 0}}))
	f.Add(fuzzSeed(0, [][4]uint64{{0x1000, 8, w | n, 0}}))
	src := func(b []byte) (int, error) { clear(b); return len(b), nil }
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 {
			return
		}
		features := virtio.FeatureVersion1
		if data[0]&1 != 0 {
			features |= virtio.FeatureIndirectDesc
		}
		ram := make([]byte, fuzzMemSize)
		copy(ram, data[1:])
		mem := memory.FromSlices(memory.Region{Base: 0, Host: ram})
		q, err := virtio.NewQueue(mem, virtio.QueueConfig{Size: fuzzQueueSize, AvailRing: fuzzAvail, UsedRing: fuzzUsed}, fuzzQueueSize, features)
		if err != nil {
			t.Fatal(err)
		}
		r := New(Options{Source: src})
		var c virtio.Chain
		for range 2 * fuzzQueueSize {
			ok, err := q.Pop(&c)
			if err != nil || !ok {
				break
			}
			got, err := r.handle(&c, nil)
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if uint64(got) > min(c.WritableLen(), MaxRequest) {
				t.Fatalf("used length %d exceeds the %d writable bytes", got, c.WritableLen())
			}
			if err := q.Push(c.Head, got); err != nil {
				t.Fatal(err)
			}
		}
	})
}
