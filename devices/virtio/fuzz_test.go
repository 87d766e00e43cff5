package virtio_test

import (
	"encoding/binary"
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/memory"
)

// Guest memory for FuzzQueue: two regions with a hole between them, so
// buffers can straddle a region end or fall into the hole.
const (
	fuzzLowSize  = 8 << 10
	fuzzHighBase = 12 << 10
	fuzzHighSize = 4 << 10
	fuzzAvail    = 0x400
	fuzzUsed     = 0x800
	fuzzMaxSize  = 16
)

// fuzzImage lays out a seed: a header (queue size exponent, feature
// bits) and then the low region's bytes.
type fuzzImage struct {
	sizeLog  byte
	features byte
	low      [fuzzAvail + 0x40]byte
}

func (im *fuzzImage) desc(i int, addr uint64, n uint32, flags, next uint16) {
	b := im.low[16*i:]
	binary.LittleEndian.PutUint64(b, addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

func (im *fuzzImage) avail(heads ...uint16) {
	binary.LittleEndian.PutUint16(im.low[fuzzAvail+2:], uint16(len(heads)))
	for i, h := range heads {
		binary.LittleEndian.PutUint16(im.low[fuzzAvail+4+2*i:], h)
	}
}

func (im *fuzzImage) bytes() []byte {
	return append([]byte{im.sizeLog, im.features}, im.low[:]...)
}

func fuzzQueueSeeds() [][]byte {
	var seeds [][]byte
	// Direct chain: readable then writable.
	im := fuzzImage{sizeLog: 3, features: 3}
	im.desc(0, 0x1000, 16, virtio.DescFlagNext, 1)
	im.desc(1, 0x1100, 512, virtio.DescFlagWrite, 0)
	im.avail(0)
	seeds = append(seeds, im.bytes())
	// Indirect chain and a direct one.
	im = fuzzImage{sizeLog: 2, features: 3}
	im.desc(0, 0x300, 32, virtio.DescFlagIndirect, 0)
	im.desc(1, fuzzHighBase, 64, virtio.DescFlagWrite, 0)
	im.desc(0x300/16, 0x1000, 16, virtio.DescFlagNext, 1) // the indirect table
	im.desc(0x300/16+1, 0x1200, 8, virtio.DescFlagWrite, 0)
	im.avail(0, 1)
	seeds = append(seeds, im.bytes())
	// A loop.
	im = fuzzImage{sizeLog: 4, features: 1}
	im.desc(0, 0x1000, 1, virtio.DescFlagNext, 1)
	im.desc(1, 0x1000, 1, virtio.DescFlagNext, 0)
	im.avail(0)
	seeds = append(seeds, im.bytes())
	// A buffer across the hole.
	im = fuzzImage{sizeLog: 0, features: 2}
	im.desc(0, fuzzLowSize-8, 64, 0, 0)
	im.avail(0)
	seeds = append(seeds, im.bytes())
	return seeds
}

// FuzzQueue feeds arbitrary descriptor tables and rings to a queue. It
// must never panic or hang, never accept a chain longer than the queue,
// and stay broken after any error.
func FuzzQueue(f *testing.F) {
	for _, s := range fuzzQueueSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		size := uint16(1) << (data[0] % 5)
		var features uint64 = virtio.FeatureVersion1
		if data[1]&1 != 0 {
			features |= virtio.FeatureIndirectDesc
		}
		if data[1]&2 != 0 {
			features |= virtio.FeatureEventIdx
		}
		low := make([]byte, fuzzLowSize)
		copy(low, data[2:])
		high := make([]byte, fuzzHighSize)
		mem := memory.FromSlices(memory.Region{Base: 0, Host: low}, memory.Region{Base: fuzzHighBase, Host: high})
		q, err := virtio.NewQueue(mem, virtio.QueueConfig{Size: size, AvailRing: fuzzAvail, UsedRing: fuzzUsed}, fuzzMaxSize, features)
		if err != nil {
			t.Fatalf("valid layout refused: %v", err)
		}
		var c virtio.Chain
		for range 4 * fuzzMaxSize {
			ok, err := q.Pop(&c)
			if err != nil {
				if !q.Broken() {
					t.Fatalf("error %v left the queue running", err)
				}
				if _, err := q.Pop(&c); err == nil {
					t.Fatal("broken queue popped again")
				}
				return
			}
			if !ok {
				if _, err := q.EnableNotification(); err != nil {
					t.Fatal(err)
				}
				return
			}
			if n := len(c.Readable) + len(c.Writable); n == 0 || n > int(size) {
				t.Fatalf("chain of %d buffers in a queue of %d", n, size)
			}
			for _, w := range c.Writable {
				clear(w)
			}
			if err := q.Push(c.Head, uint32(c.WritableLen())); err != nil {
				t.Fatal(err)
			}
			q.NeedsInterrupt()
		}
	})
}
