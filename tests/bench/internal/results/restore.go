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
