package results

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Memory is a VMM process's resident memory, split into guest RAM and the
// rest, in KiB.
type Memory struct {
	TotalRSS    uint64
	GuestRSS    uint64
	GuestMaps   int // mappings counted as guest RAM
	OverheadRSS uint64
}

// ParseSmaps reads /proc/PID/smaps and counts as guest RAM every anonymous
// mapping whose size is within guestRAM and guestRAM+slack (bytes): VMMs
// map the guest's RAM in one piece of (almost) exactly its size, and
// nothing else of theirs that is anonymous is that large. A disk image
// mapped from its file may have the same size: file mappings (inode != 0)
// never count.
func ParseSmaps(r io.Reader, guestRAM, slack uint64) (Memory, error) {
	var mem Memory
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var size uint64
	inGuest := false
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if isMappingHeader(fields[0]) {
			start, end, err := parseRange(fields[0])
			if err != nil {
				return mem, err
			}
			size = end - start
			anonymous := len(fields) >= 5 && fields[4] == "0"
			inGuest = anonymous && size >= guestRAM && size <= guestRAM+slack
			if inGuest {
				mem.GuestMaps++
			}
			continue
		}
		if fields[0] != "Rss:" || len(fields) < 2 {
			continue
		}
		kib, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			return mem, fmt.Errorf("smaps: %q: %w", line, err)
		}
		mem.TotalRSS += kib
		if inGuest {
			mem.GuestRSS += kib
		}
	}
	if err := sc.Err(); err != nil {
		return mem, fmt.Errorf("smaps: %w", err)
	}
	mem.OverheadRSS = mem.TotalRSS - mem.GuestRSS
	return mem, nil
}

// isMappingHeader reports whether a first field looks like
// "7f1234560000-7f1234570000" (a mapping's line), not "Rss:".
func isMappingHeader(field string) bool {
	return strings.Contains(field, "-") && !strings.HasSuffix(field, ":")
}

func parseRange(field string) (uint64, uint64, error) {
	lo, hi, _ := strings.Cut(field, "-")
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || end < start {
		return 0, 0, fmt.Errorf("smaps: bad mapping range %q", field)
	}
	return start, end, nil
}
