package aml

import "fmt"

// MaxPkgLength is the largest value a PkgLength can hold: 4 bits in the
// lead byte and 8 in each of three following bytes (ACPI 6.4 §20.2.4).
const MaxPkgLength = 1<<28 - 1

// PkgLength encodes length, a PkgLength value, which by definition counts
// the PkgLength's own bytes too (ACPI 6.4 §20.2.4). Values up to 63 fit
// in one byte (bits 0-5); longer ones put the count of following bytes in
// bits 6-7 of the lead byte, the low nibble in bits 0-3, and the rest in
// the following bytes, least significant first.
func PkgLength(length int) ([]byte, error) {
	switch {
	case length < 0 || length > MaxPkgLength:
		return nil, fmt.Errorf("%w: PkgLength %d (max %d)", ErrTooLong, length, MaxPkgLength)
	case length <= 0x3f:
		return []byte{byte(length)}, nil
	}
	var extra int
	switch {
	case length <= 0xfff:
		extra = 1
	case length <= 0xfffff:
		extra = 2
	default:
		extra = 3
	}
	out := []byte{byte(extra<<6) | byte(length&0x0f)}
	for i := 0; i < extra; i++ {
		out = append(out, byte(length>>(4+8*i)))
	}
	return out, nil
}

// appendPackage appends a PkgLength that covers itself and body, then body.
func appendPackage(b, body []byte) ([]byte, error) {
	// The encoding's size depends on the total, which includes that size:
	// try the sizes in order and take the first that holds the total.
	for size := 1; size <= 4; size++ {
		total := len(body) + size
		enc, err := PkgLength(total)
		if err != nil {
			return nil, err
		}
		if len(enc) == size {
			return append(append(b, enc...), body...), nil
		}
	}
	return nil, fmt.Errorf("%w: %d bytes in one package", ErrTooLong, len(body))
}
