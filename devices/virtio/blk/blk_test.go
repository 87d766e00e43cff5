package blk_test

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/blk"
	"github.com/vmm-dev/vmm/devices/virtio/virtiotest"
	"github.com/vmm-dev/vmm/memory"
)

const sectors = 256

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, make([]byte, n), 0o600))
		return p
	}
	tests := []struct {
		name string
		path string
		opts blk.Options
		want error
		text string
	}{
		{"missing file", filepath.Join(dir, "nope.img"), blk.Options{}, os.ErrNotExist, "nope.img"},
		{"empty image", write("empty.img", 0), blk.Options{}, blk.ErrSize, "empty.img: invalid disk image size: 0 bytes"},
		{"partial sector", write("odd.img", 1000), blk.Options{}, blk.ErrSize, "odd.img: invalid disk image size: 1000 bytes"},
		{"ID too long", write("ok.img", 512), blk.Options{ID: "123456789012345678901"}, blk.ErrID, "21 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := blk.New(tt.path, tt.opts)
			require.ErrorIs(t, err, tt.want)
			assert.Contains(t, err.Error(), tt.text)
		})
	}
}

func TestConfigAndFeatures(t *testing.T) {
	for _, ro := range []bool{false, true} {
		r := newRig(t, sectors, blk.Options{ReadOnly: ro}, virtio.TransportFeatures|blk.FeatureRO|blk.FeatureFlush)
		assert.Equal(t, uint64(sectors), binary.LittleEndian.Uint64(r.drv.ReadConfig(0, 8)), "capacity")
		assert.Equal(t, uint32(sectors), binary.LittleEndian.Uint32(r.drv.ReadConfig(0, 4)), "capacity, low half")
		assert.Equal(t, uint32(254), binary.LittleEndian.Uint32(r.drv.ReadConfig(12, 4)), "seg_max")
		assert.Equal(t, uint32(512), binary.LittleEndian.Uint32(r.drv.ReadConfig(20, 4)), "blk_size")
		assert.Equal(t, []byte{0, 0, 0, 0}, r.drv.ReadConfig(0x200, 4), "past the config space")
		f := r.drv.DeviceFeatures()
		assert.Equal(t, ro, f&blk.FeatureRO != 0)
		assert.NotZero(t, f&blk.FeatureFlush)
		assert.NotZero(t, f&blk.FeatureSegMax)
		assert.NotZero(t, f&blk.FeatureBlkSize)
		assert.Equal(t, uint16(blk.QueueSize), r.q.Size())
	}
}

func TestRequests(t *testing.T) {
	tests := []struct {
		name     string
		ro       bool
		typ      uint32
		sector   uint64
		n        uint32
		status   uint8
		used     uint32
		readBack int // bytes of the image expected in the data buffer
	}{
		{"read first sector", false, blk.TypeIn, 0, 512, blk.StatusOK, 513, 512},
		{"read 64 KiB", false, blk.TypeIn, 0, 64 << 10, blk.StatusOK, 64<<10 + 1, 64 << 10},
		{"read last sector", false, blk.TypeIn, sectors - 1, 512, blk.StatusOK, 513, 512},
		{"read nothing", false, blk.TypeIn, 3, 0, blk.StatusOK, 1, 0},
		{"read past the end", false, blk.TypeIn, sectors, 512, blk.StatusIOErr, 0, 0},
		{"read across the end", false, blk.TypeIn, sectors - 1, 1024, blk.StatusIOErr, 0, 0},
		{"read at a huge sector", false, blk.TypeIn, 1<<64 - 1, 512, blk.StatusIOErr, 0, 0},
		{"read of a partial sector", false, blk.TypeIn, 0, 100, blk.StatusIOErr, 0, 0},
		{"read from a read-only disk", true, blk.TypeIn, 1, 512, blk.StatusOK, 513, 512},
		{"write to a read-only disk", true, blk.TypeOut, 1, 512, blk.StatusIOErr, 1, 0},
		{"write past the end", false, blk.TypeOut, sectors, 512, blk.StatusIOErr, 1, 0},
		{"write of a partial sector", false, blk.TypeOut, 0, 10, blk.StatusIOErr, 1, 0},
		{"flush", false, blk.TypeFlush, 0, 0, blk.StatusOK, 1, 0},
		{"flush on a read-only disk", true, blk.TypeFlush, 0, 0, blk.StatusOK, 1, 0},
		{"unknown type", false, 99, 0, 0, blk.StatusUnsupp, 1, 0},
		{"legacy SCSI command", false, 2, 0, 512, blk.StatusUnsupp, 0, 0},
		{"discard is not offered", false, 11, 0, 16, blk.StatusUnsupp, 0, 0},
	}
	for _, tt := range tests {
		for _, indirect := range []bool{false, true} {
			t.Run(tt.name, func(t *testing.T) {
				r := newRig(t, sectors, blk.Options{ReadOnly: tt.ro}, virtio.TransportFeatures|blk.FeatureRO)
				status, used := r.request(t, tt.typ, tt.sector, tt.n, indirect)
				assert.Equal(t, tt.status, status)
				assert.Equal(t, tt.used, used)
				if tt.readBack > 0 {
					off := int(tt.sector) * blk.SectorSize
					assert.True(t, bytes.Equal(r.image[off:off+tt.readBack], r.guest(t, r.data, tt.readBack)))
				}
				assert.Equal(t, r.image, r.file(t), "the image is unchanged")
				assert.False(t, r.drv.NeedsReset())
			})
		}
	}
}

