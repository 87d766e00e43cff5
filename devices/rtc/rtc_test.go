package rtc

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func read(r *RTC, idx byte) byte {
	r.Write(0, []byte{idx})
	b := []byte{0}
	r.Read(1, b)
	return b[0]
}

func TestClockRegisters(t *testing.T) {
	r := New()
	r.now = func() time.Time { return time.Date(2026, 11, 28, 21, 7, 59, 0, time.UTC) }
	for _, tc := range []struct {
		idx  byte
		want byte
	}{
		{regSeconds, 0x59}, {regMinutes, 0x07}, {regHours, 0x21},
		{regWeekday, 0x07}, // Saturday
		{regDay, 0x28}, {regMonth, 0x11}, {regYear, 0x26}, {regCentury, 0x20},
		{regA, regAValue}, {regB, regBValue}, {regC, 0}, {regD, 0x80},
	} {
		assert.Equal(t, tc.want, read(r, tc.idx), "register %#x", tc.idx)
	}
}

// Linux waits while register A's update-in-progress bit is set.
func TestNeverUpdating(t *testing.T) {
	assert.Zero(t, read(New(), regA)&0x80)
}

func TestNMIBitAndRAM(t *testing.T) {
	r := New()
	r.Write(0, []byte{0x80 | 0x20})
	r.Write(1, []byte{0xab})
	assert.Equal(t, byte(0xab), read(r, 0x20), "CMOS RAM keeps what the guest stored")
	r.Write(0, []byte{regSeconds})
	r.Write(1, []byte{0x99})
	assert.NotEqual(t, byte(0x99), read(r, regSeconds), "clock registers ignore writes")
}

func FuzzRTC(f *testing.F) {
	f.Add([]byte{0x0a, 0x00, 0x8b})
	f.Fuzz(func(t *testing.T, ops []byte) {
		r := New()
		for i, op := range ops {
			b := []byte{op}
			if i%3 == 2 {
				r.Read(uint64(op&3), b)
			} else {
				r.Write(uint64(i&1), b)
			}
		}
	})
}
