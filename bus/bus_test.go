package bus

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type recorder struct {
	reads, writes []uint64
}

func (r *recorder) Read(off uint64, d []byte)  { r.reads = append(r.reads, off); d[0] = byte(off) }
func (r *recorder) Write(off uint64, d []byte) { r.writes = append(r.writes, off) }

func TestRegisterRejectsOverlapsAndEmptyRanges(t *testing.T) {
	var b Bus
	require.NoError(t, b.Register("a", 0x100, 0x10, &recorder{}))
	require.NoError(t, b.Register("b", 0x110, 0x10, &recorder{}), "adjacent ranges are fine")
	require.NoError(t, b.Register("c", 0x0, 0x100, &recorder{}))
	for _, tc := range []struct {
		base, size uint64
	}{
		{0x100, 1}, {0x10f, 2}, {0xff, 2}, {0x50, 0x1000}, {0x11f, 1},
	} {
		assert.ErrorIs(t, b.Register("x", tc.base, tc.size, &recorder{}), ErrOverlap, "%#x+%#x", tc.base, tc.size)
	}
	assert.ErrorIs(t, b.Register("x", 0x200, 0, &recorder{}), ErrEmptyRange)
	assert.ErrorIs(t, b.Register("x", ^uint64(0), 2, &recorder{}), ErrEmptyRange)
}

func TestRoutingGivesOffsets(t *testing.T) {
	var b Bus
	lo, hi := &recorder{}, &recorder{}
	require.NoError(t, b.Register("hi", 0x3f8, 8, hi))
	require.NoError(t, b.Register("lo", 0x60, 5, lo))
	d := []byte{0}
	assert.True(t, b.Read(0x3fd, d))
	assert.Equal(t, byte(5), d[0])
	assert.True(t, b.Write(0x64, d))
	assert.False(t, b.Read(0x3f7, d))
	assert.False(t, b.Write(0x400, d))
	assert.False(t, b.Read(0x65, d))
	assert.Equal(t, []uint64{5}, hi.reads)
	assert.Equal(t, []uint64{4}, lo.writes)
}

func FuzzBus(f *testing.F) {
	f.Add(uint64(0x100), uint64(0x10), uint64(0x105))
	f.Fuzz(func(t *testing.T, base, size, addr uint64) {
		var b Bus
		r := &recorder{}
		if b.Register("x", base, size, r) != nil {
			return
		}
		hit := b.Read(addr, []byte{0})
		assert.Equal(t, addr >= base && addr-base < size, hit)
	})
}