func TestWriteThenRead(t *testing.T) {
	r := newRig(t, sectors, blk.Options{}, virtio.TransportFeatures)
	payload := bytes.Repeat([]byte("virtio!!"), 1024/8)
	require.NoError(t, r.drv.Mem.WriteAt(payload, r.data))
	status, used := r.request(t, blk.TypeOut, 5, 1024, false)
	require.Equal(t, blk.StatusOK, status)
	assert.Equal(t, uint32(1), used)

	want := append([]byte(nil), r.image...)
	copy(want[5*512:], payload)
	assert.Equal(t, want, r.file(t))

	require.NoError(t, r.drv.Mem.Zero(r.data, 1024))
	status, _ = r.request(t, blk.TypeIn, 5, 1024, true)
	require.Equal(t, blk.StatusOK, status)
	assert.Equal(t, payload, r.guest(t, r.data, 1024))

	status, _ = r.request(t, blk.TypeFlush, 0, 0, false)
	assert.Equal(t, blk.StatusOK, status)
}

func TestGetID(t *testing.T) {
	tests := []struct {
		name string
		file string
		id   string
		want string
	}{
		{"default is the file name", "root.img", "", "root.img"},
		{"long file name is cut", "a-very-long-disk-image-name.raw", "", "a-very-long-disk-ima"},
		{"explicit", "x.img", "serial-0042", "serial-0042"},
		{"exactly 20 bytes", "x.img", "12345678901234567890", "12345678901234567890"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, img := writeImage(t, tt.file, 4096)
			r := newRigOn(t, path, img, blk.Options{ID: tt.id}, virtio.TransportFeatures, 1<<20)
			require.NoError(t, r.drv.Mem.WriteAt(bytes.Repeat([]byte{0xee}, 20), r.data))
			status, used := r.request(t, blk.TypeGetID, 0, 20, false)
			require.Equal(t, blk.StatusOK, status)
			assert.Equal(t, uint32(21), used)
			want := make([]byte, 20)
			copy(want, tt.want)
			assert.Equal(t, want, r.guest(t, r.data, 20))
		})
	}
}

func TestGetIDLongBuffer(t *testing.T) {
	// Only the 20 ID bytes are written; the used length stops there
	// because the status byte is not contiguous with them.
	r := newRig(t, sectors, blk.Options{ID: "disk"}, virtio.TransportFeatures)
	require.NoError(t, r.drv.Mem.WriteAt(bytes.Repeat([]byte{0xee}, 512), r.data))
	status, used := r.request(t, blk.TypeGetID, 0, 512, false)
	require.Equal(t, blk.StatusOK, status)
	assert.Equal(t, uint32(20), used)
	want := append([]byte("disk"), make([]byte, 16)...)
	want = append(want, bytes.Repeat([]byte{0xee}, 512-20)...)
	assert.Equal(t, want, r.guest(t, r.data, 512))

	status, used = r.request(t, blk.TypeGetID, 0, 8, false)
	require.Equal(t, blk.StatusOK, status)
	assert.Equal(t, uint32(9), used, "a short buffer gets what fits, then the status")
}

