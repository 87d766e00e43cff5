package power

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices"
)

// Each case is a sequence of byte writes to the register, as a guest does
// them, and the number of resets they must start.
func TestResetControlWrites(t *testing.T) {
	tests := []struct {
		name   string
		writes []byte
		resets int
	}{
		// arch/x86/kernel/reboot.c, BOOT_CF9_FORCE, cold reboot.
		{"Linux cold reboot", []byte{0x02, 0x0e}, 1},
		// The same with reboot=w (warm): code 0x06.
		{"Linux warm reboot", []byte{0x02, 0x06}, 1},
		// The reset vector (package firmware) writes once.
		{"single write", []byte{0x0e}, 1},
		{"soft reset (INIT) is a reset too", []byte{0x04}, 1},
		{"SYS_RST alone", []byte{0x02}, 0},
		{"FULL_RST alone", []byte{0x08}, 0},
		{"no transition while RST_CPU stays set", []byte{0x06, 0x06}, 1},
		{"a new transition after clearing", []byte{0x06, 0x02, 0x06}, 2},
		{"reserved bits", []byte{0xf1}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			r := NewResetControl(rec.handle)
			for _, v := range tt.writes {
				r.Write(0, []byte{v})
			}
			got := rec.got()
			require.Len(t, got, tt.resets)
			for _, a := range got {
				assert.Equal(t, devices.Reset, a)
			}
		})
	}
}

// Linux reads the register before it writes (inb(0xcf9) & ~code): SYS_RST
// and FULL_RST read back, RST_CPU never does, so its own write is always
// a transition.
func TestResetControlReads(t *testing.T) {
	r := NewResetControl(nil)
	read := func() byte {
		b := []byte{0xaa, 0xbb}
		r.Read(0, b)
		assert.Equal(t, byte(0), b[1], "the byte after the register")
		return b[0]
	}
	assert.Equal(t, byte(0), read())
	r.Write(0, []byte{0xfe})
	assert.Equal(t, byte(ResetSystem|ResetFull), read())
	r.Write(0, []byte{0x00})
	assert.Equal(t, byte(0), read())

	b := []byte{0xaa}
	r.Read(1, b)
	assert.Equal(t, byte(0), b[0], "offset past the register")
}

func TestResetControlIgnoresOtherOffsets(t *testing.T) {
	rec := &recorder{}
	r := NewResetControl(rec.handle)
	r.Write(1, []byte{0x0e})
	r.Write(0, nil)
	assert.Empty(t, rec.got())
	// A word write at 0xcf9: its first byte is the register.
	r.Write(0, []byte{0x0e, 0x0e})
	assert.Len(t, rec.got(), 1)
}

// FuzzResetControl: any access sequence, never a panic, and a reset only
// on a 0-to-1 transition of RST_CPU in a byte at offset 0.
func FuzzResetControl(f *testing.F) {
	f.Add([]byte{0, 0x02, 0, 0x0e})
	f.Add([]byte{1, 0x0e, 0, 0x06, 0, 0x06})
	f.Fuzz(func(t *testing.T, script []byte) {
		resets := 0
		r := NewResetControl(func(a devices.PowerAction) {
			if a != devices.Reset {
				t.Fatalf("action %v", a)
			}
			resets++
		})
		want, cpu := 0, false
		for i := 0; i+1 < len(script); i += 2 {
			off, v := uint64(script[i]%4), script[i+1]
			r.Write(off, []byte{v})
			b := make([]byte, 1)
			r.Read(off, b)
			if off != 0 {
				continue
			}
			if v&ResetCPU != 0 && !cpu {
				want++
			}
			cpu = v&ResetCPU != 0
			if b[0]&ResetCPU != 0 {
				t.Fatalf("RST_CPU read back as set")
			}
		}
		if resets != want {
			t.Fatalf("script %x: %d resets, want %d", script, resets, want)
		}
	})
}
