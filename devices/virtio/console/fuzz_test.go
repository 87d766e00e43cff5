package console

import (
	"bytes"
	"testing"
)

// FuzzDecodeControl: any bytes decode or fail cleanly, and a decoded
// header encodes back to the bytes it came from.
func FuzzDecodeControl(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Add(Control{ID: 1, Event: EventPortOpen, Value: 1}.Encode())
	f.Add(Control{ID: 0xffffffff, Event: 0xffff, Value: 0xffff}.Encode())
	f.Add(append(Control{ID: 2, Event: EventPortName, Value: 1}.Encode(), "vmm.stdout"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeControl(b)
		if err != nil {
			if len(b) >= ControlSize {
				t.Fatalf("a %d-byte message was refused: %v", len(b), err)
			}
			return
		}
		m.Name = ""
		if m.Event == EventPortName {
			m.Event = EventPortOpen // Encode appends names only to PORT_NAME
		}
		if e := m.Encode(); m.Event == EventPortOpen || bytes.Equal(e, b[:ControlSize]) {
			return
		}
		t.Fatalf("round trip of %x gave %x", b[:ControlSize], m.Encode())
	})
}
