package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vmm-dev/vmm/devices/ratelimit"
	"github.com/vmm-dev/vmm/machine"
)

var errBadFlag = errors.New("bad flag value")

// parseSize reads a memory size: a number with an optional K, M, G or T
// suffix (binary units; an optional trailing "iB" or "B" is accepted). A
// bare number means MiB, as in QEMU's -m and Firecracker's mem_size_mib.
func parseSize(s string) (uint64, error) {
	n, shift, ok := parseScaled(strings.TrimSuffix(strings.TrimSuffix(normalized(s), "B"), "I"), 20)
	if !ok {
		return 0, fmt.Errorf("%w: memory size %q: want a number with an optional K, M, G or T suffix", errBadFlag, s)
	}
	if n > (1<<64-1)>>shift {
		return 0, fmt.Errorf("%w: memory size %q is too large", errBadFlag, s)
	}
	return n << shift, nil
}

// parseRate reads a rate limit: a whole number with an optional K, M or
// G suffix (binary units, "iB" and "/s" accepted); a bare number is
// units (bytes or operations) per second. 0 means unlimited.
func parseRate(s string) (uint64, error) {
	t := strings.TrimSuffix(normalized(s), "/S")
	n, shift, ok := parseScaled(strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I"), 0)
	if !ok || shift > 30 || n > (1<<62)>>shift {
		return 0, fmt.Errorf("rate %q: want a whole number per second with an optional K, M or G suffix", s)
	}
	return n << shift, nil
}

func normalized(s string) string { return strings.ToUpper(strings.TrimSpace(s)) }

// parseScaled splits an upper-case number with an optional binary suffix
// (K, M, G, T) into the number and the suffix's shift; with no suffix the
// shift is bare.
func parseScaled(t string, bare int) (n uint64, shift int, ok bool) {
	shift = bare
	if k := len(t); k > 0 {
		if i := strings.IndexByte("KMGT", t[k-1]); i >= 0 {
			shift, t = 10*(i+1), t[:k-1]
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	return n, shift, err == nil
}

// setRate sets the bucket that what ("bw" or "iops") names in l to rate r.
func setRate(l *ratelimit.Config, what string, r uint64) {
	if what == "bw" {
		l.Bandwidth = rateBucket(r)
	} else {
		l.Ops = rateBucket(r)
	}
}

// rateBucket is the token bucket for a rate given on the command line:
// one second's worth, refilled over a second, so a device idle for a
// second may burst that much and otherwise keeps to the rate.
func rateBucket(perSecond uint64) ratelimit.Bucket {
	return ratelimit.Bucket{Size: perSecond, RefillTime: time.Second}
}

// parseDisk reads "PATH[,ro][,bw=RATE][,iops=N]" (also "path=PATH",
// "readonly").
func parseDisk(s string) (machine.Disk, error) {
	parts := strings.Split(s, ",")
	d := machine.Disk{Path: strings.TrimPrefix(parts[0], "path=")}
	if d.Path == "" {
		return d, fmt.Errorf("%w: --disk %q: no image path", errBadFlag, s)
	}
	for _, opt := range parts[1:] {
		k, v, hasValue := strings.Cut(opt, "=")
		switch {
		case !hasValue && (k == "ro" || k == "readonly" || k == "read-only"):
			d.ReadOnly = true
		case !hasValue && k == "rw":
			d.ReadOnly = false
		case hasValue && (k == "bw" || k == "iops"):
			r, err := parseRate(v)
			if err != nil {
				return d, fmt.Errorf("%w: --disk %q: %s: %w", errBadFlag, s, k, err)
			}
			setRate(&d.RateLimit, k, r)
		default:
			return d, fmt.Errorf("%w: --disk %q: unknown option %q (want PATH[,ro][,bw=RATE][,iops=N])", errBadFlag, s, opt)
		}
	}
	return d, nil
}

// parseNIC reads "tap=NAME[,mac=MAC][,rx-bw=RATE][,tx-bw=RATE]
// [,rx-iops=N][,tx-iops=N][,mrg-rxbuf=on|off]" (bw= and iops= set both
// directions).
func parseNIC(s string) (machine.NIC, error) {
	var n machine.NIC
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "tap":
			n.TAP = v
		case "mac":
			mac, err := net.ParseMAC(v)
			if err != nil || len(mac) != 6 {
				return n, fmt.Errorf("%w: --net %q: bad MAC address %q", errBadFlag, s, v)
			}
			if mac[0]&1 != 0 {
				return n, fmt.Errorf("%w: --net %q: %v is a multicast address", errBadFlag, s, mac)
			}
			n.MAC = mac
		case "mrg-rxbuf":
			switch v {
			case "on":
				n.NoMergeableRX = false
			case "off":
				n.NoMergeableRX = true
			default:
				return n, fmt.Errorf("%w: --net %q: mrg-rxbuf=%q: want on or off", errBadFlag, s, v)
			}
		case "bw", "rx-bw", "tx-bw", "iops", "rx-iops", "tx-iops":
			r, err := parseRate(v)
			if err != nil {
				return n, fmt.Errorf("%w: --net %q: %s: %w", errBadFlag, s, k, err)
			}
			dir, what := "", k
			if d, w, ok := strings.Cut(k, "-"); ok {
				dir, what = d, w
			}
			for _, l := range []struct {
				name string
				cfg  *ratelimit.Config
			}{{"rx", &n.RXRateLimit}, {"tx", &n.TXRateLimit}} {
				if dir != "" && dir != l.name {
					continue
				}
				setRate(l.cfg, what, r)
			}
		default:
			return n, fmt.Errorf("%w: --net %q: unknown option %q (want tap=NAME[,mac=MAC][,rx-bw=RATE][,tx-bw=RATE][,rx-iops=N][,tx-iops=N][,mrg-rxbuf=on|off])", errBadFlag, s, k)
		}
	}
	if n.TAP == "" || len(n.TAP) > 15 {
		return n, fmt.Errorf("%w: --net %q: need tap=NAME with a name of 1 to 15 characters", errBadFlag, s)
	}
	return n, nil
}

// parseEntropy reads --entropy: "on", or "bw=RATE[,iops=N]" for a
// limited device.
func parseEntropy(s string) (*machine.Entropy, error) {
	e := &machine.Entropy{}
	if s == "on" {
		return e, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "bw", "iops":
			r, err := parseRate(v)
			if err != nil {
				return nil, fmt.Errorf("%w: --entropy %q: %s: %w", errBadFlag, s, k, err)
			}
			setRate(&e.RateLimit, k, r)
		default:
			return nil, fmt.Errorf("%w: --entropy %q: unknown option %q (want on, or bw=RATE[,iops=N])", errBadFlag, s, kv)
		}
	}
	return e, nil
}

