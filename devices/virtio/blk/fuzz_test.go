package blk

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/memory"
)

// Guest memory layout for FuzzBlockRequest: a queue of fuzzQueueSize at
// address 0, its avail ring at fuzzAvail, and the fuzz input copied over
// the whole region, so the input chooses descriptors, headers and data.
const (
	fuzzMemSize   = 16 << 10
	fuzzQueueSize = 8
	fuzzAvail     = 0x100
	fuzzUsed      = 0x200
	fuzzSectors   = 16
)

type fuzzImage [fuzzMemSize]byte

func (im *fuzzImage) desc(i int, addr uint64, n uint32, flags, next uint16) {
	b := im[16*i:]
	binary.LittleEndian.PutUint64(b, addr)
	binary.LittleEndian.PutUint32(b[8:], n)
	binary.LittleEndian.PutUint16(b[12:], flags)
	binary.LittleEndian.PutUint16(b[14:], next)
}

func (im *fuzzImage) request(addr uint64, typ uint32, sector uint64) {
	binary.LittleEndian.PutUint32(im[addr:], typ)
	binary.LittleEndian.PutUint64(im[addr+8:], sector)
}

// seed returns mode byte + the memory up to the last byte the seed uses.
func (im *fuzzImage) seed(mode byte, used int) []byte {
	binary.LittleEndian.PutUint16(im[fuzzAvail+2:], 1) // one chain, head 0
	return append([]byte{mode}, im[:used]...)
}

// fuzzBlockSeeds keeps every byte it sets below 0x3c0, so seeds stay
// small; data buffers lie beyond the input, in zeroed memory.
func fuzzBlockSeeds() [][]byte {
	const hdr, status, data, table = 0x300, 0x310, 0x2000, 0x380
	var seeds [][]byte
	for _, typ := range []uint32{TypeIn, TypeOut, TypeGetID, TypeFlush, 77} {
		var im fuzzImage
		im.request(hdr, typ, 3)
		im.desc(0, hdr, 16, virtio.DescFlagNext, 1)
		flags := uint16(virtio.DescFlagNext)
		if typ != TypeOut {
			flags |= virtio.DescFlagWrite
		}
		im.desc(1, data, 512, flags, 2)
		im.desc(2, status, 1, virtio.DescFlagWrite, 0)
		seeds = append(seeds, im.seed(0, status+1))
	}
	// Read-only disk, indirect write across the end of the disk.
	var im fuzzImage
	im.request(hdr, TypeOut, fuzzSectors-1)
	im.desc(0, table, 48, virtio.DescFlagIndirect, 0)
	im.desc(table/16, hdr, 16, virtio.DescFlagNext, 1)
	im.desc(table/16+1, data, 1024, virtio.DescFlagNext, 2)
	im.desc(table/16+2, status, 1, virtio.DescFlagWrite, 0)
	seeds = append(seeds, im.seed(3, table+48))
	return seeds
}

// FuzzBlockRequest sends arbitrary request chains to a block device on a
// temporary image. Nothing may panic, the image never changes size, a
// read-only image never changes at all, and a request either completes
// with a length within its writable buffers or fails with ErrNoStatus.
func FuzzBlockRequest(f *testing.F) {
	for _, s := range fuzzBlockSeeds() {
		f.Add(s)
	}
	dir := f.TempDir()
	content := bytes.Repeat([]byte("0123456789abcdef"), fuzzSectors*SectorSize/16)
	open := func(name string, ro bool) *Block {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, content, 0o600); err != nil {
			f.Fatal(err)
		}
		b, err := New(path, Options{ReadOnly: ro})
		if err != nil {
			f.Fatal(err)
		}
		f.Cleanup(func() {
			if err := b.Close(); err != nil {
				f.Error(err)
			}
		})
		return b
	}
	rw, ro := open("rw.img", false), open("ro.img", true)

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 {
			return
		}
		b := rw
		if data[0]&1 != 0 {
			b = ro
		}
		features := virtio.FeatureVersion1
		if data[0]&2 != 0 {
			features |= virtio.FeatureIndirectDesc
		}
		ram := make([]byte, fuzzMemSize)
		copy(ram, data[1:])
		mem := memory.FromSlices(memory.Region{Base: 0, Host: ram})
		q, err := virtio.NewQueue(mem, virtio.QueueConfig{Size: fuzzQueueSize, AvailRing: fuzzAvail, UsedRing: fuzzUsed}, fuzzQueueSize, features)
		if err != nil {
			t.Fatal(err)
		}
		s := &server{b: b}
		var c virtio.Chain
		for range 2 * fuzzQueueSize {
			ok, err := q.Pop(&c)
			if err != nil || !ok {
				break
			}
			n, err := s.handle(&c)
			if err != nil {
				if !errors.Is(err, ErrNoStatus) {
					t.Fatalf("unexpected error %v", err)
				}
				break
			}
			if uint64(n) > c.WritableLen() {
				t.Fatalf("used length %d exceeds the %d writable bytes", n, c.WritableLen())
			}
			if err := q.Push(c.Head, n); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []*Block{rw, ro} {
			st, err := os.Stat(d.path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() != int64(len(content)) {
				t.Fatalf("%s changed size to %d", d.path, st.Size())
			}
		}
		got, err := os.ReadFile(ro.path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content) {
			t.Fatal("read-only image changed")
		}
	})
}
