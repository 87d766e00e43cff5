package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/tests/sandbox"
)

// Device scenarios: a rate-limited disk, the entropy device and vsock,
// in one level-1 machine.
//
//   - disk-limit: `--disk IMG,bw=1M`; the guest reads 1 MiB (the bucket's
//     one-second burst), then times 3 MiB more with dd.
//   - entropy: `--entropy on`; the guest loads virtio-rng and reads
//     256 KiB from /dev/hwrng.
//   - balloon: `--memory 512M --balloon 256`; the guest loads
//     virtio_balloon and its MemTotal falls by 256 MiB.
//   - balloon-rss: Firecracker's API (`vmm firecracker --api-sock
//     --config-file`, a balloon of 0 MiB): the guest fills and frees
//     300 MiB of its RAM; level 1 reads vmm's VmRSS, PATCHes the balloon
//     to 256 MiB (fcapi, tests/cmd/fcapi), reads VmRSS again once the
//     guest's MemTotal fell, then PATCHes it back to 0 and the guest gets
//     its memory back.
//   - vsock: `--vsock cid=3,uds=...`; vsockx (tests/guest/vsockx) on both
//     sides moves 64 MiB each way through one host-initiated and one
//     guest-initiated connection, then 32 of each at once, 1 MiB each way,
//     and compares checksums.
const (
	vsockBigBytes   = 64 << 20
	vsockSmallBytes = 1 << 20
	vsockConns      = 32
)