// parseVsock reads --vsock: "cid=N,uds=PATH" (Firecracker's guest_cid
// and uds_path).
func parseVsock(s string) (*machine.Vsock, error) {
	v := &machine.Vsock{}
	for _, kv := range strings.Split(s, ",") {
		k, val, _ := strings.Cut(kv, "=")
		switch k {
		case "cid", "guest_cid":
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil || n < 3 || n == 1<<32-1 {
				return nil, fmt.Errorf("%w: --vsock %q: cid %q: want 3 to 4294967294", errBadFlag, s, val)
			}
			v.GuestCID = n
		case "uds", "uds_path":
			v.UDSPath = val
		default:
			return nil, fmt.Errorf("%w: --vsock %q: unknown option %q (want cid=N,uds=PATH)", errBadFlag, s, kv)
		}
	}
	if v.GuestCID == 0 || v.UDSPath == "" {
		return nil, fmt.Errorf("%w: --vsock %q: need cid=N and uds=PATH", errBadFlag, s)
	}
	return v, nil
}

// parseBalloon reads --balloon: "MIB[,deflate-on-oom][,stats=SECONDS]",
// Firecracker's amount_mib, deflate_on_oom and stats_polling_interval_s.
func parseBalloon(s string) (*machine.Balloon, error) {
	parts := strings.Split(s, ",")
	mib, err := strconv.ParseUint(strings.TrimSuffix(strings.ToUpper(parts[0]), "M"), 10, 32)
	if err != nil {
		return nil, fmt.Errorf("%w: --balloon %q: want MIB[,deflate-on-oom][,stats=SECONDS]", errBadFlag, s)
	}
	b := &machine.Balloon{AmountMiB: mib}
	for _, opt := range parts[1:] {
		k, v, _ := strings.Cut(opt, "=")
		switch k {
		case "deflate-on-oom":
			b.DeflateOnOOM = true
		case "stats":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 {
				return nil, fmt.Errorf("%w: --balloon %q: stats=%q: want whole seconds, at least 1", errBadFlag, s, v)
			}
			b.StatsInterval = time.Duration(n) * time.Second
		default:
			return nil, fmt.Errorf("%w: --balloon %q: unknown option %q (want MIB[,deflate-on-oom][,stats=SECONDS])", errBadFlag, s, opt)
		}
	}
	return b, nil
}

func parseOnReboot(s string) (machine.RebootAction, error) {
	switch s {
	case "exit", "":
		return machine.RebootExit, nil
	case "restart":
		return machine.RebootRestart, nil
	}
	return 0, fmt.Errorf("%w: --on-reboot %q: want exit or restart", errBadFlag, s)
}

// parseShare reads --share: "HOST[:TAG][,ro][,proto=fs|9p]". The tag
// defaults to HOST's base name, or shareN (N: the flag's position) when
// that is no valid tag (the root, or a name over 36 bytes).
func parseShare(s string, index int) (machine.Share, error) {
	const want = "HOST[:TAG][,ro][,proto=fs|9p]"
	parts := strings.Split(s, ",")
	host, tag, _ := strings.Cut(parts[0], ":")
	if host == "" {
		return machine.Share{}, fmt.Errorf("%w: --share %q: want %s", errBadFlag, s, want)
	}
	sh := machine.Share{HostDir: host, Tag: tag}
	if sh.Tag == "" {
		sh.Tag = filepath.Base(filepath.Clean(host))
		if sh.Tag == "/" || sh.Tag == "." || len(sh.Tag) > 36 {
			sh.Tag = fmt.Sprintf("share%d", index)
		}
	}
	if len(sh.Tag) > 36 {
		return machine.Share{}, fmt.Errorf("%w: --share %q: tag %q is over 36 bytes", errBadFlag, s, sh.Tag)
	}
	for _, opt := range parts[1:] {
		switch opt {
		case "ro":
			sh.ReadOnly = true
		case "proto=fs", "proto=virtiofs":
			sh.VirtioFS = true
		case "proto=9p":
			sh.P9 = true
		default:
			return machine.Share{}, fmt.Errorf("%w: --share %q: unknown option %q (want %s)", errBadFlag, s, opt, want)
		}
	}
	fi, err := os.Stat(host)
	if err != nil {
		return machine.Share{}, fmt.Errorf("%w: --share %q: %w", errBadFlag, s, err)
	}
	if !fi.IsDir() {
		return machine.Share{}, fmt.Errorf("%w: --share %q: %s is not a directory", errBadFlag, s, host)
	}
	return sh, nil
}
