package pci

import (
	"encoding/binary"
	"testing"
)

// FuzzBAR plays a hostile driver against BAR 0 and the configuration
// space: any offsets, widths and values, in any order. Nothing may panic
// or hang, and the identity must survive.
func FuzzBAR(f *testing.F) {
	f.Add([]byte{0, 0x14, 0x00, 1, 0x03, 1, 0x1c, 0x00, 2, 1, 0})
	f.Add([]byte{0, 0x16, 0x00, 2, 0x05, 0x00, 0, 0x1a, 0, 2, 0x00, 0x01})
	f.Add([]byte{2, 0x04, 0x00, 2, 0x06, 0x00, 0, 0x00, 0x40, 4, 0, 0, 0xe0, 0xfe})
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := newRig(t)
		for len(ops) >= 4 {
			kind, off, n := ops[0]%4, uint64(binary.LittleEndian.Uint16(ops[1:3])), int(ops[3]%9)
			ops = ops[4:]
			data := make([]byte, n)
			copy(data, ops)
			if len(ops) >= n {
				ops = ops[n:]
			}
			switch kind {
			case 0:
				r.win.Write(off%BARSize, data)
			case 1:
				r.win.Read(off%BARSize, data)
			case 2:
				r.bus.ConfigWrite(0, 1, 0, uint16(off), data)
			case 3:
				_ = r.tr.UsedBuffer(int(off % 4))
			}
		}
		if got := r.cfg32(0); got != 0x1041_1af4 {
			t.Fatalf("vendor/device changed to %#x", got)
		}
	})
}
