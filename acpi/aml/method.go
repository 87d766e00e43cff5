package aml

import "fmt"

// Opcodes of control methods, ACPI 6.4 §20.2.5.2 and §20.2.6.
const (
	methodOp = 0x14
	notifyOp = 0x86
)

// MaxArgs is the most arguments a control method takes (Arg0-Arg6).
const MaxArgs = 7

// Method declares a control method (DefMethod, ACPI 6.4 §20.2.5.2):
// MethodOp PkgLength NameString MethodFlags TermList. MethodFlags holds
// the argument count in bits 0-2, the serialize flag in bit 3 and a zero
// SyncLevel.
type Method struct {
	Name       string
	Args       int
	Serialized bool
	Terms      []Term
}

func (m Method) AppendAML(b []byte) ([]byte, error) {
	if m.Args < 0 || m.Args > MaxArgs {
		return nil, fmt.Errorf("%w: method %s takes %d arguments (0 to %d)", ErrValue, m.Name, m.Args, MaxArgs)
	}
	path, err := NameString(m.Name)
	if err != nil {
		return nil, fmt.Errorf("method %s: %w", m.Name, err)
	}
	flags := byte(m.Args)
	if m.Serialized {
		flags |= 1 << 3
	}
	body, err := appendTerms(append(path, flags), m.Terms)
	if err != nil {
		return nil, fmt.Errorf("method %s: %w", m.Name, err)
	}
	return appendPackage(append(b, methodOp), body)
}

// Notify queues a notification of Value for the object Object names
// (DefNotify, ACPI 6.4 §20.2.5.3: NotifyOp NotifyObject NotifyValue);
// 0x80 and up are device-specific, what a driver's notify handler gets.
type Notify struct {
	Object string
	Value  Term
}

func (n Notify) AppendAML(b []byte) ([]byte, error) {
	path, err := NameString(n.Object)
	if err != nil {
		return nil, fmt.Errorf("notify %s: %w", n.Object, err)
	}
	if n.Value == nil {
		return nil, fmt.Errorf("%w: notify %s has no value", ErrValue, n.Object)
	}
	b = append(append(b, notifyOp), path...)
	if b, err = n.Value.AppendAML(b); err != nil {
		return nil, fmt.Errorf("notify %s: %w", n.Object, err)
	}
	return b, nil
}
