package boot

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sum8(b []byte) uint8 {
	var s uint8
	for _, v := range b {
		s += v
	}
	return s
}

func TestWriteMPTable(t *testing.T) {
	for _, cpus := range []int{1, 2, 8, MaxMPTableCPUs} {
		t.Run("", func(t *testing.T) {
			mem := newTestMemory(t, testRAM)
			require.NoError(t, WriteMPTable(mem, cpus))
			le := binary.LittleEndian

			// MP spec 1.4 §4.1: floating pointer structure.
			fp := readGuest(t, mem, EBDAAddr, 16)
			assert.Equal(t, "_MP_", string(fp[:4]))
			assert.Equal(t, byte(1), fp[8], "length in paragraphs")
			assert.Equal(t, byte(4), fp[9], "spec revision 1.4")
			assert.Zero(t, sum8(fp), "floating pointer checksum")
			assert.Zero(t, fp[11], "feature byte 1: configuration table present")
			cfgAddr := le.Uint32(fp[4:])

			// §4.2: configuration table header.
			hdr := readGuest(t, mem, EBDAAddr+16, 44)
			require.Equal(t, uint32(EBDAAddr+16), cfgAddr)
			assert.Equal(t, "PCMP", string(hdr[:4]))
			length := le.Uint16(hdr[4:])
			assert.Equal(t, byte(4), hdr[6])
			assert.Equal(t, uint32(0xfee00000), le.Uint32(hdr[36:]), "local APIC address")
			assert.Zero(t, le.Uint16(hdr[40:]), "no extended table")
			table := readGuest(t, mem, EBDAAddr+16, uint64(length))
			assert.Zero(t, sum8(table), "base table checksum")
			assert.LessOrEqual(t, 16+int(length), EBDASize, "inside the EBDA")

			// §4.3: entries, in type order.
			count := int(le.Uint16(hdr[34:]))
			entries := table[44:]
			var procs, buses, ioapics, ioints, lints int
			for range count {
				require.NotEmpty(t, entries)
				switch entries[0] {
				case 0:
					assert.Equal(t, byte(procs), entries[1], "APIC ID")
					assert.Equal(t, procs == 0, entries[3]&2 != 0, "BSP flag only on CPU 0")
					assert.NotZero(t, entries[3]&1, "enabled")
					procs++
					entries = entries[20:]
					continue
				case 1:
					assert.Equal(t, "ISA   ", string(entries[2:8]))
					buses++
				case 2:
					assert.Equal(t, byte(cpus), entries[1], "I/O APIC ID")
					assert.Equal(t, byte(1), entries[3], "enabled")
					assert.Equal(t, uint32(0xfec00000), le.Uint32(entries[4:]))
					ioapics++
				case 3:
					assert.Equal(t, byte(0), entries[1], "INT")
					assert.Equal(t, uint16(0x5), le.Uint16(entries[2:]), "active high, edge")
					assert.Equal(t, byte(ioints), entries[5], "ISA IRQ")
					assert.Equal(t, byte(cpus), entries[6], "to the I/O APIC")
					assert.Equal(t, byte(ioints), entries[7], "identity pin")
					ioints++
				case 4:
					assert.Equal(t, []byte{3, 1}[lints], entries[1], "LINT0 ExtINT, LINT1 NMI")
					assert.Equal(t, byte(0xff), entries[6], "all local APICs")
					assert.Equal(t, byte(lints), entries[7], "LINTIN#")
					lints++
				default:
					t.Fatalf("unknown entry type %d", entries[0])
				}
				entries = entries[8:]
			}
			assert.Empty(t, entries)
			assert.Equal(t, []int{cpus, 1, 1, 16, 2}, []int{procs, buses, ioapics, ioints, lints})

			seg, err := mem.Uint16(0x40e)
			require.NoError(t, err)
			assert.Equal(t, uint16(0x9fc0), seg, "BDA points at the EBDA")
		})
	}
}

func TestWriteMPTableRejects(t *testing.T) {
	mem := newTestMemory(t, testRAM)
	for _, cpus := range []int{0, -1, MaxMPTableCPUs + 1, 255} {
		require.ErrorIs(t, WriteMPTable(mem, cpus), ErrTooManyCPUs)
	}
	assert.Equal(t, 40, MaxMPTableCPUs)
}
