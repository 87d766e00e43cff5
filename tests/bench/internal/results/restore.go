package results

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// RestoreReport is what `vmm restore` prints to stderr about its load.
type RestoreReport struct {
	// Load is the snapshot load itself ("snapshot ... loaded in D").
	Load time.Duration
	// RunUnixNano is when the guest ran again: the boot vCPU's first
	// KVM_RUN after the load ("the guest runs again ... unix-ns=N"); 0
	// if not printed (yet).
	RunUnixNano int64
}

var (
	loadedRE  = regexp.MustCompile(`vmm: snapshot .* loaded in (\S+)$`)
	runsAgain = regexp.MustCompile(`vmm: snapshot: the guest runs again \S+ after the load began, at unix-ns=(\d+)`)
)

// ParseRestore reads a restore's stderr; what it does not recognize is
// skipped, so the report is partial rather than an error.
func ParseRestore(stderr string) RestoreReport {
	var r RestoreReport
	for _, line := range strings.Split(stderr, "\n") {
		if m := loadedRE.FindStringSubmatch(line); m != nil {
			if d, err := time.ParseDuration(m[1]); err == nil {
				r.Load = d
			}
		}
		if m := runsAgain.FindStringSubmatch(line); m != nil {
			if ns, err := strconv.ParseInt(m[1], 10, 64); err == nil {
				r.RunUnixNano = ns
			}
		}
	}
	return r
}

// ParseSmapsRollup returns the Rss and Pss lines of /proc/PID/smaps_rollup,
// in KiB.
func ParseSmapsRollup(r io.Reader) (rssKiB, pssKiB uint64, err error) {
	var haveRSS, havePSS bool
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		v, perr := strconv.ParseUint(f[1], 10, 64)
		if perr != nil {
			return 0, 0, fmt.Errorf("smaps_rollup: %q: %w", sc.Text(), perr)
		}
		switch f[0] {
		case "Rss:":
			rssKiB, haveRSS = v, true
		case "Pss:":
			pssKiB, havePSS = v, true
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, fmt.Errorf("smaps_rollup: %w", err)
	}
	if !haveRSS || !havePSS {
		return 0, 0, fmt.Errorf("smaps_rollup: no Rss or Pss line")
	}
	return rssKiB, pssKiB, nil
}

// ShareTimes is the guest's report of the share benchmark: /proc/uptime
// before and after its read of the big file and its find over the tree,
// and how many names find printed.
type ShareTimes struct {
	Read, Find time.Duration
	Files      int
}

// SharePrefix starts the guest's report line:
// "@@SHARE t0=U t1=U t2=U files=N" (U: /proc/uptime's first field).
const SharePrefix = "@@SHARE "

// ParseShareTimes reads a report line; ok is false for a line that is
// not one or does not add up (a clock that went backwards).
func ParseShareTimes(line string) (ShareTimes, bool) {
	rest, found := strings.CutPrefix(line, SharePrefix)
	if !found {
		return ShareTimes{}, false
	}
	kv := map[string]string{}
	for _, f := range strings.Fields(rest) {
		if k, v, ok := strings.Cut(f, "="); ok {
			kv[k] = v
		}
	}
	var t [3]float64
	for i, k := range []string{"t0", "t1", "t2"} {
		v, err := strconv.ParseFloat(kv[k], 64)
		if err != nil || !(v >= 0 && v <= 1e9) || (i > 0 && v < t[i-1]) {
			return ShareTimes{}, false
		}
		t[i] = v
	}
	n, err := strconv.Atoi(kv["files"])
	if err != nil || n < 0 {
		return ShareTimes{}, false
	}
	sec := func(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
	return ShareTimes{Read: sec(t[1] - t[0]), Find: sec(t[2] - t[1]), Files: n}, true
}
