package balloon

import (
	"testing"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/memory"
)

// FuzzPagesAndStats feeds arbitrary PFN lists (split into buffers at the
// cut points the first bytes give) to inflate and deflate, and arbitrary
// bytes to the statistics parser. Nothing may panic and nothing outside
// the guest's memory may change.
func FuzzPagesAndStats(f *testing.F) {
	f.Add([]byte{3}, []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0})
	f.Add([]byte{}, []byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 1, 1}, []byte{4, 0, 0x40, 0, 0, 0, 0, 0, 0, 0, 5})
	f.Fuzz(func(t *testing.T, cuts, data []byte) {
		// Guest RAM is 16 pages from guest address 4 pages up, the middle
		// of a larger host buffer whose edges must stay as they were.
		big := make([]byte, 18*PageSize)
		for i := range big {
			big[i] = 0x5a
		}
		mem := memory.FromSlices(memory.Region{Base: 4 * PageSize, Host: big[PageSize : 17*PageSize]})
		var bufs [][]byte
		rest := data
		for _, c := range cuts {
			n := min(int(c), len(rest))
			bufs = append(bufs, rest[:n])
			rest = rest[n:]
		}
		bufs = append(bufs, rest)
		b := New(Config{StatsInterval: 1})
		c := &virtio.Chain{Readable: bufs}
		b.pages(mem, c, true)
		b.pages(mem, c, false)
		b.record(bufs)
		for _, edge := range [][]byte{big[:PageSize], big[17*PageSize:]} {
			for i, v := range edge {
				if v != 0x5a {
					t.Fatalf("byte %d next to guest RAM changed", i)
				}
			}
		}
		if got := b.Counters(); got.InflatedPages+got.BadPFNs != got.DeflatedPages {
			t.Fatalf("counted %+v for the same list", got)
		}
	})
}
