package ringmem

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/memory"
)

// alignedBytes returns n bytes starting on a 4-byte host boundary; small
// arrays on the stack need not be.
func alignedBytes(n int) []byte {
	b := make([]byte, n+4)
	skip := (4 - hostMisalignment(b)) % 4
	return b[skip : skip+uint64(n)]
}

func TestSpanLoadStore(t *testing.T) {
	host := alignedBytes(64)
	mem := memory.FromSlices(memory.Region{Base: 0x1000, Host: host})
	for _, start := range []memory.GuestAddr{0x1000, 0x1002, 0x1006} {
		clear(host)
		s, err := NewSpan(mem, start, 10)
		require.NoError(t, err)
		for off := uint64(0); off < 10; off += 2 {
			require.True(t, s.Store16(off, uint16(0xa000+off)))
		}
		for off := uint64(0); off < 10; off += 2 {
			assert.Equal(t, uint16(0xa000+off), s.Load16(off))
			at := uint64(start-0x1000) + off
			assert.Equal(t, uint16(0xa000+off), binary.LittleEndian.Uint16(host[at:]), "little-endian in memory")
		}
		// Bytes around the span are untouched.
		for i := range host {
			if i < int(start-0x1000) || i >= int(start-0x1000)+10 {
				assert.Zero(t, host[i], "byte %d for span at %v", i, start)
			}
		}
	}
}

func TestNewSpanRejects(t *testing.T) {
	backing := alignedBytes(72)
	mem := memory.FromSlices(
		memory.Region{Base: 0x1000, Host: backing[:32]},
		memory.Region{Base: 0x1020, Host: backing[40:72]}, // contiguous guest, not host
		memory.Region{Base: 0x2000, Host: alignedBytes(36)[2:34]},
	)
	tests := []struct {
		name string
		addr memory.GuestAddr
		n    uint64
	}{
		{"odd address", 0x1001, 4},
		{"empty", 0x1000, 0},
		{"outside RAM", 0x2000, 4},
		{"across regions", 0x101c, 8},
		{"aligned word past the region end", 0x201e, 2},
		{"aligned word before the region start", 0x2000, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSpan(mem, tt.addr, tt.n)
			require.ErrorIs(t, err, ErrLayout)
		})
	}
	// The same half word is fine when the aligned word lies in the region.
	_, err := NewSpan(mem, 0x101c, 2)
	require.NoError(t, err)
}

func TestNewSpanOddHost(t *testing.T) {
	backing := alignedBytes(33)
	mem := memory.FromSlices(memory.Region{Base: 0, Host: backing[1:]})
	_, err := NewSpan(mem, 4, 4)
	require.ErrorIs(t, err, ErrLayout)
}