func TestFraming(t *testing.T) {
	// §2.7.4.1: no assumption about how descriptors split a request.
	r := newRig(t, sectors, blk.Options{}, virtio.TransportFeatures)
	img := r.image

	t.Run("header split in two, data in four pieces", func(t *testing.T) {
		r.header(t, r.hdr, blk.TypeIn, 2)
		bufs := []virtiotest.Buf{{Addr: r.hdr, Len: 8}, {Addr: r.hdr + 8, Len: 8}}
		for i := range 4 {
			bufs = append(bufs, virtiotest.Buf{Addr: r.data + memory.GuestAddr(i*1024), Len: 512, Writable: true})
		}
		bufs = append(bufs, virtiotest.Buf{Addr: r.stat, Len: 1, Writable: true})
		for _, indirect := range []bool{false, true} {
			u := r.submit(t, bufs, indirect)
			assert.Equal(t, uint32(2049), u.Len)
			assert.Equal(t, blk.StatusOK, r.status(t, r.stat))
			for i := range 4 {
				assert.Equal(t, img[(2+i)*512:(3+i)*512], r.guest(t, r.data+memory.GuestAddr(i*1024), 512))
			}
		}
	})
	t.Run("status shares the data buffer", func(t *testing.T) {
		r.header(t, r.hdr, blk.TypeIn, 7)
		u := r.submit(t, []virtiotest.Buf{{Addr: r.hdr, Len: 16}, {Addr: r.data, Len: 513, Writable: true}}, false)
		assert.Equal(t, uint32(513), u.Len)
		assert.Equal(t, img[7*512:8*512], r.guest(t, r.data, 512))
		assert.Equal(t, blk.StatusOK, r.status(t, r.data+512))
	})
	t.Run("header and write data in one buffer", func(t *testing.T) {
		r.header(t, r.hdr, blk.TypeOut, 9)
		payload := bytes.Repeat([]byte{0x5a}, 512)
		require.NoError(t, r.drv.Mem.WriteAt(payload, r.hdr+16))
		u := r.submit(t, []virtiotest.Buf{{Addr: r.hdr, Len: 16 + 512}, {Addr: r.stat, Len: 1, Writable: true}}, false)
		assert.Equal(t, uint32(1), u.Len)
		assert.Equal(t, blk.StatusOK, r.status(t, r.stat))
		assert.Equal(t, payload, r.file(t)[9*512:10*512])
	})
	t.Run("empty buffers anywhere", func(t *testing.T) {
		r.header(t, r.hdr, blk.TypeIn, 1)
		u := r.submit(t, []virtiotest.Buf{
			{Addr: r.hdr, Len: 0}, {Addr: r.hdr, Len: 16}, {Addr: r.data, Len: 0, Writable: true},
			{Addr: r.data, Len: 512, Writable: true}, {Addr: r.stat, Len: 1, Writable: true}, {Addr: r.stat + 1, Len: 0, Writable: true},
		}, true)
		assert.Equal(t, uint32(513), u.Len)
		assert.Equal(t, blk.StatusOK, r.status(t, r.stat))
	})
	t.Run("header in a device-writable buffer", func(t *testing.T) {
		r.header(t, r.hdr, blk.TypeIn, 0)
		u := r.submit(t, []virtiotest.Buf{{Addr: r.hdr, Len: 16, Writable: true}, {Addr: r.stat, Len: 1, Writable: true}}, false)
		assert.Equal(t, blk.StatusIOErr, r.status(t, r.stat))
		assert.Equal(t, uint32(0), u.Len, "the header bytes were not written")
	})
	// §5.2.6: read data is device-writable, write data device-readable.
	// Data the other way round is refused, not served as a 0-byte OK.
	t.Run("read into a device-readable buffer", func(t *testing.T) {
		r.header(t, r.hdr, blk.TypeIn, 0)
		require.NoError(t, r.drv.Mem.WriteAt([]byte{0xff}, r.stat))
		u := r.submit(t, []virtiotest.Buf{{Addr: r.hdr, Len: 16}, {Addr: r.data, Len: 512}, {Addr: r.stat, Len: 1, Writable: true}}, false)
		assert.Equal(t, blk.StatusIOErr, r.status(t, r.stat))
		assert.Equal(t, uint32(1), u.Len)
	})
	t.Run("write from a device-writable buffer", func(t *testing.T) {
		before := r.file(t)
		r.header(t, r.hdr, blk.TypeOut, 0)
		require.NoError(t, r.drv.Mem.WriteAt([]byte{0xff}, r.stat))
		u := r.submit(t, []virtiotest.Buf{{Addr: r.hdr, Len: 16}, {Addr: r.data, Len: 512, Writable: true}, {Addr: r.stat, Len: 1, Writable: true}}, false)
		assert.Equal(t, blk.StatusIOErr, r.status(t, r.stat))
		assert.Equal(t, uint32(0), u.Len, "the data buffer was not written")
		assert.Equal(t, before, r.file(t))
	})
	t.Run("short header", func(t *testing.T) {
		u := r.submit(t, []virtiotest.Buf{{Addr: r.hdr, Len: 12}, {Addr: r.stat, Len: 1, Writable: true}}, false)
		assert.Equal(t, blk.StatusIOErr, r.status(t, r.stat))
		assert.Equal(t, uint32(1), u.Len)
	})
	assert.False(t, r.drv.NeedsReset())
}