var devicesGroup = &group{
	name:        "devices",
	timeout:     20 * time.Minute,
	stepTimeout: 180 * time.Second,
	guestScripts: map[string]string{
		"disklimit": netMS + `
dd if=/dev/vda of=/dev/null bs=64k count=16 2> /dev/null
t0=$(ms)
dd if=/dev/vda of=/dev/null bs=64k skip=64 count=48 2> /dev/null
t1=$(ms)
echo "@@GUEST limit_ms=$((t1 - t0))"
`,
		"entropy": netMS + `
insmod /lib/modules/extra/virtio-rng.ko || echo "@@GUEST insmod-failed module=virtio-rng"
sleep 1
echo "@@GUEST rng_current=$(cat /sys/class/misc/hw_random/rng_current)"
t0=$(ms)
n=$(head -c 262144 /dev/hwrng | wc -c)
t1=$(ms)
a=$(head -c 32 /dev/hwrng | md5sum | cut -d' ' -f1)
b=$(head -c 32 /dev/hwrng | md5sum | cut -d' ' -f1)
echo "@@GUEST rng_bytes=$n rng_ms=$((t1 - t0)) rng_differ=$([ "$a" != "$b" ] && echo 1 || echo 0)"
`,
		"balloon": `
memtotal() { sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo; }
before=$(memtotal)
insmod /lib/modules/extra/virtio_balloon.ko || echo "@@GUEST insmod-failed module=virtio_balloon"
i=0
while [ $i -lt 60 ] && [ $(( before - $(memtotal) )) -lt 258048 ]; do sleep 1; i=$((i + 1)); done
echo "@@GUEST balloon_before_kb=$before balloon_after_kb=$(memtotal) balloon_secs=$i"
`,
		// The balloon-snapshot step's guest: it prints its MemTotal every
		// half second, which the balloon lowers and raises.
		"balloonsnap": `
insmod /lib/modules/extra/virtio_balloon.ko || echo "@@GUEST insmod-failed module=virtio_balloon"
i=0
while [ $i -lt 1200 ]; do
	i=$((i + 1))
	echo "memtotal=$(sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo) tick=$i"
	sleep 0.5
done
`,
		"balloonrss": `
memtotal() { sed -n 's/^MemTotal: *\([0-9]*\) kB/\1/p' /proc/meminfo; }
insmod /lib/modules/extra/virtio_balloon.ko || echo "@@GUEST insmod-failed module=virtio_balloon"
before=$(memtotal)
# Touch 300 MiB of RAM (tmpfs pages), then free it: vmm's RSS keeps it.
dd if=/dev/zero of=/tmp/fill bs=1M count=300 2> /dev/null
rm /tmp/fill
echo "@@GUEST balloon_touched=1 memtotal_before_kb=$before"
i=0
while [ $i -lt 600 ] && [ $(( before - $(memtotal) )) -lt 258048 ]; do sleep 0.2; i=$((i + 1)); done
echo "@@GUEST balloon_inflated=1 memtotal_inflated_kb=$(memtotal)"
i=0
while [ $i -lt 600 ] && [ $(( before - $(memtotal) )) -gt 4096 ]; do sleep 0.2; i=$((i + 1)); done
echo "@@GUEST balloon_deflated=1 memtotal_deflated_kb=$(memtotal)"
# Level 1 reads vmm's RSS after this line: power off only after it had
# the time (CI run of 2026-12-02 00:03 read none, vmm was gone).
sleep 5
`,
		"vsock": fmt.Sprintf(`
for m in vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
	insmod /lib/modules/extra/$m.ko || echo "@@GUEST insmod-failed module=$m"
done
# Where each module sits, to read a stop report's RIP and stack against.
sed 's/^/modules| /' /proc/modules
vsockx guest-serve 1234 1 %[1]d 11 12 > /tmp/s1234 2>&1 &
s1=$!
vsockx guest-serve 1235 %[3]d %[2]d 13 14 > /tmp/s1235 2>&1 &
s2=$!
vsockx guest-connect 5000 1 %[1]d 21 22
vsockx guest-connect 5001 %[3]d %[2]d 23 24
wait $s1
wait $s2
cat /tmp/s1234 /tmp/s1235
`, vsockBigBytes, vsockSmallBytes, vsockConns),
		// The vsock-snapshot step's guest: two listeners, one connection
		// each, then it counts (so a restored guest shows it runs).
		"vsocksnap": `
for m in vsock vmw_vsock_virtio_transport_common vmw_vsock_virtio_transport; do
	insmod /lib/modules/extra/$m.ko || echo "@@GUEST insmod-failed module=$m"
done
vsockx guest-serve 1234 1 1048576 11 12 > /tmp/s1234 2>&1 &
vsockx guest-serve 1235 1 1048576 15 16 > /tmp/s1235 2>&1 &
sleep 1
echo "@@GUEST vsocksnap=ready"
i=0
while [ $i -lt 600 ]; do i=$((i + 1)); echo "counter $i"; sleep 1; done
`,
	},
	script: `
dd if=/dev/zero of="$WORK/limit.img" bs=1M count=16 2> /dev/null
` + vmmRun("disk-limit", "GUEST_BZIMAGE", guestCmdline+" vmmtest=disklimit", "--disk", `"$WORK/limit.img,bw=1M"`) + `
` + vmmRun("entropy", "GUEST_BZIMAGE", guestCmdline+" vmmtest=entropy", "--entropy", "on") + `
` + vmmRun("balloon", "GUEST_BZIMAGE", guestCmdline+" vmmtest=balloon", "--memory", "512M", "--balloon", "256") + `
` + balloonRSSScript + balloonSnapshotScript + vsockScript(),
}

