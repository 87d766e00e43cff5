package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
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
}

func newFreezeWatch(dir string) *freezeWatch {
	return &freezeWatch{heartbeat: dir + "/heartbeat", monitor: dir + "/monitor.sock"}
}

// qemuArgs are the QEMU options the watch needs: ttyS1 into the heartbeat
// file and the monitor on a unix socket.
func (f *freezeWatch) qemuArgs() []string {
	return []string{"-serial", "file:" + f.heartbeat, "-monitor", "unix:" + f.monitor + ",server=on,wait=off"}
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
			return fmt.Sprintf("level 1's heartbeat stopped %v ago (its last uptime: %s s); its CPUs, from QEMU's monitor:\n%s",
				time.Since(last).Round(time.Second), up, f.registers(kernelText(beats)))
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

// registers asks the monitor for every CPU's registers and keeps the lines
// that say where each one was; with level 1's kernel text address, a RIP
// in the kernel also gets its System.map address.
func (f *freezeWatch) registers(ktext uint64) string {
	conn, err := net.DialTimeout("unix", f.monitor, 5*time.Second)
	if err != nil {
		return fmt.Sprintf("(monitor: %v)", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("info registers -a\n")); err != nil {
		return fmt.Sprintf("(monitor: %v)", err)
	}
	var b strings.Builder
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
		for _, key := range []string{"CPU#", "RIP=", "RSP=", "CR0=", "EFER=", "ES =", "CS =", "SS =", "GS ="} {
			if strings.HasPrefix(line, key) || strings.Contains(line, " "+key) {
				b.WriteString("  " + line + "\n")
				if key == "RIP=" {
					b.WriteString(symbolize(ripOf(line), ktext))
				}
				break
			}
		}
	}
	if b.Len() == 0 {
		return "(the monitor answered nothing)"
	}
	return b.String()
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