func TestNoStatusByteBreaksDevice(t *testing.T) {
	r := newRig(t, sectors, blk.Options{}, virtio.TransportFeatures)
	r.header(t, r.hdr, blk.TypeIn, 0)
	_, err := r.q.Add([]virtiotest.Buf{{Addr: r.hdr, Len: 16}, {Addr: r.data, Len: 512}})
	require.NoError(t, err)
	r.q.Kick()
	require.Eventually(t, r.drv.NeedsReset, virtiotest.DefaultTimeout, time.Millisecond)
	require.ErrorIs(t, r.mmio.Failure(), blk.ErrNoStatus)
	// The config change interrupt follows DEVICE_NEEDS_RESET.
	require.Eventually(t, func() bool {
		return r.drv.Read32(virtio.RegInterruptStatus)&virtio.InterruptConfigChange != 0
	}, virtiotest.DefaultTimeout, time.Millisecond)

	// The driver resets; the device works again.
	require.NoError(t, r.drv.Init(virtio.TransportFeatures, 0))
	r.q = r.drv.Queue(0)
	status, _ := r.request(t, blk.TypeIn, 0, 512, false)
	assert.Equal(t, blk.StatusOK, status)
}

func TestManyRequestsInFlight(t *testing.T) {
	for _, features := range []uint64{virtio.FeatureVersion1, virtio.TransportFeatures} {
		r := newRig(t, sectors, blk.Options{}, features)
		const depth = 32
		for round := range 20 {
			for i := range depth {
				hdr := r.hdr + memory.GuestAddr(i*16)
				r.header(t, hdr, blk.TypeIn, uint64(i))
				bufs := []virtiotest.Buf{
					{Addr: hdr, Len: 16},
					{Addr: r.data + memory.GuestAddr(i*512), Len: 512, Writable: true},
					{Addr: r.stat + memory.GuestAddr(i), Len: 1, Writable: true},
				}
				add := r.q.Add
				if i%2 == 1 && features&virtio.FeatureIndirectDesc != 0 {
					add = r.q.AddIndirect
				}
				_, err := add(bufs)
				require.NoError(t, err)
			}
			r.q.Kick()
			for range depth {
				_, err := r.q.WaitUsed(virtiotest.DefaultTimeout)
				require.NoError(t, err, "round %d", round)
			}
			assert.Equal(t, r.image[:depth*512], r.guest(t, r.data, depth*512))
			assert.Equal(t, make([]byte, depth), r.guest(t, r.stat, depth))
		}
	}
}