// balloonSnapshotScript is the balloon-snapshot step: a 512 MiB guest
// inflates its balloon to 128 MiB through the API, is snapshotted, and a
// clone restored with its own API socket comes back with the balloon
// still inflated (MemTotal as low) and deflates it when PATCHed to 0.
const balloonSnapshotScript = `
d="$WORK/bsnap"
mkdir -p "$d"
cat > "$d/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$GUEST_BZIMAGE", "initrd_path": "$GUEST_INITRD", "boot_args": "$GUEST_CMDLINE vmmtest=balloonsnap"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 512},
 "balloon": {"amount_mib": 0, "deflate_on_oom": false, "stats_polling_interval_s": 1}}
JSON
# last_mem FILE: the guest's last MemTotal line, in kB.
last_mem() { grep -o 'memtotal=[0-9]*' "$1" | tail -n 1 | cut -d= -f2; }
# mem_until FILE CMP KB: wait up to 60 s for MemTotal CMP (-lt, -gt) KB.
mem_until() {
	local i=0 m
	while [ $i -lt 300 ]; do
		m=$(last_mem "$1"); [ -n "$m" ] && [ "$m" "$2" "$3" ] && return 0
		sleep 0.2; i=$((i + 1))
	done
	return 1
}
# mem_stable FILE: wait (up to 30 s) until MemTotal stays the same for
# 2 s: the driver inflates in steps, and the last ones come after the
# threshold above.
mem_stable() {
	local i=0 prev= m
	while [ $i -lt 15 ]; do
		m=$(last_mem "$1"); [ -n "$m" ] && [ "$m" = "$prev" ] && return 0
		prev=$m; sleep 2; i=$((i + 1))
	done
	return 1
}
echo "@@STEP name=balloon-snapshot begin"
bstart=$(uptime_ms)
brc=0
"$VMM" firecracker --api-sock "$d/a.sock" --config-file "$d/vm.json" < /dev/null > "$d/a.out" 2> "$d/a.err" &
bpid=$!
i=0
while [ $i -lt 1200 ] && [ -z "$(last_mem "$d/a.out")" ]; do sleep 0.1; i=$((i + 1)); done
full=$(last_mem "$d/a.out")
"$DATA/fcapi" call "$d/a.sock" PATCH /balloon '{"amount_mib": 128}' || brc=10
mem_until "$d/a.out" -lt $(( ${full:-0} - 126976 )) || brc=11
mem_stable "$d/a.out"
inflated=$(last_mem "$d/a.out")
"$VMM" snapshot create --api-sock "$d/a.sock" --snapshot-path "$d/vm.snap" --mem-file-path "$d/vm.mem" --leave-paused || brc=12
kill $bpid; wait $bpid
"$VMM" restore --snapshot-path "$d/vm.snap" --mem-file-path "$d/vm.mem" --api-sock "$d/c.sock" < /dev/null > "$d/c.out" 2> "$d/c.err" &
cpid=$!
i=0
while [ $i -lt 300 ] && [ -z "$(last_mem "$d/c.out")" ]; do sleep 0.1; i=$((i + 1)); done
clone_start=$(last_mem "$d/c.out")
clone_target=$("$DATA/fcapi" call "$d/c.sock" GET /balloon | tr -d ' \n')
"$DATA/fcapi" call "$d/c.sock" PATCH /balloon '{"amount_mib": 0}' || brc=13
mem_until "$d/c.out" -gt $(( ${full:-0} - 4096 )) || brc=14
clone_deflated=$(last_mem "$d/c.out")
kill $cpid; wait $cpid
echo "--- origin"; cat "$d/a.out" "$d/a.err" | tail -n 40
echo "--- clone"; cat "$d/c.out" "$d/c.err" | tail -n 40
metric balloon-snapshot memtotal_full_kb=$full memtotal_inflated_kb=$inflated \
	clone_start_kb=$clone_start clone_deflated_kb=$clone_deflated clone_balloon=$clone_target
echo
echo "@@RESULT name=balloon-snapshot rc=$brc ms=$(( $(uptime_ms) - bstart )) timedout=0"
[ $brc -eq 0 ] || vmm_error balloon-snapshot "$d/a.err" "$d/c.err"
rm -rf "$d"
`

