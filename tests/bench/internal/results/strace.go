package results

import (
	"bytes"
	"io"
	"regexp"
	"strconv"
	"time"
)

// StraceArgs trace what the start-up measurement needs: the execve that
// starts the VMM and its ioctls, with absolute microsecond timestamps.
// --seccomp-bpf stops the tracee only for these calls, so the traced
// process runs close to full speed in between.
var StraceArgs = []string{"-f", "--seccomp-bpf", "-ttt", "-e", "trace=execve,ioctl"}

// "[pid  123] 1732830000.123456 ioctl(14, KVM_RUN, 0 <unfinished ...>",
// "123 1732830000.123456 execve(...", or without a pid.
var straceLineRE = regexp.MustCompile(`^(?:\[pid\s+\d+\]\s+|\d+\s+)?(\d+)\.(\d{6}) (execve|ioctl)\((?:\d+, (KVM_RUN))?`)

// StraceStartup follows strace's output line by line: Feed returns true
// once it saw the first KVM_RUN after an execve.
type StraceStartup struct {
	Execve   time.Time
	FirstRun time.Time
}

// Feed takes one line of strace output, or the start of one: strace
// prints "ioctl(14, KVM_RUN" at the call's entry but the rest of the line
// only when it returns, and another thread's message may come in between
// ("ioctl(14, KVM_RUNstrace: Process 17601 attached"). Feeding the same
// line twice changes nothing.
func (s *StraceStartup) Feed(line string) bool {
	m := straceLineRE.FindStringSubmatch(line)
	if m == nil {
		return s.Done()
	}
	sec, err1 := strconv.ParseInt(m[1], 10, 64)
	usec, err2 := strconv.ParseInt(m[2], 10, 64)
	if err1 != nil || err2 != nil {
		return s.Done()
	}
	t := time.Unix(sec, usec*1000)
	switch {
	case m[3] == "execve" && s.Execve.IsZero():
		s.Execve = t
	case m[4] == "KVM_RUN" && !s.Execve.IsZero() && s.FirstRun.IsZero():
		s.FirstRun = t
	}
	return s.Done()
}

// Done reports whether both times are known.
func (s *StraceStartup) Done() bool { return !s.Execve.IsZero() && !s.FirstRun.IsZero() }

// Startup is the execve to first KVM_RUN time.
func (s *StraceStartup) Startup() time.Duration { return s.FirstRun.Sub(s.Execve) }

// WatchStrace reads strace's output from r until the first KVM_RUN (or the
// end) and returns the times and the last lines read. Partial lines count:
// see Feed.
func WatchStrace(r io.Reader) (StraceStartup, []string) {
	var s StraceStartup
	var tail []string
	buf := make([]byte, 64<<10)
	var pending []byte
	for {
		n, err := r.Read(buf)
		pending = append(pending, buf[:n]...)
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			l := string(pending[:i])
			pending = pending[i+1:]
			tail = append(tail, l)
			if len(tail) > 5 {
				tail = tail[1:]
			}
			if s.Feed(l) {
				return s, tail
			}
		}
		if len(pending) > 64<<10 {
			pending = nil // no strace line is that long
		}
		if len(pending) > 0 && s.Feed(string(pending)) {
			return s, append(tail, string(pending))
		}
		if err != nil {
			return s, tail
		}
	}
}

// QEMUTraceArgs make QEMU log every vCPU ioctl with a wall-clock
// timestamp on stderr ("PID@SEC.USEC:kvm_vcpu_ioctl cpu_index 0, type
// 0xae80, arg ..."), the first KVM_RUN among them.
var QEMUTraceArgs = []string{"-trace", "enable=kvm_vcpu_ioctl", "-msg", "timestamp=on"}

// KVM_RUN's ioctl number, _IO(KVMIO, 0x80) (linux/kvm.h).
const kvmRunIoctl = "0xae80"

var qemuTraceRE = regexp.MustCompile(`^\d+@(\d+)\.(\d{6}):kvm_vcpu_ioctl cpu_index \d+, type (0x[0-9a-f]+)`)

// QEMUFirstRun returns the time of a QEMU trace line's KVM_RUN, ok=false
// for other lines.
func QEMUFirstRun(line string) (time.Time, bool) {
	m := qemuTraceRE.FindStringSubmatch(line)
	if m == nil || m[3] != kvmRunIoctl {
		return time.Time{}, false
	}
	sec, err1 := strconv.ParseInt(m[1], 10, 64)
	usec, err2 := strconv.ParseInt(m[2], 10, 64)
	if err1 != nil || err2 != nil {
		return time.Time{}, false
	}
	return time.Unix(sec, usec*1000), true
}
