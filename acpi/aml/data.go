package aml

import "fmt"

// Integer is an AML integer constant. It takes the shortest encoding:
// ZeroOp, OneOp, or a Byte/Word/DWord/QWord prefix (ACPI 6.4 §20.2.3).
// OnesOp is never used because its value depends on the table revision.
type Integer uint64

func (v Integer) AppendAML(b []byte) ([]byte, error) {
	switch {
	case v == 0:
		return append(b, zeroOp), nil
	case v == 1:
		return append(b, oneOp), nil
	case v <= 0xff:
		return append(b, bytePrefix, byte(v)), nil
	case v <= 0xffff:
		return append(b, wordPrefix, byte(v), byte(v>>8)), nil
	case v <= 0xffff_ffff:
		return append(b, dwordPrefix, byte(v), byte(v>>8), byte(v>>16), byte(v>>24)), nil
	}
	b = append(b, qwordPrefix)
	for i := 0; i < 8; i++ {
		b = append(b, byte(v>>(8*i)))
	}
	return b, nil
}

// String is an AML string constant: ASCII characters 0x01-0x7f, which the
// encoding terminates with NUL (ACPI 6.4 §20.2.3).
type String string

func (s String) AppendAML(b []byte) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 || s[i] > 0x7f {
			return nil, fmt.Errorf("%w: string %q has byte %#x at %d", ErrValue, string(s), s[i], i)
		}
	}
	b = append(b, stringPrefix)
	b = append(b, s...)
	return append(b, 0), nil
}

// EISAID is a compressed EISA identifier such as "PNP0501": three
// upper-case letters and four hexadecimal digits, stored as an integer
// whose bytes, in memory order, are the 5-bit letters packed big-endian
// followed by the product number (ASL's EISAID macro, ACPI 6.4 §19.6.35).
type EISAID string

// Value returns the packed identifier.
func (id EISAID) Value() (uint32, error) {
	s := string(id)
	if len(s) != 7 {
		return 0, fmt.Errorf("%w: EISA id %q must be 3 letters and 4 hex digits", ErrValue, s)
	}
	var vendor uint32
	for i := 0; i < 3; i++ {
		c := s[i]
		if c < 'A' || c > 'Z' {
			return 0, fmt.Errorf("%w: EISA id %q: %q is not an upper-case letter", ErrValue, s, c)
		}
		vendor = vendor<<5 | uint32(c-'@')
	}
	var product uint32
	for i := 3; i < 7; i++ {
		d, ok := hexDigit(s[i])
		if !ok {
			return 0, fmt.Errorf("%w: EISA id %q: %q is not an upper-case hex digit", ErrValue, s, s[i])
		}
		product = product<<4 | d
	}
	// Bytes in memory: vendor high, vendor low, product high, product low.
	return vendor>>8 | (vendor&0xff)<<8 | (product>>8)<<16 | (product&0xff)<<24, nil
}

func (id EISAID) AppendAML(b []byte) ([]byte, error) {
	v, err := id.Value()
	if err != nil {
		return nil, err
	}
	return Integer(v).AppendAML(b)
}

func hexDigit(c byte) (uint32, bool) {
	switch {
	case c >= '0' && c <= '9':
		return uint32(c - '0'), true
	case c >= 'A' && c <= 'F':
		return uint32(c-'A') + 10, true
	}
	return 0, false
}

// Package is a fixed-size package of up to 255 elements
// (DefPackage, ACPI 6.4 §20.2.5.4).
type Package []Term

func (p Package) AppendAML(b []byte) ([]byte, error) {
	if len(p) > 0xff {
		return nil, fmt.Errorf("%w: package of %d elements (max 255)", ErrTooLong, len(p))
	}
	body, err := appendTerms([]byte{byte(len(p))}, p)
	if err != nil {
		return nil, err
	}
	return appendPackage(append(b, packageOp), body)
}

// Buffer is a byte buffer constant (DefBuffer, ACPI 6.4 §20.2.5.4).
type Buffer []byte

func (buf Buffer) AppendAML(b []byte) ([]byte, error) {
	body, err := Integer(len(buf)).AppendAML(nil)
	if err != nil {
		return nil, err
	}
	return appendPackage(append(b, bufferOp), append(body, buf...))
}
