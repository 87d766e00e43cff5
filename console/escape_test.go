package console

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

func data(s string) event { return event{kind: eventData, data: []byte(s)} }

var (
	quit = event{kind: eventQuit}
	help = event{kind: eventHelp}
)

func TestEscapeParser(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		want   []event
		flush  string
	}{
		{"plain text passes through", []string{"ls -l\r"}, []event{data("ls -l\r")}, ""},
		{"C-a x quits", []string{"\x01x"}, []event{quit}, ""},
		{"data before and after quit keeps its order", []string{"ab\x01xcd"}, []event{data("ab"), quit, data("cd")}, ""},
		{"C-a C-a sends one C-a", []string{"a\x01\x01b"}, []event{data("a\x01b")}, ""},
		{"C-a h prints help", []string{"\x01h"}, []event{help}, ""},
		{"C-a ? prints help", []string{"\x01?"}, []event{help}, ""},
		{"unknown command sends both keys", []string{"\x01e"}, []event{data("\x01e")}, ""},
		{"uppercase X is not quit", []string{"\x01X"}, []event{data("\x01X")}, ""},
		{"escape split across reads", []string{"a\x01", "xb"}, []event{data("a"), quit, data("b")}, ""},
		{"C-a C-a split across reads", []string{"\x01", "\x01"}, []event{data("\x01")}, ""},
		{"C-a C-a x sends C-a then x", []string{"\x01\x01x"}, []event{data("\x01x")}, ""},
		{"pending C-a at end of input is data", []string{"z\x01"}, []event{data("z")}, "\x01"},
		{"two commands in a row", []string{"\x01h\x01x"}, []event{help, quit}, ""},
		{"Ctrl-C and NUL are data", []string{"\x03\x00"}, []event{data("\x03\x00")}, ""},
		{"empty read", []string{""}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p escapeParser
			var got []event
			for _, c := range tt.chunks {
				got = append(got, p.feed([]byte(c))...)
			}
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.flush, string(p.flush()))
			assert.Empty(t, p.flush(), "flush empties the parser")
		})
	}
}

// FuzzEscapeParser checks that how input is split into reads never
// changes what the parser finds, and that input without C-a passes
// through untouched.
func FuzzEscapeParser(f *testing.F) {
	f.Add([]byte("hello\x01xworld"), uint8(3))
	f.Add([]byte("\x01\x01\x01h\x01"), uint8(1))
	f.Add([]byte("plain"), uint8(0))
	f.Fuzz(func(t *testing.T, in []byte, split uint8) {
		var whole escapeParser
		want := flatten(whole.feed(in), whole.flush())

		var pieces escapeParser
		var got []event
		step := int(split%16) + 1
		for i := 0; i < len(in); i += step {
			got = append(got, pieces.feed(in[i:min(i+step, len(in))])...)
		}
		if !equalEvents(want, flatten(got, pieces.flush())) {
			t.Fatalf("split every %d bytes changed the result", step)
		}

		var n int
		for _, e := range want {
			n += len(e.data)
		}
		if n > len(in) {
			t.Fatalf("%d bytes of data out of %d bytes of input", n, len(in))
		}
		if !bytes.Contains(in, []byte{escapeKey}) {
			if len(want) > 1 || (len(want) == 1 && !bytes.Equal(want[0].data, in)) {
				t.Fatalf("input without C-a was altered: %+v", want)
			}
		}
	})
}

// flatten merges adjacent data events (and trailing flushed data) so
// results from different read splits compare equal.
func flatten(events []event, tail []byte) []event {
	if len(tail) > 0 {
		events = append(events, event{kind: eventData, data: tail})
	}
	var out []event
	for _, e := range events {
		if e.kind == eventData && len(out) > 0 && out[len(out)-1].kind == eventData {
			last := &out[len(out)-1]
			last.data = append(append([]byte(nil), last.data...), e.data...)
			continue
		}
		out = append(out, e)
	}
	return out
}

func equalEvents(a, b []event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].kind != b[i].kind || !bytes.Equal(a[i].data, b[i].data) {
			return false
		}
	}
	return true
}
