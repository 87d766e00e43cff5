package blk_test

import (
	"encoding/binary"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/blk"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

// The benchmarks compare the device path (test driver -> virtio-mmio ->
// queue -> preadv/pwritev into guest memory -> used ring -> interrupt)
// with plain preadv/pwritev of the same sizes on the same file. The file
// is small enough to stay in the page cache, so both measure the copy and
// the per-request overhead, not the disk.
const (
	benchImage = 32 << 20
	// benchDepth requests are kept in flight, as a guest's block layer
	// does; each kick submits what the driver has queued.
	benchDepth = 16
)

func BenchmarkBlockRead4K(b *testing.B)   { benchDevice(b, blk.TypeIn, 4<<10) }
func BenchmarkBlockRead64K(b *testing.B)  { benchDevice(b, blk.TypeIn, 64<<10) }
func BenchmarkBlockWrite4K(b *testing.B)  { benchDevice(b, blk.TypeOut, 4<<10) }
func BenchmarkBlockWrite64K(b *testing.B) { benchDevice(b, blk.TypeOut, 64<<10) }
func BenchmarkPreadv4K(b *testing.B)      { benchPlain(b, false, 4<<10) }
func BenchmarkPreadv64K(b *testing.B)     { benchPlain(b, false, 64<<10) }
func BenchmarkPwritev4K(b *testing.B)     { benchPlain(b, true, 4<<10) }
func BenchmarkPwritev64K(b *testing.B)    { benchPlain(b, true, 64<<10) }

// The Depth16 variants rotate over benchDepth buffers, the memory
// footprint of the device benchmarks, which the single hot buffer above
// does not have; compare with both.
func BenchmarkPreadv64KDepth16(b *testing.B)  { benchPlainSpread(b, false, 64<<10) }
func BenchmarkPwritev64KDepth16(b *testing.B) { benchPlainSpread(b, true, 64<<10) }

// benchOffset walks the image sequentially, wrapping around.
func benchOffset(i, size int) int64 { return int64(i*size) % (benchImage - int64(size)) }

func benchDevice(b *testing.B, typ uint32, size int) {
	path, img := writeImage(b, "bench.img", benchImage)
	r := newRigOn(b, path, img, blk.Options{}, virtio.TransportFeatures, 4<<20+benchDepth*(uint64(size)+4096))

	// One slot per request in flight: header, data and status buffers.
	// The driver keeps host views of header and status so its own work,
	// which a real guest does on its vCPUs, stays small.
	type slot struct {
		hdr, data, stat   memory.GuestAddr
		hdrView, statView []byte
	}
	slots := make([]slot, benchDepth)
	free := make([]int, 0, benchDepth)
	for i := range slots {
		var err error
		s := &slots[i]
		s.hdr, err = r.drv.Alloc(64, 64)
		require.NoError(b, err)
		s.data, err = r.drv.Alloc(uint64(size), 4096)
		require.NoError(b, err)
		s.stat, err = r.drv.Alloc(64, 64)
		require.NoError(b, err)
		s.hdrView, err = r.drv.Mem.Slice(s.hdr, blk.HeaderSize)
		require.NoError(b, err)
		s.statView, err = r.drv.Mem.Slice(s.stat, 1)
		require.NoError(b, err)
		binary.LittleEndian.PutUint32(s.hdrView, typ)
		free = append(free, i)
	}
	var slotOf [blk.QueueSize]int
	next, submitted := 0, 0
	submit := func() {
		i := free[len(free)-1]
		free = free[:len(free)-1]
		s := slots[i]
		binary.LittleEndian.PutUint64(s.hdrView[8:], uint64(benchOffset(next, size)/blk.SectorSize))
		s.statView[0] = 0xff
		next++
		// Indirect, as Linux sends multi-segment requests.
		head, err := r.q.AddIndirect([]virtiotest.Buf{
			{Addr: s.hdr, Len: blk.HeaderSize},
			{Addr: s.data, Len: uint32(size), Writable: typ == blk.TypeIn},
			{Addr: s.stat, Len: 1, Writable: true},
		})
		if err != nil {
			b.Fatal(err)
		}
		slotOf[head] = i
		submitted++
	}
	complete := func(u virtiotest.Used) {
		i := slotOf[u.ID]
		if st := slots[i].statView[0]; st != blk.StatusOK {
			b.Fatalf("request status %d", st)
		}
		free = append(free, i)
	}

	// The baseline runs the same operations before and after the device,
	// so that neither side gets the page cache as the other left it.
	plainBefore := plainTime(b, path, typ == blk.TypeOut, size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for done := 0; done < b.N; {
		for len(free) > 0 && submitted < b.N {
			submit()
		}
		r.q.Kick()
		u, err := r.q.WaitUsed(virtiotest.DefaultTimeout)
		if err != nil {
			b.Fatal(err)
		}
		complete(u)
		done++
		for { // reap whatever else completed before refilling
			u, ok, err := r.q.PopUsed()
			if err != nil {
				b.Fatal(err)
			}
			if !ok {
				break
			}
			complete(u)
			done++
		}
	}
	b.StopTimer()
	device := b.Elapsed()
	plain := (plainBefore + plainTime(b, path, typ == blk.TypeOut, size)) / 2
	if device > 0 {
		// The device's throughput as a percentage of the plain calls'.
		b.ReportMetric(100*float64(plain)/float64(device), "%_of_plain")
	}
}

// plainTime times b.N plain preadv/pwritev calls on the image, over
// benchDepth buffers (the device run's memory footprint).
func plainTime(b *testing.B, path string, write bool, size int) time.Duration {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(b, err)
	defer func() { require.NoError(b, f.Close()) }()
	bufs := plainBuffers(benchDepth, size)
	start := time.Now()
	plainOps(b, int(f.Fd()), write, bufs, size, b.N)
	return time.Since(start)
}

func benchPlain(b *testing.B, write bool, size int) { benchPlainBuffers(b, write, size, 1) }

func benchPlainSpread(b *testing.B, write bool, size int) {
	benchPlainBuffers(b, write, size, benchDepth)
}

func benchPlainBuffers(b *testing.B, write bool, size, nbufs int) {
	path, _ := writeImage(b, "bench.img", benchImage)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	require.NoError(b, err)
	b.Cleanup(func() { require.NoError(b, f.Close()) })
	bufs := plainBuffers(nbufs, size)
	b.SetBytes(int64(size))
	b.ResetTimer()
	plainOps(b, int(f.Fd()), write, bufs, size, b.N)
}

func plainBuffers(n, size int) [][][]byte {
	bufs := make([][][]byte, n)
	for i := range bufs {
		bufs[i] = [][]byte{make([]byte, size)}
	}
	return bufs
}

// plainOps does n sequential preadv or pwritev calls of size bytes.
func plainOps(b *testing.B, fd int, write bool, bufs [][][]byte, size, n int) {
	op := unix.Preadv
	if write {
		op = unix.Pwritev
	}
	for i := range n {
		got, err := op(fd, bufs[i%len(bufs)], benchOffset(i, size))
		if err != nil || got != size {
			b.Fatalf("transfer %d of %d bytes: %v", got, size, err)
		}
	}
}
