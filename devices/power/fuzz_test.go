package power

import (
	"testing"

	"github.com/vmm-dev/vmm/devices"
)

// FuzzAccess plays a guest that reads and writes anything anywhere in the
// device's range: it must never panic, and may only ask for power-off
// through an S5 write or reset through the reset value.
func FuzzAccess(f *testing.F) {
	f.Add(uint64(0), []byte{SleepTypeS5<<2 | 0x20})
	f.Add(uint64(4), []byte{0x01})
	f.Add(uint64(1), []byte{0x80, 0, 0, 1})
	f.Add(^uint64(0), []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, offset uint64, data []byte) {
		var got []devices.PowerAction
		d := New(DefaultRegisters, func(a devices.PowerAction) { got = append(got, a) })
		d.Write(offset, data)
		var want []devices.PowerAction
		for i, v := range data {
			off := offset + uint64(i)
			if off < offset {
				break
			}
			switch {
			case off == 0 && v&0x20 != 0 && (v>>2)&7 == SleepTypeS5:
				want = append(want, devices.PowerOff)
			case off == 4 && v == DefaultRegisters.ResetValue:
				want = append(want, devices.Reset)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("write %x at %d: actions %v, want %v", data, offset, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("write %x at %d: actions %v, want %v", data, offset, got, want)
			}
		}
		d.Read(offset, data)
	})
}
