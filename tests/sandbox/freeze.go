package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// freezeAfter is how long level 1's heartbeat (its uptime, every 5 s, on
// its second serial port) may stay silent before the run counts as frozen.
// A frozen level 1 runs no timers, so nothing inside it (a step's timeout,
// the kernel's lockup detectors) can end the run; without this watch a
// run would wait for its group's whole timeout (hours for a soak).
var freezeAfter = 120 * time.Second

// freezeWatch watches one nested run's heartbeat file and, when it stops
// growing, reads level 1's CPU registers through QEMU's human monitor, so
// the report says where level 1 was.
type freezeWatch struct {
	heartbeat string // the file QEMU writes level 1's ttyS1 to
	monitor   string // QEMU's monitor socket
	resetLog  string // QEMU's log of level 1's CPU resets (-d cpu_reset)
	pid       int    // QEMU's process, once started
}

func newFreezeWatch(dir string) *freezeWatch {
	return &freezeWatch{heartbeat: dir + "/heartbeat", monitor: dir + "/monitor.sock", resetLog: dir + "/qemu-reset.log"}
}

// qemuArgs are the QEMU options the watch needs: ttyS1 into the heartbeat
// file, the monitor on a unix socket, and QEMU's log of CPU resets, which
// says "Triple fault" when level 1 triple-faults.
func (f *freezeWatch) qemuArgs() []string {
	return []string{"-serial", "file:" + f.heartbeat, "-monitor", "unix:" + f.monitor + ",server=on,wait=off",
		"-d", "cpu_reset", "-D", f.resetLog}
}

// resetReport says how level 1 ended when it ended before its script did:
// whether QEMU's reset log has its "Triple fault" line (a fault while
// delivering a double fault: no kernel ends so by choice), or level 1
// reset or powered off by itself. Under -no-reboot QEMU then exits; it
// dumps no registers for that last reset.
func (f *freezeWatch) resetReport() string {
	b, err := os.ReadFile(f.resetLog)
	switch {
	case err != nil:
		return fmt.Sprintf("(QEMU's reset log: %v)", err)
	case bytes.Contains(b, []byte("Triple fault")):
		return "QEMU's log: level 1's CPU triple-faulted"
	default:
		return "QEMU's log: no triple fault; level 1 reset or powered off by itself"
	}
}

// watch returns, with a report, once the heartbeat has been silent for
// freezeAfter after its first beat; it returns "" when ctx ends first.
// A run whose level 1 never beats (a kernel without ttyS1) is not watched.
func (f *freezeWatch) watch(ctx context.Context) string {
	tick := time.NewTicker(freezeAfter / 24)
	defer tick.Stop()
	var size int64
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return ""
		case <-tick.C:
		}
		fi, err := os.Stat(f.heartbeat)
		if err != nil {
			continue
		}
		if fi.Size() != size {
			size, last = fi.Size(), time.Now()
			continue
		}
		if size > 0 && time.Since(last) >= freezeAfter {
			beats, err := os.ReadFile(f.heartbeat)
			up := lastField(beats)
			if err != nil {
				up = fmt.Sprintf("? (%v)", err)
			}
			regs, cpus := f.registers(kernelText(beats))
			return fmt.Sprintf("level 1's heartbeat stopped %v ago (its last uptime: %s s); its CPUs, from QEMU's monitor:\n%sits clock and timers:\n%s",
				time.Since(last).Round(time.Second), up, regs, f.clocks(cpus))
		}
	}
}

// kernelText is level 1's kernel text address, the heartbeat's first line
// ("ktext=ffffffff..."); 0 if it is not there.
func kernelText(beats []byte) uint64 {
	first, _, _ := strings.Cut(string(beats), "\n")
	v, ok := strings.CutPrefix(strings.TrimSpace(first), "ktext=")
	if !ok {
		return 0
	}
	addr, err := strconv.ParseUint(v, 16, 64)
	if err != nil {
		return 0
	}
	return addr
}