// balloonRSSScript is the balloon-rss step's level-1 part: vmm runs in
// the background under run_vmm while this script watches its console
// (run_vmm's $WORK/NAME.out fills as it runs), reads its VmRSS and
// drives the balloon through the API socket.
const balloonRSSScript = `
cat > "$WORK/bal.json" <<JSON
{
  "boot-source": {"kernel_image_path": "$GUEST_BZIMAGE", "initrd_path": "$GUEST_INITRD", "boot_args": "$GUEST_CMDLINE vmmtest=balloonrss"},
  "machine-config": {"vcpu_count": 1, "mem_size_mib": 512},
  "balloon": {"amount_mib": 0, "deflate_on_oom": false}
}
JSON
run_vmm balloon-rss firecracker --api-sock "$WORK/bal.sock" --config-file "$WORK/bal.json" &
bal=$!
bal_wait() { # MARKER: wait up to 120 s for the guest to print it
	local i=0
	while [ $i -lt 600 ] && ! grep -q "$1" "$WORK/balloon-rss.out" 2> /dev/null; do sleep 0.2; i=$((i + 1)); done
	grep -q "$1" "$WORK/balloon-rss.out" 2> /dev/null
}
bal_rss() { # vmm's VmRSS in kB
	local p
	for p in /proc/[0-9]*; do
		case "$(tr '\0' ' ' < "$p/cmdline" 2> /dev/null)" in
		"$VMM firecracker --api-sock $WORK/bal.sock"*)
			sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "$p/status"
			return ;;
		esac
	done
	echo 0
}
rss_touched=0 rss_inflated=0 rss_deflated=0
if bal_wait balloon_touched=1; then
	rss_touched=$(bal_rss)
	"$DATA/fcapi" call "$WORK/bal.sock" PATCH /balloon '{"amount_mib": 256}'
	bal_wait balloon_inflated=1 && sleep 1
	rss_inflated=$(bal_rss)
	"$DATA/fcapi" call "$WORK/bal.sock" PATCH /balloon '{"amount_mib": 0}'
	bal_wait balloon_deflated=1
	rss_deflated=$(bal_rss)
fi
wait $bal
metric balloon-rss rss_touched_kb=$rss_touched rss_inflated_kb=$rss_inflated rss_deflated_kb=$rss_deflated
`

// The vsock scenario was off by default (VMM_E2E_VSOCK=1) from
// 2026-12-01 to 12-04: the sandbox, not the guest, hung under it in about
// one run of two. On 2026-12-01 16:35 (level 1 on QEMU 10) vmm's stop
// report showed level 1's own registers in the vCPU (RIP after kvm-amd's
// VMRUN, a CR3 outside the guest's RAM); in the run of 13:33 level 1's
// khugepaged soft-locked 100 s into the step; with level 1's THP off
// (VMM_E2E_VSOCK_L1_THP=never, 22:46) 2 of 3 runs still hung the same way.
// Both are what the race in QEMU's TCG that level 1's build now patches
// does (tests/README.md, "CPU 0's flags, overwritten by the other CPU"):
// with that fix three runs in one level-1 machine passed (2026-12-04
// 04:31, VMM_E2E_VSOCK_RUNS=3), and the scenario is part of make test.
// The device's own tests (devices/virtio/vsock) play the driver.

// vsockL1THPEnv sets level 1's transparent_hugepage mode before the
// vsock steps (never, madvise, always).
const vsockL1THPEnv = "VMM_E2E_VSOCK_L1_THP"

// vsockRunsEnv repeats the vsock step in the same level-1 machine
// (steps vsock, vsock-2, ...), to measure how often a run fails.
const vsockRunsEnv = "VMM_E2E_VSOCK_RUNS"

