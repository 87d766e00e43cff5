package console

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Control events of struct virtio_console_control (virtio 1.2 §5.3.6.2).
const (
	EventDeviceReady  uint16 = 0 // driver → device: ready (value 1) or failed (0)
	EventDeviceAdd    uint16 = 1 // device → driver: a port exists
	EventDeviceRemove uint16 = 2 // device → driver: a port is gone
	EventPortReady    uint16 = 3 // driver → device: port set up (1) or failed (0)
	EventConsolePort  uint16 = 4 // device → driver: the port is a console
	EventResize       uint16 = 5 // device → driver: console size
	EventPortOpen     uint16 = 6 // both ways: the sender opened (1) or closed (0) the port
	EventPortName     uint16 = 7 // device → driver: the port's name follows the header
)

// ControlSize is the size of struct virtio_console_control: le32 id,
// le16 event, le16 value.
const ControlSize = 8

// MaxNameLen bounds a port name: Linux reads a name into one receive
// buffer of the control queue (a page), NUL-terminated.
const MaxNameLen = 255

// ErrControl: a control message that is not one (too short).
var ErrControl = errors.New("malformed virtio-console control message")

// Control is one control message.
type Control struct {
	ID    uint32 // port number
	Event uint16
	Value uint16
	// Name follows the header of an EventPortName message.
	Name string
}

// DecodeControl reads a driver's control message. The guest controls
// every byte: anything shorter than the header is an error, bytes past
// it are ignored (no driver-to-device event carries more), and the
// values are not checked here: the device ignores what it does not know
// (§5.3.6.2.1 defines no error reply).
func DecodeControl(b []byte) (Control, error) {
	if len(b) < ControlSize {
		return Control{}, fmt.Errorf("%w: %d bytes, want %d", ErrControl, len(b), ControlSize)
	}
	return Control{
		ID:    binary.LittleEndian.Uint32(b[0:]),
		Event: binary.LittleEndian.Uint16(b[4:]),
		Value: binary.LittleEndian.Uint16(b[6:]),
	}, nil
}

// Encode returns the message as the device sends it: the header, then
// the name for EventPortName.
func (c Control) Encode() []byte {
	b := make([]byte, ControlSize, ControlSize+len(c.Name))
	binary.LittleEndian.PutUint32(b[0:], c.ID)
	binary.LittleEndian.PutUint16(b[4:], c.Event)
	binary.LittleEndian.PutUint16(b[6:], c.Value)
	if c.Event == EventPortName {
		b = append(b, c.Name...)
	}
	return b
}
