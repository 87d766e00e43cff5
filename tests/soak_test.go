package tests

import (
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/tests/sandbox"
)

// Soak runs: long, so not part of `make test`; `make soak` runs them
// (VMM_SOAK=1). Each loop iteration is its own step with its own host side
// (fresh servers and files), and every failure is reported, never retried.

func soakOnly(t *testing.T) {
	t.Helper()
	if os.Getenv("VMM_SOAK") == "" {
		t.Skip("soak run: set VMM_SOAK=1 (make soak)")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// netLoopL1 is one iteration of the transfer scenario, from scratch: a
// new random file, new servers, a new guest. Its arguments are the step
// name, the vCPU count, the size in MiB and how long the guest gives each
// direction; the remaining ones go to vmm.
const netLoopL1 = `
net_iteration() {
	local step=$1 cpus=$2 mib=$3 nettimeout=$4 netopt=
	shift 4
	if [ "$1" = --net-opt ]; then netopt=,$2; shift 2; fi
	dd if=/dev/urandom of="$WORK/send.bin" bs=1M count=$mib 2> /dev/null
	local sent_md5
	sent_md5=$(md5sum < "$WORK/send.bin" | cut -d' ' -f1)
	nc -l -p 5002 < "$WORK/send.bin" &
	local sender=$!
	rm -f "$WORK/hold"
	mkfifo "$WORK/hold"
	sleep 3600 > "$WORK/hold" &
	local holder=$!
	nc -l -p 5001 < "$WORK/hold" > "$WORK/back.bin" &
	local receiver=$!
	# A stalled upload (back.bin stops growing for 30 s once it has
	# begun) ends vmm with SIGTERM at once, so its stop report shows the
	# rings and counters at the stall, not after the guest gave up. The
	# watchdog also logs the upload's progress every 30 s, so a slow
	# iteration shows whether it crawled evenly or stopped and started.
	# The size comes from stat: busybox's wc -c reads the whole file,
	# which near the end of 256 MiB took a level-1 CPU for a minute of
	# every 30 s sleep, away from the transfer it watched.
	( prev=0 start=$(date +%s)
	while kill -0 $receiver 2> /dev/null; do
		sleep 30
		t=$(($(date +%s) - start))
		cur=$(stat -c %s "$WORK/back.bin")
		if [ "$cur" -gt 0 ]; then
			echo "upload $step: $cur bytes back at ${t}s (+$((cur - prev)) in 30s)"
		fi
		if [ "$cur" -gt 0 ] && [ "$cur" -eq "$prev" ] && kill -0 $receiver 2> /dev/null; then
			echo "@@STALL name=$step back_bytes=$cur"
			pkill -TERM -f "^$VMM run"
			break
		fi
		prev=$cur
	done ) &
	local watchdog=$!
	run_vmm "$step" run --kernel "$GUEST_BZIMAGE" --initrd "$GUEST_INITRD" \
		--cmdline "$GUEST_CMDLINE vmmtest=nettransfer vmmnettimeout=$nettimeout" --cpus "$cpus" --memory 1G \
		--net tap=tap0,mac=02:00:00:00:00:42$netopt "$@"
	kill $watchdog 2> /dev/null
	local i=0
	while kill -0 $receiver 2> /dev/null && [ $i -lt 10 ]; do sleep 1; i=$((i + 1)); done
	kill $sender $holder $receiver 2> /dev/null
	wait $sender $holder $receiver 2> /dev/null
	metric "$step" sent_md5=$sent_md5 back_bytes=$(wc -c < "$WORK/back.bin") back_md5=$(md5sum < "$WORK/back.bin" | cut -d' ' -f1) size=$((mib << 20))
	rm -f "$WORK/send.bin" "$WORK/back.bin"
}
tunctl -t tap0 > /dev/null
ip addr add 172.30.0.1/24 dev tap0
ip link set tap0 up
`

// TestSoakNetTransfer moves VMM_SOAK_NET_MIB (256) MiB each way,
// VMM_SOAK_NET_RUNS (20) times with 1 vCPU and as often with 2, each with
// and without mergeable receive buffers, and fails on any iteration whose
// data did not arrive intact.
func TestSoakNetTransfer(t *testing.T) {
	soakOnly(t)
	runs := envInt("VMM_SOAK_NET_RUNS", 20)
	mib := envInt("VMM_SOAK_NET_MIB", 256)
	var script strings.Builder
	// VMM_SOAK_L1_THP=never turns off level 1's transparent huge pages
	// (and their compaction) for the run: an experiment on whether host
	// page migration under a running guest matters.
	if thp := os.Getenv("VMM_SOAK_L1_THP"); thp != "" {
		fmt.Fprintf(&script, "echo %s > /sys/kernel/mm/transparent_hugepage/enabled\necho %s > /sys/kernel/mm/transparent_hugepage/defrag\n", thp, thp)
	}
	script.WriteString(netLoopL1)
	// Each iteration's time is bounded by VMM_SOAK_NET_STEP_TIMEOUT
	// (seconds), by default 4 s per MiB and 2 minutes for the boot and
	// checksums. The bound catches a hang, not a slow sandbox: a stalled
	// upload is stopped within 30 s by the loop's watchdog, and speed is
	// measured, not asserted. In the sandbox the guest's upload ran at
	// 0.4 to 1.7 MiB/s (256 MiB in 150 to 700 s) while the watchdog still
	// used wc -c, and 2 s per MiB cut off three steady 2-vCPU iterations
	// (2026-12-04); with stat, 1.6 to 2.4 MiB/s. Each direction in the
	// guest gives up a minute before the step does.
	stepTimeout := time.Duration(envInt("VMM_SOAK_NET_STEP_TIMEOUT", 120+4*mib)) * time.Second
	dirTimeout := int((stepTimeout - time.Minute) / time.Second)
	if dirTimeout < 30 {
		dirTimeout = 30
	}
	var steps []string
	cpuCounts := []int{1, 2}
	if n := envInt("VMM_SOAK_NET_CPUS", 0); n > 0 {
		cpuCounts = []int{n}
	}
	// Mergeable receive buffers on and off: the two RX paths of Linux's
	// driver (VMM_SOAK_NET_MRG=on or off runs one of them).
	mrgs := []string{"on", "off"}
	if m := os.Getenv("VMM_SOAK_NET_MRG"); m != "" {
		mrgs = []string{m}
	}
	for _, mrg := range mrgs {
		for _, cpus := range cpuCounts {
			for i := 1; i <= runs; i++ {
				name := fmt.Sprintf("net-c%d-mrg%s-%02d", cpus, mrg, i)
				steps = append(steps, name)
				fmt.Fprintf(&script, "net_iteration %s %d %d %d --net-opt mrg-rxbuf=%s\n", name, cpus, mib, dirTimeout, mrg)
			}
		}
	}
	// The group's own bound is every step's: it runs out only if the
	// steps do, and each of those reports itself.
	g := &group{
		name:         "soak-net",
		noRepeat:     true,
		timeout:      time.Duration(len(steps))*stepTimeout + 5*time.Minute,
		stepTimeout:  stepTimeout,
		guestScripts: map[string]string{"nettransfer": netTransferGuest},
		script:       script.String(),
	}
	checkLoop(t, g, steps, func(s *sandbox.Step) string {
		size := s.Values["size"]
		switch {
		case s.RC != 0 || s.TimedOut:
			return "vmm failed"
		case s.Values["ping"] != "ok":
			return "no ping"
		case s.Values["in_bytes"] != size || s.Values["in_md5"] != s.Values["sent_md5"]:
			return fmt.Sprintf("level 1 -> guest: %s bytes, md5 %s", s.Values["in_bytes"], s.Values["in_md5"])
		case s.Values["back_bytes"] != size || s.Values["back_md5"] != s.Values["sent_md5"]:
			return fmt.Sprintf("guest -> level 1: %s bytes, md5 %s", s.Values["back_bytes"], s.Values["back_md5"])
		}
		return ""
	})
}

// checkLoop runs g and checks every named step with bad, which names what
// went wrong ("" when the step passed); it reports each iteration and
// fails the test once for all failures, with each failing step's console.
func checkLoop(t *testing.T, g *group, steps []string, bad func(*sandbox.Step) string) {
	t.Helper()
	// A run that failed as a whole (out of time, level 1 gone) still
	// reports each step it got to, then fails the test.
	res, err := g.result(t)
	if res == nil {
		require.FailNow(t, fmt.Sprintf("sandbox run of group %q got no result", g.name), "%v", err)
	}
	assert.NoError(t, err, "sandbox run of group %q", g.name)
	failed, sandboxLike := 0, 0
	for _, name := range steps {
		s := res.Step(name)
		why := ""
		switch {
		case s == nil:
			why = "never ran"
		case !s.Finished:
			why = "did not finish"
		default:
			why = bad(s)
		}
		if why == "" {
			t.Logf("%s: ok (vmm %v, to init %v)", name, s.VMMTime, s.InitReached.Round(time.Millisecond))
			continue
		}
		failed++
		if s != nil {
			// Say which failures have the sandbox's signatures; they
			// still count: a soak repeats nothing.
			if kind := soakFaultKind(s); kind != "" {
				why += " [" + kind + "]"
				sandboxLike++
			}
			t.Errorf("%s: %s\n%s", name, why, s.Describe())
		} else {
			t.Errorf("%s: %s", name, why)
		}
	}
	assert.Zero(t, failed, "%d of %d iterations failed (%d with a sandbox fault's signature)", failed, len(steps), sandboxLike)
}

// soakFaultKind names the sandbox-fault signature a failed iteration
// shows (sandboxFault's, step by step), or "".
func soakFaultKind(s *sandbox.Step) string {
	switch {
	case s.Contains(foreignRegisters):
		return "a vCPU held level 1's registers"
	case strings.Contains(s.ErrorLine, "guest triple fault"):
		return "guest triple fault"
	}
	return ""
}

// soakBootGuest checks the disk and the network, then ends the boot the
// way its command line says: "soakend=reboot" or a power-off.
const soakBootGuest = `
for arg in $(cat /proc/cmdline); do
	case "$arg" in soakend=*) end=${arg#soakend=} ;; esac
done
echo "@@GUEST disk_md5=$(dd if=/dev/vda bs=1M count=1 2> /dev/null | md5sum | cut -d' ' -f1)"
ip addr add 172.30.2.2/24 dev eth0
ip link set eth0 up
if ping -c 1 -W 5 172.30.2.1 > /dev/null 2>&1; then echo "@@GUEST ping=ok"; else echo "@@GUEST ping=fail"; fi
if [ "$end" = reboot ]; then
	echo "vmm guest: rebooting"
	reboot -f
	sleep 10
fi
`

// TestSoakBoots boots VMM_SOAK_BOOTS (200) guests in a row in one level-1
// machine, with 1, 2 and 4 vCPUs in turn, a disk and a NIC each, ending
// alternately by reboot and by power-off; every boot must succeed.
func TestSoakBoots(t *testing.T) {
	soakOnly(t)
	boots := envInt("VMM_SOAK_BOOTS", 200)
	disk := make([]byte, 1<<20)
	for i := range disk {
		disk[i] = byte(i * 7)
	}
	var script strings.Builder
	script.WriteString(`tunctl -t tap0 > /dev/null
ip addr add 172.30.2.1/24 dev tap0
ip link set tap0 up
`)
	var steps []string
	for i := 1; i <= boots; i++ {
		cpus := []int{1, 2, 4}[i%3]
		end := []string{"poweroff", "reboot"}[i%2]
		name := fmt.Sprintf("boot-%03d-c%d-%s", i, cpus, end)
		steps = append(steps, name)
		script.WriteString(vmmRun(name, "GUEST_BZIMAGE", guestCmdline+" vmmtest=soakboot soakend="+end,
			"--cpus", fmt.Sprint(cpus), "--disk", `"$DATA/soak.img,ro"`, "--net", "tap=tap0") + "\n")
	}
	g := &group{
		name:         "soak-boots",
		noRepeat:     true,
		timeout:      time.Duration(boots) * 40 * time.Second,
		stepTimeout:  120 * time.Second,
		guestScripts: map[string]string{"soakboot": soakBootGuest},
		files:        []sandbox.File{{Name: "soak.img", Data: disk}},
		script:       script.String(),
	}
	sum := md5.Sum(disk)
	want := hex.EncodeToString(sum[:])
	checkLoop(t, g, steps, func(s *sandbox.Step) string {
		wantEnd := "reboot: Power down"
		if strings.HasSuffix(s.Name, "reboot") {
			wantEnd = "vmm guest: rebooting"
		}
		switch {
		case s.RC != 0 || s.TimedOut:
			return "vmm failed"
		case !s.Contains(wantEnd):
			return "console lacks " + wantEnd
		case s.Values["disk_md5"] != want:
			return "disk read " + s.Values["disk_md5"] + ", want " + want
		case s.Values["ping"] != "ok":
			return "no ping"
		}
		return ""
	})
}

// restartSoakGuest counts its boots on the disk and reboots until the
// count reaches soakboots=N, then powers off.
const restartSoakGuest = `
for arg in $(cat /proc/cmdline); do
	case "$arg" in soakboots=*) want=${arg#soakboots=} ;; esac
done
n=$(dd if=/dev/vda bs=16 count=1 2> /dev/null | tr -dc 0-9)
n=$((${n:-0} + 1))
printf '%-16s' $n | dd of=/dev/vda bs=16 count=1 conv=notrunc 2> /dev/null
sync
echo "@@GUEST boot=$n"
if [ $n -lt $want ]; then
	reboot -f
	sleep 10
fi
`

// TestSoakRestartCycles runs VMM_SOAK_RESTARTS (100) guest reboots with
// --on-reboot=restart in one vmm process and samples its descriptors and
// RSS at each boot: neither may grow.
func TestSoakRestartCycles(t *testing.T) {
	soakOnly(t)
	cycles := envInt("VMM_SOAK_RESTARTS", 100)
	// The sampler records the vmm's open descriptors and VmRSS once a
	// second; the metrics compare the second boot's with the last one's.
	script := fmt.Sprintf(`
( while sleep 1; do
	pid=$(pidof vmm) || continue
	set -- $pid
	echo "$(ls /proc/$1/fd 2> /dev/null | wc -l) $(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' /proc/$1/status)"
done > "$WORK/samples" ) &
sampler=$!
%s
kill $sampler
# The largest descriptor count and RSS in the first and in the last
# quarter of the run: a leak shows as growth between the two.
metric restart-soak $(awk '{ n++; fd[n] = $1; rss[n] = $2 }
END {
	q = int(n / 4); if (q < 1) q = 1
	for (i = 1; i <= n; i++) {
		if (i <= q) { if (fd[i] > ef) ef = fd[i]; if (rss[i] > er) er = rss[i] }
		if (i > n - q) { if (fd[i] > lf) lf = fd[i]; if (rss[i] > lr) lr = rss[i] }
	}
	printf "samples=%%d early_fds=%%d late_fds=%%d early_rss_kib=%%d late_rss_kib=%%d", n, ef, lf, er, lr
}' "$WORK/samples")
`, vmmRun("restart-soak", "GUEST_BZIMAGE", guestCmdline+fmt.Sprintf(" vmmtest=restartsoak soakboots=%d", cycles),
		"--on-reboot", "restart", "--disk", `"$DATA/count.img"`))
	g := &group{
		name:         "soak-restart",
		noRepeat:     true,
		timeout:      time.Duration(cycles)*30*time.Second + 2*time.Minute,
		stepTimeout:  time.Duration(cycles) * 25 * time.Second,
		guestScripts: map[string]string{"restartsoak": restartSoakGuest},
		files:        []sandbox.File{{Name: "count.img", Data: make([]byte, 1<<20)}},
		script:       script,
	}
	checkLoop(t, g, []string{"restart-soak"}, func(s *sandbox.Step) string {
		v := s.Values
		t.Logf("%s samples: largest descriptor count %s in the first quarter, %s in the last; largest RSS %s KiB, then %s KiB",
			v["samples"], v["early_fds"], v["late_fds"], v["early_rss_kib"], v["late_rss_kib"])
		early, _ := strconv.Atoi(v["early_rss_kib"])
		late, _ := strconv.Atoi(v["late_rss_kib"])
		switch {
		case s.RC != 0 || s.TimedOut:
			return "vmm failed"
		case v["boot"] != strconv.Itoa(cycles):
			return fmt.Sprintf("last boot was %s, want %d", v["boot"], cycles)
		case v["early_fds"] == "" || v["early_fds"] != v["late_fds"]:
			return fmt.Sprintf("descriptors went from %s to %s", v["early_fds"], v["late_fds"])
		case early == 0 || late > early+early/10:
			return fmt.Sprintf("RSS grew from %d KiB to %d KiB", early, late)
		}
		return ""
	})
}

// bridgeLoopL1 sets up br0 with tapa and tapb once; bridge_iteration then
// boots two guests on it, A in the background and B as the step, each
// pinging the other.
const bridgeLoopL1 = bridgeSetupL1 + `
bridge_iteration() {
	local step=$1 cpus=$2
	timeout -k 5 "$STEP_TIMEOUT" "$VMM" run --kernel "$GUEST_BZIMAGE" --initrd "$GUEST_INITRD" \
		--cmdline "$GUEST_CMDLINE vmmtest=netbridge netip=172.30.1.2 netpeer=172.30.1.3" --cpus "$cpus" \
		--net tap=tapa,mac=02:00:00:00:01:02 < /dev/null > "$WORK/guest-a.out" 2>&1 &
	local guest_a=$!
	run_vmm "$step" run --kernel "$GUEST_BZIMAGE" --initrd "$GUEST_INITRD" \
		--cmdline "$GUEST_CMDLINE vmmtest=netbridge netip=172.30.1.3 netpeer=172.30.1.2" --cpus "$cpus" \
		--net tap=tapb,mac=02:00:00:00:01:03
	wait $guest_a
	local rc_a=$?
	sed 's/^/guest-a| /' "$WORK/guest-a.out"
	metric "$step" peer_rc=$rc_a peer_ping=$(sed -n 's/.*@@GUEST ping=\([a-z]*\).*/\1/p' "$WORK/guest-a.out" | head -n 1)
}
`

// TestSoakNetBridge boots the two-guest bridge scenario VMM_SOAK_BRIDGE_RUNS
// (20) times with 1 vCPU each and as often with 2; both guests of every
// iteration must ping each other and exit cleanly.
func TestSoakNetBridge(t *testing.T) {
	soakOnly(t)
	runs := envInt("VMM_SOAK_BRIDGE_RUNS", 20)
	k, err := sandbox.Kernel(t.Context())
	require.NoError(t, err)
	var files []sandbox.File
	for _, rel := range bridgeModules {
		p, err := k.Module(rel)
		require.NoError(t, err, "bridge modules for level 1")
		files = append(files, sandbox.File{Name: path.Base(rel), HostPath: p})
	}
	var script strings.Builder
	script.WriteString(bridgeLoopL1)
	var steps []string
	for _, cpus := range []int{1, 2} {
		for i := 1; i <= runs; i++ {
			name := fmt.Sprintf("bridge-c%d-%02d", cpus, i)
			steps = append(steps, name)
			fmt.Fprintf(&script, "bridge_iteration %s %d\n", name, cpus)
		}
	}
	g := &group{
		name:         "soak-bridge",
		noRepeat:     true,
		timeout:      time.Duration(len(steps)) * 2 * time.Minute,
		stepTimeout:  120 * time.Second,
		guestScripts: map[string]string{"netbridge": netBridgeGuest},
		files:        files,
		script:       script.String(),
	}
	checkLoop(t, g, steps, func(s *sandbox.Step) string {
		switch {
		case s.RC != 0 || s.TimedOut:
			return "vmm (guest B) failed"
		case !s.Contains("vmm guest: poweroff -f"):
			return "guest B did not power off"
		case s.Values["ping"] != "ok":
			return "guest B did not reach guest A"
		case s.Values["peer_rc"] != "0":
			return "guest A's vmm exited " + s.Values["peer_rc"]
		case s.Values["peer_ping"] != "ok":
			return "guest A did not reach guest B"
		}
		return ""
	})
}