func vsockRuns() int {
	n, err := strconv.Atoi(os.Getenv(vsockRunsEnv))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// vsockStep names the i-th run (0-based) of the vsock step.
func vsockStep(i int) string {
	if i == 0 {
		return "vsock"
	}
	return fmt.Sprintf("vsock-%d", i+1)
}

// vsockScript is the vsock steps' level-1 part.
func vsockScript() string {
	var b strings.Builder
	// VMM_E2E_VSOCK_L1_THP=never turns level 1's transparent huge pages
	// (and so khugepaged's collapsing under the running guest) off for
	// the vsock steps: the experiment tests/README.md proposes.
	if thp := os.Getenv(vsockL1THPEnv); thp != "" {
		fmt.Fprintf(&b, "\necho %[1]s > /sys/kernel/mm/transparent_hugepage/enabled\necho %[1]s > /sys/kernel/mm/transparent_hugepage/defrag\n", thp)
	}
	for i := range vsockRuns() {
		step := vsockStep(i)
		b.WriteString(fmt.Sprintf(`
x="$DATA/vsockx"
"$x" host-serve "$WORK/v.sock_5000" 1 %[1]d 22 21 > "$WORK/h5000" 2>&1 &
h1=$!
"$x" host-serve "$WORK/v.sock_5001" %[3]d %[2]d 24 23 > "$WORK/h5001" 2>&1 &
h2=$!
"$x" host-connect "$WORK/v.sock" 1234 1 %[1]d 12 11 > "$WORK/h1234" 2>&1 &
h3=$!
"$x" host-connect "$WORK/v.sock" 1235 %[3]d %[2]d 14 13 > "$WORK/h1235" 2>&1 &
h4=$!
# Evidence for a run that hangs (a good one ends in about 80 s): level 1's
# KVM counters twice, 5 s apart, while the guest is stuck, to tell a
# guest spinning in its own code (no exits but external interrupts) from
# one halted or one that exits to level 1's KVM without end.
( sleep 130
for n in 1 2; do
	[ -S "$WORK/v.sock" ] || exit 0
	echo "@@PROBE $(cd /sys/kernel/debug/kvm 2> /dev/null && for f in exits halt_exits halt_wakeup irq_exits irq_injections irq_window_exits nmi_injections pf_taken pf_fixed pf_emulate pf_spurious io_exits mmio_exits insn_emulation request_irq_exits signal_exits; do printf '%%s=%%s ' $f "$(cat $f 2> /dev/null)"; done)"
	sleep 5
done ) &
probe=$!
`, vsockBigBytes, vsockSmallBytes, vsockConns))
		b.WriteString(vmmRun(step, "GUEST_BZIMAGE", guestCmdline+" vmmtest=vsock", "--memory", "1G", "--vsock", `cid=3,uds="$WORK/v.sock"`))
		b.WriteString(strings.ReplaceAll(`
# The host sides end with their streams; give them a moment, then stop
# what is left (a failed run).
i=0
while [ $i -lt 20 ] && { kill -0 $h1 || kill -0 $h2 || kill -0 $h3 || kill -0 $h4; } 2> /dev/null; do sleep 1; i=$((i + 1)); done
kill $h1 $h2 $h3 $h4 $probe 2> /dev/null
for f in h5000 h5001 h1234 h1235; do sed "s/^/$f| /" "$WORK/$f"; done
metric STEP $(grep -h '_ok=' "$WORK/h5000" "$WORK/h5001" "$WORK/h1234" "$WORK/h1235")
[ -e "$WORK/v.sock" ] && metric STEP uds_left=1 || metric STEP uds_left=0
rm -f "$WORK/v.sock" "$WORK/v.sock_5000" "$WORK/v.sock_5001"
`, "STEP", step))
	}
	b.WriteString(vsockSnapshotScript)
	return b.String()
}

// vsockSnapshotScript is the vsock-snapshot step: a guest whose AF_VSOCK
// listeners wait on ports 1234 and 1235 is snapshotted through the API
// (vmm snapshot create) and resumed; the original then serves a host
// connection on 1235, and a clone restored with --vsock-override (the
// original still holds the snapshot's socket while it runs) serves one
// on 1234. Both go through the transport reset the snapshot sends.
const vsockSnapshotScript = `
d="$WORK/vsnap"
mkdir -p "$d"
cat > "$d/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$GUEST_BZIMAGE", "initrd_path": "$GUEST_INITRD", "boot_args": "$GUEST_CMDLINE vmmtest=vsocksnap"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 256},
 "vsock": {"guest_cid": 3, "uds_path": "$d/v.sock"}}
JSON
echo "@@STEP name=vsock-snapshot begin"
vstart=$(uptime_ms)
vrc=0
"$VMM" firecracker --api-sock "$d/a.sock" --config-file "$d/vm.json" < /dev/null > "$d/a.out" 2> "$d/a.err" &
vpid=$!
i=0
while [ $i -lt 1200 ] && ! grep -q 'vsocksnap=ready' "$d/a.out" 2> /dev/null; do sleep 0.1; i=$((i + 1)); done
grep -q 'vsocksnap=ready' "$d/a.out" || vrc=10
"$VMM" snapshot create --api-sock "$d/a.sock" --snapshot-path "$d/vm.snap" --mem-file-path "$d/vm.mem" || vrc=11
timeout 60 "$DATA/vsockx" host-connect "$d/v.sock" 1235 1 1048576 16 15 > "$d/h1235" 2>&1 || vrc=12
timeout 60 "$VMM" restore --snapshot-path "$d/vm.snap" --mem-file-path "$d/vm.mem" < /dev/null > "$d/r.out" 2> "$d/r.err" || true
kill $vpid; wait $vpid
"$VMM" restore --snapshot-path "$d/vm.snap" --mem-file-path "$d/vm.mem" --vsock-override "$d/c.sock" < /dev/null > "$d/c.out" 2> "$d/c.err" &
cpid=$!
i=0
while [ $i -lt 300 ] && [ ! -S "$d/c.sock" ]; do sleep 0.1; i=$((i + 1)); done
timeout 60 "$DATA/vsockx" host-connect "$d/c.sock" 1234 1 1048576 12 11 > "$d/h1234" 2>&1 || vrc=13
kill $cpid; wait $cpid
echo "--- origin"; cat "$d/a.out" "$d/a.err"
echo "--- restore while the origin held its socket"; cat "$d/r.err"
echo "--- clone"; cat "$d/c.out" "$d/c.err"
for f in h1234 h1235; do sed "s/^/$f| /" "$d/$f"; done
metric vsock-snapshot $(grep -h '_ok=' "$d/h1234" "$d/h1235") \
	busy_refused=$(grep -c "$d/v.sock" "$d/r.err") clone_left=$([ -e "$d/c.sock" ] && echo 1 || echo 0)
echo
echo "@@RESULT name=vsock-snapshot rc=$vrc ms=$(( $(uptime_ms) - vstart )) timedout=0"
[ $vrc -eq 0 ] || vmm_error vsock-snapshot "$d/a.err" "$d/c.err"
rm -rf "$d"
`

// devicesModules are the guest modules the scenarios load themselves
// (the standard guest initramfs does not carry them).
var devicesModules = []string{
	"drivers/char/hw_random/virtio-rng.ko",
	"drivers/virtio/virtio_balloon.ko",
	"net/vmw_vsock/vsock.ko",
	"net/vmw_vsock/vmw_vsock_virtio_transport_common.ko",
	"net/vmw_vsock/vmw_vsock_virtio_transport.ko",
}

var devicesFiles struct {
	once sync.Once
	err  error
}

// devicesStep runs the group once, with the extra modules and vsockx.
func devicesStep(t *testing.T, name string) *sandbox.Step {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end scenario: skipped with -short")
	}
	devicesFiles.once.Do(func() {
		// Repeated vsock runs measure failures: none is hidden by a
		// repeat of the group.
		devicesGroup.noRepeat = vsockRuns() > 1
		devicesFiles.err = prepareDevicesGroup()
	})
	require.NoError(t, devicesFiles.err, "files of the devices group")
	return devicesGroup.step(t, name)
}

