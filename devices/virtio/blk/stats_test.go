package blk_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/blk"
)

func TestStatsCount(t *testing.T) {
	r := newRig(t, sectors, blk.Options{}, virtio.TransportFeatures|blk.FeatureFlush)
	steps := []struct {
		typ    uint32
		sector uint64
		n      uint32
		status uint8
	}{
		{blk.TypeIn, 0, 1024, blk.StatusOK},
		{blk.TypeIn, 2, 512, blk.StatusOK},
		{blk.TypeOut, 4, 2048, blk.StatusOK},
		{blk.TypeFlush, 0, 0, blk.StatusOK},
		{blk.TypeIn, sectors, 512, blk.StatusIOErr}, // past the end
		{99, 0, 0, blk.StatusUnsupp},
	}
	for _, st := range steps {
		status, _ := r.request(t, st.typ, st.sector, st.n, false)
		require.Equal(t, st.status, status, "request type %d", st.typ)
	}
	assert.Equal(t, blk.Stats{ReadBytes: 1536, WriteBytes: 2048, ReadCount: 2, WriteCount: 1, FlushCount: 1, InvalidReqs: 2},
		r.blk.Stats())
}