// linkedText is where an x86-64 kernel's text is linked (System.map's
// _text); KASLR moves the running kernel by a multiple of 2 MiB.
const linkedText = 0xffffffff81000000

// symbolize names a kernel RIP by its link-time address, the one to look
// up in System.map (Debian ships it in linux-image-VERSION-dbg).
func symbolize(rip, ktext uint64) string {
	if ktext == 0 || rip < ktext || rip-ktext >= 1<<30 {
		return ""
	}
	return fmt.Sprintf("  (RIP %#x is %#x in System.map: _text+%#x)\n", rip, linkedText+rip-ktext, rip-ktext)
}

// lastField is the heartbeat's last word, level 1's last uptime; "?" if
// there is none.
func lastField(beats []byte) string {
	words := strings.Fields(string(beats))
	if len(words) == 0 {
		return "?"
	}
	return words[len(words)-1]
}

// monitorCmd sends one command to QEMU's human monitor and returns the
// answer's lines, escape sequences and prompts removed.
func (f *freezeWatch) monitorCmd(cmd string) ([]string, error) {
	conn, err := net.DialTimeout("unix", f.monitor, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(cmd + "\n")); err != nil {
		return nil, fmt.Errorf("monitor: %w", err)
	}
	var lines []string
	sc := bufio.NewScanner(conn)
	for {
		// The monitor answers at once; a quiet second ends the answer.
		if err := conn.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
			break
		}
		if !sc.Scan() {
			break
		}
		line := strings.TrimSpace(escapeRE.ReplaceAllString(sc.Text(), ""))
		if line != "" && !strings.HasPrefix(line, "QEMU ") && !strings.HasPrefix(line, "(qemu)") {
			lines = append(lines, line)
		}
	}
	return lines, nil
}

// registers asks the monitor for every CPU's registers and keeps the lines
// that say where each one was; with level 1's kernel text address, a RIP
// in the kernel also gets its System.map address. cpus is the number of
// CPUs the monitor listed.
func (f *freezeWatch) registers(ktext uint64) (report string, cpus int) {
	lines, err := f.monitorCmd("info registers -a")
	if err != nil {
		return fmt.Sprintf("(%v)", err), 0
	}
	var b strings.Builder
	for _, line := range lines {
		for _, key := range []string{"CPU#", "RIP=", "RSP=", "CR0=", "EFER=", "ES =", "CS =", "SS =", "GS ="} {
			if strings.HasPrefix(line, key) || strings.Contains(line, " "+key) {
				b.WriteString("  " + line + "\n")
				if key == "CPU#" {
					cpus++
				}
				if key == "RIP=" {
					b.WriteString(symbolize(ripOf(line), ktext))
				}
				break
			}
		}
	}
	if b.Len() == 0 {
		return "(the monitor answered nothing)", 0
	}
	return b.String(), cpus
}

// hpetCounter is the guest-physical address of the HPET's main counter.
const hpetCounter = 0xfed000f0

