package results

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

// VMMStats is what `vmm run --stats` prints to stderr at exit.
type VMMStats struct {
	// FirstRunUnixNano is the first KVM_RUN's wall-clock time, 0 if absent.
	FirstRunUnixNano int64
	// FirstRunAfterMain is the same time from vmm's package init.
	FirstRunAfterMain time.Duration
	Exits             map[string]uint64
	Ports             map[string]uint64 // "0x03f8" -> count
	Progress          []ProgressWrite
}

// ProgressWrite is one reported write to the boot-progress port.
type ProgressWrite struct {
	Value byte
	// Since is from the VM's creation (vmm's clock).
	Since time.Duration
	// UnixNano is the write's wall-clock time when vmm prints it, else 0.
	UnixNano int64
}

var (
	firstRunRE = regexp.MustCompile(`startup: first KVM_RUN (\S+) after main, at unix-ns=(\d+)`)
	// "boot-progress port 0x80 <- 0x42 at 1.234567s", optionally followed
	// by "unix-ns=N" (the format proposed to the lead, see the README).
	// vmm prints the value as "0x0042" (Go's %#04x).
	progressRE = regexp.MustCompile(`boot-progress port 0x80 <- 0x0*([0-9a-fA-F]{1,2}) at (\S+)(?:.*unix-ns=(\d+))?`)
	countRE    = regexp.MustCompile(`^\s+(\S+)\s+(\d+)$`)
)

// ParseVMMStats extracts the statistics from vmm's stderr; lines it does not
// know are skipped, so the result is partial rather than an error when the
// format grows.
func ParseVMMStats(stderr string) VMMStats {
	st := VMMStats{Exits: map[string]uint64{}, Ports: map[string]uint64{}}
	section := ""
	for _, line := range strings.Split(stderr, "\n") {
		if m := firstRunRE.FindStringSubmatch(line); m != nil {
			if d, err := time.ParseDuration(m[1]); err == nil {
				st.FirstRunAfterMain = d
			}
			if ns, err := strconv.ParseInt(m[2], 10, 64); err == nil {
				st.FirstRunUnixNano = ns
			}
			continue
		}
		if m := progressRE.FindStringSubmatch(line); m != nil {
			v, errV := strconv.ParseUint(m[1], 16, 8)
			d, errD := time.ParseDuration(m[2])
			if errV == nil && errD == nil {
				w := ProgressWrite{Value: byte(v), Since: d}
				if m[3] != "" {
					if ns, err := strconv.ParseInt(m[3], 10, 64); err == nil {
						w.UnixNano = ns
					}
				}
				st.Progress = append(st.Progress, w)
			}
			continue
		}
		switch {
		case strings.HasPrefix(line, "vCPU exits to userspace:"):
			section = "exits"
			continue
		case strings.HasPrefix(line, "port I/O exits by port:"):
			section = "ports"
			continue
		}
		m := countRE.FindStringSubmatch(line)
		if m == nil {
			section = ""
			continue
		}
		n, err := strconv.ParseUint(m[2], 10, 64)
		if err != nil {
			continue
		}
		switch section {
		case "exits":
			st.Exits[m[1]] = n
		case "ports":
			st.Ports[m[1]] = n
		}
	}
	return st
}

// LastWrite returns the last reported write of value, ok=false if none.
func (st VMMStats) LastWrite(value byte) (ProgressWrite, bool) {
	for i := len(st.Progress) - 1; i >= 0; i-- {
		if st.Progress[i].Value == value {
			return st.Progress[i], true
		}
	}
	return ProgressWrite{}, false
}
