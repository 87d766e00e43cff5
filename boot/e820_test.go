package boot

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/vmm-dev/vmm/memory"
)

func TestE820Map(t *testing.T) {
	tests := []struct {
		name string
		size uint64
		want []E820Entry
	}{
		{name: "64 MiB", size: 64 << 20, want: []E820Entry{
			{0, 0x9fc00, E820RAM},
			{0x9fc00, 0x400, E820Reserved},
			{0xe0000, 0x20000, E820Reserved},
			{0x100000, 64<<20 - 0x100000, E820RAM},
		}},
		{name: "RAM above 4 GiB", size: 4 << 30, want: []E820Entry{
			{0, 0x9fc00, E820RAM},
			{0x9fc00, 0x400, E820Reserved},
			{0xe0000, 0x20000, E820Reserved},
			{0x100000, 0xc000_0000 - 0x100000, E820RAM},
			{0x1_0000_0000, 1 << 30, E820RAM},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := newTestMemory(t, tt.size)
			got := E820Map(mem)
			assert.Equal(t, tt.want, got)
			for i := 1; i < len(got); i++ {
				assert.LessOrEqual(t, got[i-1].End(), got[i].Addr, "entries sorted and disjoint")
			}
		})
	}
}

func TestE820MapOddRegions(t *testing.T) {
	// A region straddling the EBDA and the BIOS area contributes RAM
	// only outside them.
	mem := memory.FromSlices(memory.Region{Base: 0x90000, Host: make([]byte, 0x80000)})
	assert.Equal(t, []E820Entry{
		{0x90000, 0xfc00, E820RAM},
		{0x9fc00, 0x400, E820Reserved},
		{0xe0000, 0x20000, E820Reserved},
		{0x100000, 0x10000, E820RAM},
	}, E820Map(mem))
	assert.Equal(t, "RAM", E820RAM.String())
	assert.Equal(t, "reserved", E820Reserved.String())
	assert.Equal(t, "E820Type(9)", E820Type(9).String())
}