// clocks says whether level 1's clock still runs and what its timers
// wait for: QEMU's run state, the HPET counter read twice a second
// apart (QEMU's virtual clock, which also drives each local APIC timer),
// each CPU's APIC timer, and which of QEMU's host threads ran in that
// second. A frozen level 1 with a running clock and armed timers that
// never fire is QEMU's; one whose timers are not armed is its kernel's.
func (f *freezeWatch) clocks(cpus int) string {
	var b strings.Builder
	status, err := f.monitorCmd("info status")
	if err != nil {
		return fmt.Sprintf("  (%v)\n", err)
	}
	b.WriteString("  " + strings.Join(status, "; ") + "\n")
	before := hostThreads(f.pid)
	first, _ := f.monitorCmd(fmt.Sprintf("xp /1gx %#x", hpetCounter))
	time.Sleep(time.Second)
	second, _ := f.monitorCmd(fmt.Sprintf("xp /1gx %#x", hpetCounter))
	after := hostThreads(f.pid)
	c0, c1 := hpetValue(first), hpetValue(second)
	verdict := "advancing"
	switch {
	case c0 == 0 || c1 == 0:
		verdict = "unknown (the monitor gave no counter)"
	case c0 == c1:
		verdict = "stopped"
	}
	fmt.Fprintf(&b, "  HPET counter %#x, a second later %#x: level 1's clock %s\n", c0, c1, verdict)
	for i := range cpus {
		lapic, err := f.monitorCmd(fmt.Sprintf("info lapic %d", i))
		if err != nil {
			break
		}
		for _, line := range lapic {
			if strings.HasPrefix(line, "LVTT") || strings.HasPrefix(line, "Timer") ||
				strings.HasPrefix(line, "ISR") || strings.HasPrefix(line, "IRR") {
				fmt.Fprintf(&b, "  CPU %d APIC %s\n", i, line)
			}
		}
	}
	b.WriteString(threadDelta(before, after))
	return b.String()
}

// hpetValue reads the value of an "xp /1gx" answer
// ("00000000fed000f0: 0x00000004a817c800"); 0 if there is none.
func hpetValue(lines []string) uint64 {
	for _, l := range lines {
		if _, v, ok := strings.Cut(l, ": 0x"); ok {
			v, _, _ = strings.Cut(v, " ")
			if n, err := strconv.ParseUint(v, 16, 64); err == nil {
				return n
			}
		}
	}
	return 0
}

// hostThread is one QEMU thread as /proc shows it.
type hostThread struct {
	comm, state, wchan string
	ticks              uint64 // utime + stime, in clock ticks
}

// hostThreads reads every thread of process pid; nil if it is gone.
func hostThreads(pid int) map[string]hostThread {
	if pid <= 0 {
		return nil
	}
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	m := map[string]hostThread{}
	for _, t := range tasks {
		d := filepath.Join(dir, t.Name())
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// The command name is in parentheses and may hold spaces.
		i := bytes.LastIndexByte(stat, ')')
		j := bytes.IndexByte(stat, '(')
		if i < 0 || j < 0 || j > i {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) < 13 {
			continue
		}
		ut, _ := strconv.ParseUint(fields[11], 10, 64)
		st, _ := strconv.ParseUint(fields[12], 10, 64)
		wchan, _ := os.ReadFile(d + "/wchan")
		m[t.Name()] = hostThread{comm: string(stat[j+1 : i]), state: fields[0], wchan: string(wchan), ticks: ut + st}
	}
	return m
}

// threadDelta says, for each thread in both samples, its state and the
// CPU ticks it used between them.
func threadDelta(before, after map[string]hostThread) string {
	if len(after) == 0 {
		return "  (QEMU's threads: not readable)\n"
	}
	tids := make([]string, 0, len(after))
	for tid := range after {
		tids = append(tids, tid)
	}
	slices.Sort(tids)
	var parts []string
	for _, tid := range tids {
		a := after[tid]
		b, had := before[tid]
		if !had {
			continue
		}
		w := ""
		if a.wchan != "" && a.wchan != "0" {
			w = " in " + a.wchan
		}
		parts = append(parts, fmt.Sprintf("%s %s%s %d ticks", a.comm, a.state, w, a.ticks-b.ticks))
	}
	return "  QEMU's threads over that second: " + strings.Join(parts, ", ") + "\n"
}

// ripOf reads the value after "RIP=" in a monitor line; 0 if none.
func ripOf(line string) uint64 {
	_, v, ok := strings.Cut(line, "RIP=")
	if !ok {
		return 0
	}
	v, _, _ = strings.Cut(v, " ")
	rip, err := strconv.ParseUint(v, 16, 64)
	if err != nil {
		return 0
	}
	return rip
}
