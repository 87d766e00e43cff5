package blk_test

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/blk"
)

// Swap replaces the image under a running device: later requests read
// the new file, the capacity in the configuration space follows it, and
// a request past the new end fails.
func TestSwapBackingImage(t *testing.T) {
	r := newRig(t, sectors, blk.Options{}, virtio.TransportFeatures)
	status, _ := r.request(t, blk.TypeIn, 0, 512, false)
	require.Equal(t, blk.StatusOK, status)
	assert.Equal(t, r.image[:512], r.guest(t, r.data, 512))

	small := make([]byte, 16*blk.SectorSize)
	for i := range small {
		small[i] = 0xa5
	}
	path := filepath.Join(t.TempDir(), "other.img")
	require.NoError(t, os.WriteFile(path, small, 0o600))
	require.NoError(t, r.blk.Swap(path))
	assert.Equal(t, path, r.blk.Path())
	assert.Equal(t, uint64(16), r.blk.Sectors())
	assert.Equal(t, uint64(16), binary.LittleEndian.Uint64(r.drv.ReadConfig(0, 8)), "capacity")

	status, _ = r.request(t, blk.TypeIn, 0, 512, false)
	require.Equal(t, blk.StatusOK, status)
	assert.Equal(t, small[:512], r.guest(t, r.data, 512), "reads come from the new image")
	status, _ = r.request(t, blk.TypeIn, 16, 512, false)
	assert.Equal(t, blk.StatusIOErr, status, "past the new end")

	// A write lands in the new image and leaves the old one alone.
	require.NoError(t, r.drv.Mem.WriteAt(make([]byte, 512), r.data))
	status, _ = r.request(t, blk.TypeOut, 1, 512, false)
	require.Equal(t, blk.StatusOK, status)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, make([]byte, 512), got[512:1024])
	assert.Equal(t, r.image, r.file(t), "the replaced image is untouched")
}

func TestSwapFailureKeepsTheImage(t *testing.T) {
	r := newRig(t, sectors, blk.Options{}, virtio.TransportFeatures)
	dir := t.TempDir()
	odd := filepath.Join(dir, "odd.img")
	require.NoError(t, os.WriteFile(odd, make([]byte, 100), 0o600))
	tests := []struct {
		name string
		path string
		want error
	}{
		{"missing", filepath.Join(dir, "nope.img"), os.ErrNotExist},
		{"not whole sectors", odd, blk.ErrSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, r.blk.Swap(tt.path), tt.want)
			assert.Equal(t, r.path, r.blk.Path())
			assert.Equal(t, uint64(sectors), r.blk.Sectors())
			status, _ := r.request(t, blk.TypeIn, 0, 512, false)
			require.Equal(t, blk.StatusOK, status)
			assert.Equal(t, r.image[:512], r.guest(t, r.data, 512))
		})
	}
}

// A read-only device opens the new image read-only too.
func TestSwapKeepsReadOnly(t *testing.T) {
	r := newRig(t, sectors, blk.Options{ReadOnly: true}, virtio.TransportFeatures|blk.FeatureRO)
	path, _ := writeImage(t, "ro.img", 8*blk.SectorSize)
	require.NoError(t, os.Chmod(path, 0o400))
	require.NoError(t, r.blk.Swap(path))
	status, _ := r.request(t, blk.TypeOut, 0, 512, false)
	assert.Equal(t, blk.StatusIOErr, status)
}
