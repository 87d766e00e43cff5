package snapshot

import (
	"crypto/sha256"
	"testing"
)

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// FuzzDecode: a state file is untrusted input. Decode never panics, and
// what it accepts encodes back to the same bytes.
func FuzzDecode(f *testing.F) {
	good, err := Encode(sample())
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:40])
	f.Add([]byte(Magic))
	empty, _ := Encode(&File{})
	f.Add(empty)
	// A body whose checksum matches, so the fuzzer reaches the section
	// parser rather than stopping at the checksum.
	f.Add(reseal(good[:len(good)-sumLen-10]))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= fixedLen+sumLen && string(b[:8]) == Magic {
			// Reseal half the inputs so the parser behind the checksum
			// is exercised too.
			if b[len(b)-1]&1 == 0 {
				b = reseal(b[:len(b)-sumLen])
			}
		}
		file, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(file)
		if err != nil {
			t.Fatalf("decoded file does not encode: %v", err)
		}
		if string(again) != string(b) {
			t.Fatalf("decode/encode changed the bytes")
		}
	})
}
