package aml

import (
	"fmt"
	"strings"
)

// NameString prefixes, ACPI 6.4 §20.2.2.
const (
	rootChar        = '\\'
	parentPrefix    = '^'
	dualNamePrefix  = 0x2e
	multiNamePrefix = 0x2f
	nullName        = 0x00
	maxSegments     = 255 // SegCount is one byte
)

// NameString encodes an ASL name path: an optional root `\` or one or more
// `^` (parent) prefixes, then dot-separated segments of 1 to 4 characters.
// Short segments are padded with '_' as ASL does ("_S5" becomes "_S5_").
// Segments start with A-Z or '_' and continue with A-Z, 0-9 or '_'
// (ACPI 6.4 §20.2.2); lower case is rejected rather than folded so that
// a name is never silently changed. A bare prefix ("\") names the scope
// itself and is followed by NullName.
func NameString(path string) ([]byte, error) {
	var out []byte
	rest := path
	if strings.HasPrefix(rest, `\`) {
		out = append(out, rootChar)
		rest = rest[1:]
	} else {
		for strings.HasPrefix(rest, "^") {
			out = append(out, parentPrefix)
			rest = rest[1:]
		}
	}
	if rest == "" {
		if len(out) == 0 {
			return nil, fmt.Errorf("%w: empty name", ErrName)
		}
		return append(out, nullName), nil
	}
	segs := strings.Split(rest, ".")
	switch n := len(segs); {
	case n == 2:
		out = append(out, dualNamePrefix)
	case n > maxSegments:
		return nil, fmt.Errorf("%w: %q has %d segments (max %d)", ErrName, path, n, maxSegments)
	case n > 2:
		out = append(out, multiNamePrefix, byte(n))
	}
	for _, s := range segs {
		seg, err := nameSeg(s)
		if err != nil {
			return nil, fmt.Errorf("%w in %q", err, path)
		}
		out = append(out, seg[:]...)
	}
	return out, nil
}

// nameSeg pads s to the four characters of a NameSeg and checks them.
func nameSeg(s string) ([4]byte, error) {
	var seg [4]byte
	if len(s) == 0 || len(s) > 4 {
		return seg, fmt.Errorf("%w: segment %q must have 1 to 4 characters", ErrName, s)
	}
	for i := range seg {
		c := byte('_')
		if i < len(s) {
			c = s[i]
		}
		lead := c == '_' || (c >= 'A' && c <= 'Z')
		if !lead && (i == 0 || c < '0' || c > '9') {
			return seg, fmt.Errorf("%w: segment %q has %q at %d", ErrName, s, c, i)
		}
		seg[i] = c
	}
	return seg, nil
}
