package results

import (
	"strings"
	"testing"
)

// The parsers read text from VMMs, strace, the kernel and (through the
// console) guests: none may panic on any input.

func FuzzParseVMMStats(f *testing.F) {
	f.Add(vmmStderr)
	f.Add("boot-progress port 0x80 <- 0x4 at 1s unix-ns=99999999999999999999999")
	f.Fuzz(func(t *testing.T, s string) {
		st := ParseVMMStats(s)
		st.LastWrite(0x42)
	})
}

func FuzzParseSmaps(f *testing.F) {
	f.Add(smaps)
	f.Add("1-0 rw-p\nRss: 1\n")
	f.Fuzz(func(t *testing.T, s string) {
		mem, err := ParseSmaps(strings.NewReader(s), 1<<20, 1<<10)
		if err == nil && mem.GuestRSS > mem.TotalRSS {
			t.Fatalf("guest RSS %d above total %d", mem.GuestRSS, mem.TotalRSS)
		}
	})
}

func FuzzStraceFeed(f *testing.F) {
	f.Add(straceOut)
	f.Fuzz(func(t *testing.T, s string) {
		var st StraceStartup
		for _, l := range strings.Split(s, "\n") {
			st.Feed(l)
		}
	})
}

func FuzzParseLine(f *testing.F) {
	f.Add(LinePrefix + `{"kernel":"debian","metrics":{"x":1}}`)
	f.Fuzz(func(t *testing.T, s string) {
		if sample, ok, err := ParseLine(s); ok && err == nil {
			if _, err := sample.Line(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
