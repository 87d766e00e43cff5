package pvpanic

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// pvpanic-mmio's probe reads the register and keeps only the events both
// sides know (capability = PANICKED|CRASH_LOADED & ioread8(base)).
func TestReadReturnsSupportedEvents(t *testing.T) {
	d := New(nil)
	b := []byte{0xff, 0xff}
	d.Read(0, b)
	assert.Equal(t, []byte{0x03, 0x00}, b)
	b = []byte{0xff}
	d.Read(1, b)
	assert.Equal(t, []byte{0x00}, b)
}

func TestWrites(t *testing.T) {
	tests := []struct {
		name   string
		offset uint64
		data   []byte
		want   []Event
	}{
		{"panic", 0, []byte{0x01}, []Event{Panicked}},
		{"crash kernel loaded", 0, []byte{0x02}, []Event{CrashLoaded}},
		{"both", 0, []byte{0x03}, []Event{Panicked | CrashLoaded}},
		{"unsupported bits dropped", 0, []byte{0xfd}, []Event{Panicked}},
		{"only unsupported bits", 0, []byte{0x04}, nil},
		{"zero", 0, []byte{0x00}, nil},
		{"past the register", 1, []byte{0x01}, nil},
		{"empty", 0, nil, nil},
		{"wide write: first byte", 0, []byte{0x01, 0x02}, []Event{Panicked}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []Event
			New(func(e Event) { got = append(got, e) }).Write(tt.offset, tt.data)
			assert.Equal(t, tt.want, got)
		})
	}
	New(nil).Write(0, []byte{1}) // no handler: no panic
}

func TestEventString(t *testing.T) {
	assert.Equal(t, "panicked", Panicked.String())
	assert.Equal(t, "crash kernel loaded", CrashLoaded.String())
	assert.Equal(t, "no event", Event(0).String())
}

// FuzzDevice: anything a guest does stays within the supported events.
func FuzzDevice(f *testing.F) {
	f.Add(uint64(0), []byte{1})
	f.Add(uint64(3), []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, offset uint64, data []byte) {
		d := New(func(e Event) {
			if e == 0 || e&^Supported != 0 {
				t.Fatalf("event %#x", uint8(e))
			}
		})
		d.Write(offset, data)
		b := make([]byte, len(data))
		d.Read(offset, b)
		for i, v := range b {
			if v != 0 && (i != 0 || offset != 0 || Event(v) != Supported) {
				t.Fatalf("read %x at %d", b, offset)
			}
		}
	})
}
