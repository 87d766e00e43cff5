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

func FuzzParseRestore(f *testing.F) {
	f.Add("vmm: snapshot s loaded in 1ms\nvmm: snapshot: the guest runs again 2ms after the load began, at unix-ns=3\n")
	f.Add("Rss: 1 kB\nPss: 99999999999999999999999 kB\n")
	f.Fuzz(func(t *testing.T, s string) {
		ParseRestore(s)
		if st, ok := ParseShareTimes(s); ok && (st.Read < 0 || st.Find < 0 || st.Files < 0) {
			t.Fatalf("negative share times %+v", st)
		}
		if rss, pss, err := ParseSmapsRollup(strings.NewReader(s)); err != nil && (rss != 0 || pss != 0) {
			t.Fatalf("error %v with values %d, %d", err, rss, pss)
		}
	})
}