func prepareDevicesGroup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	k, err := sandbox.Kernel(ctx)
	if err != nil {
		return err
	}
	for _, rel := range devicesModules {
		p, err := k.Module(rel)
		if err != nil {
			return err
		}
		devicesGroup.guestFiles = append(devicesGroup.guestFiles,
			sandbox.File{Name: "/lib/modules/extra/" + path.Base(rel), HostPath: p})
	}
	root, err := sandbox.RepoRoot(ctx)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "vmm-vsockx-")
	if err != nil {
		return err
	}
	bin := filepath.Join(dir, "vsockx")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./tests/guest/vsockx")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build vsockx: %w\n%s", err, strings.TrimSpace(string(out)))
	}
	devicesGroup.guestFiles = append(devicesGroup.guestFiles, sandbox.File{Name: "/bin/vsockx", HostPath: bin, Mode: 0o755})
	devicesGroup.files = append(devicesGroup.files, sandbox.File{Name: "vsockx", HostPath: bin, Mode: 0o755})
	fcapi, err := buildStatic(ctx, root, dir, "./tests/cmd/fcapi")
	if err != nil {
		return err
	}
	devicesGroup.files = append(devicesGroup.files, sandbox.File{Name: "fcapi", HostPath: fcapi, Mode: 0o755})
	return nil
}

