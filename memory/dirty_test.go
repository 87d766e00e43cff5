package memory

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDirtyLog(t *testing.T) {
	m := FromSlices(Region{Base: 0, Host: make([]byte, 256*PageSize)}, Region{Base: 1 << 32, Host: make([]byte, 64*PageSize)})
	assert.Nil(t, m.TakeDirty(), "off until TrackDirty")
	require.NoError(t, m.WriteAt([]byte{1}, 5*PageSize))
	m.TrackDirty()
	assert.Equal(t, [][]uint64{{0, 0, 0, 0}, {0}}, m.TakeDirty(), "writes before TrackDirty are not in it")

	require.NoError(t, m.WriteAt([]byte{1, 2}, 3*PageSize-1))  // pages 2 and 3
	require.NoError(t, m.PutUint64(70*PageSize+8, 7))          // page 70
	require.NoError(t, m.Zero(100*PageSize, 130*PageSize))     // pages 100-229, across words
	require.NoError(t, m.Discard(1<<32+63*PageSize, PageSize)) // the high region's last page
	m.MarkDirty(255*PageSize, 10*PageSize)                     // runs past the region's end
	m.MarkDirty(^GuestAddr(0)-10, 100)                         // wraps: nothing in RAM
	got := m.TakeDirty()
	want := make([]uint64, 4)
	set := func(p uint64) { want[p/64] |= 1 << (p % 64) }
	for _, p := range []uint64{2, 3, 70, 255} {
		set(p)
	}
	for p := uint64(100); p < 230; p++ {
		set(p)
	}
	assert.Equal(t, [][]uint64{want, {1 << 63}}, got)
	assert.Equal(t, [][]uint64{{0, 0, 0, 0}, {0}}, m.TakeDirty(), "TakeDirty clears")
	assert.Error(t, m.WriteAt([]byte{1}, 1<<31), "outside RAM")
	assert.Equal(t, [][]uint64{{0, 0, 0, 0}, {0}}, m.TakeDirty(), "a failed write marks nothing")
}

func BenchmarkMarkDirtyOff(b *testing.B) {
	m := FromSlices(Region{Base: 0, Host: make([]byte, 1<<20)})
	for i := 0; i < b.N; i++ {
		m.MarkDirty(4096, 65536)
	}
}

func BenchmarkMarkDirty64KiB(b *testing.B) {
	m := FromSlices(Region{Base: 0, Host: make([]byte, 1<<20)})
	m.TrackDirty()
	for i := 0; i < b.N; i++ {
		m.MarkDirty(4096, 65536)
	}
}