// buildStatic builds the command at pkg (a path from the repository
// root) as a static binary in dir and returns its path.
func buildStatic(ctx context.Context, root, dir, pkg string) (string, error) {
	bin := filepath.Join(dir, path.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// A 1 MiB/s limit on a disk holds a guest's dd to 1 MiB/s within 10%.
func TestDiskRateLimit(t *testing.T) {
	s := devicesStep(t, "disk-limit")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	ms, err := strconv.Atoi(s.Values["limit_ms"])
	require.NoError(t, err, "limit_ms\n%s", s.Describe())
	rate := float64(3<<20) / (float64(ms) / 1000)
	t.Logf("metric: disk-limit: 3 MiB in %d ms = %.0f KiB/s (limit 1024 KiB/s)", ms, rate/1024)
	assert.InEpsilon(t, float64(1<<20), rate, 0.10, "guest dd rate through bw=1M\n%s", s.Describe())
}

// The guest's virtio-rng driver binds and reads random bytes.
func TestEntropyDevice(t *testing.T) {
	s := devicesStep(t, "entropy")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	assert.Equal(t, "virtio_rng.0", s.Values["rng_current"], s.Describe())
	assert.Equal(t, "262144", s.Values["rng_bytes"], s.Describe())
	assert.Equal(t, "1", s.Values["rng_differ"], "two reads differ\n%s", s.Describe())
	t.Logf("metric: entropy: 256 KiB in %s ms", s.Values["rng_ms"])
}

// A 256 MiB balloon takes 256 MiB from the guest (MemTotal falls: Linux
// takes inflated pages off its managed count).
func TestBalloonInflates(t *testing.T) {
	s := devicesStep(t, "balloon")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	before, err1 := strconv.Atoi(s.Values["balloon_before_kb"])
	after, err2 := strconv.Atoi(s.Values["balloon_after_kb"])
	require.NoError(t, err1, s.Describe())
	require.NoError(t, err2, s.Describe())
	t.Logf("metric: balloon: MemTotal %d -> %d KiB in %s s", before, after, s.Values["balloon_secs"])
	assert.InDelta(t, 256<<10, before-after, 4<<10, "MemTotal fell by the balloon\n%s", s.Describe())
}

// Inflating the balloon by 256 MiB through the API lowers vmm's RSS by at
// least 200 MiB once the guest has touched its memory (the pages go back
// with MADV_DONTNEED), and deflating gives the guest its memory back.
func TestBalloonInflateLowersRSS(t *testing.T) {
	s := devicesStep(t, "balloon-rss")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	kb := func(k string) int {
		v, err := strconv.Atoi(s.Values[k])
		require.NoError(t, err, "%s\n%s", k, s.Describe())
		return v
	}
	touched, inflated, deflated := kb("rss_touched_kb"), kb("rss_inflated_kb"), kb("rss_deflated_kb")
	before, down, back := kb("memtotal_before_kb"), kb("memtotal_inflated_kb"), kb("memtotal_deflated_kb")
	t.Logf("metric: balloon-rss: VmRSS %d -> %d -> %d KiB; MemTotal %d -> %d -> %d KiB",
		touched, inflated, deflated, before, down, back)
	assert.GreaterOrEqual(t, touched-inflated, 200<<10, "VmRSS fell by at least 200 MiB\n%s", s.Describe())
	assert.InDelta(t, 256<<10, before-down, 4<<10, "MemTotal fell by the balloon\n%s", s.Describe())
	assert.InDelta(t, before, back, 4<<10, "deflating gave the memory back\n%s", s.Describe())
}

// A guest with its balloon inflated is snapshotted; the clone comes back
// with it inflated, says so on GET /balloon, and deflates on a PATCH.
func TestBalloonSnapshotRestore(t *testing.T) {
	s := devicesStep(t, "balloon-snapshot")
	require.Equal(t, 0, s.RC, s.Describe())
	kb := func(k string) int {
		v, err := strconv.Atoi(s.Values[k])
		require.NoError(t, err, "%s\n%s", k, s.Describe())
		return v
	}
	full, inflated, start, deflated := kb("memtotal_full_kb"), kb("memtotal_inflated_kb"), kb("clone_start_kb"), kb("clone_deflated_kb")
	t.Logf("metric: balloon-snapshot: MemTotal %d -> %d KiB; clone %d -> %d KiB; clone GET /balloon %s",
		full, inflated, start, deflated, s.Values["clone_balloon"])
	assert.InDelta(t, 128<<10, full-inflated, 4<<10, "the origin's balloon took 128 MiB")
	assert.InDelta(t, inflated, start, 1024, "the clone comes back with the balloon inflated as far as it was")
	assert.Contains(t, s.Values["clone_balloon"], `"amount_mib":128`)
	assert.InDelta(t, full, deflated, 4<<10, "the clone deflates on PATCH")
}

// 64 MiB each way through a host-initiated and a guest-initiated vsock
// connection arrive with equal checksums.
func TestVsockTransfer64MiB(t *testing.T) {
	s := devicesStep(t, "vsock")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	for _, k := range []string{"guest_serve_1234", "host_connect_1234", "guest_connect_5000", "host_serve_5000"} {
		assert.Equal(t, "1", s.Values[k+"_ok"], "%s (err %s)\n%s", k, s.Values[k+"_err"], s.Describe())
		t.Logf("metric: vsock %s: %s bytes in %s ms", k, s.Values[k+"_in"], s.Values[k+"_ms"])
	}
	assert.Equal(t, "0", s.Values["uds_left"], "vmm removes its socket at exit")
}

// With VMM_E2E_VSOCK_RUNS=N the vsock step runs N times in one level-1
// machine; every run must pass as the first does.
func TestVsockRepeatedRuns(t *testing.T) {
	if vsockRuns() < 2 {
		t.Skipf("set %s=N to repeat the vsock step", vsockRunsEnv)
	}
	for i := 1; i < vsockRuns(); i++ {
		s := devicesStep(t, vsockStep(i))
		if !assert.Equal(t, 0, s.RC, "%s\n%s", vsockStep(i), s.Describe()) {
			continue
		}
		for _, k := range []string{"guest_serve_1234", "host_connect_1234", "guest_connect_5000", "host_serve_5000"} {
			assert.Equal(t, "1", s.Values[k+"_ok"], "%s %s (err %s)", vsockStep(i), k, s.Values[k+"_err"])
		}
		t.Logf("metric: %s: 64 MiB host->guest in %s ms, guest->host in %s ms", vsockStep(i), s.Values["host_connect_1234_ms"], s.Values["guest_connect_5000_ms"])
	}
}

// A VM with a vsock device is snapshotted: the original goes on and
// serves a new host connection, and a clone restored on another socket
// (vsock_override) serves one too, each through the transport reset the
// snapshot sent; a restore onto the socket the original still holds is
// refused, naming it.
func TestVsockSnapshotRestore(t *testing.T) {
	s := devicesStep(t, "vsock-snapshot")
	require.Equal(t, 0, s.RC, s.Describe())
	assert.Equal(t, "1", s.Values["host_connect_1235_ok"], "the original after the snapshot (err %s)\n%s", s.Values["host_connect_1235_err"], s.Describe())
	assert.Equal(t, "1", s.Values["host_connect_1234_ok"], "the clone (err %s)\n%s", s.Values["host_connect_1234_err"], s.Describe())
	assert.NotEqual(t, "0", s.Values["busy_refused"], "a restore onto the original's socket names it")
	assert.Equal(t, "0", s.Values["clone_left"], "the clone removes its socket at exit")
}

// 32 host-initiated and 32 guest-initiated connections at once all
// complete intact.
func TestVsock32Connections(t *testing.T) {
	s := devicesStep(t, "vsock")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	want := strconv.Itoa(vsockConns)
	for _, k := range []string{"guest_serve_1235", "host_connect_1235", "guest_connect_5001", "host_serve_5001"} {
		assert.Equal(t, want, s.Values[k+"_ok"], "%s (err %s)\n%s", k, s.Values[k+"_err"], s.Describe())
	}
}
