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
	},
	script: `
dd if=/dev/zero of="$WORK/limit.img" bs=1M count=16 2> /dev/null
` + vmmRun("disk-limit", "GUEST_BZIMAGE", guestCmdline+" vmmtest=disklimit", "--disk", `"$WORK/limit.img,bw=1M"`) + `
` + vmmRun("entropy", "GUEST_BZIMAGE", guestCmdline+" vmmtest=entropy", "--entropy", "on") + `
` + vmmRun("balloon", "GUEST_BZIMAGE", guestCmdline+" vmmtest=balloon", "--memory", "512M", "--balloon", "256") + `
` + vsockScript(),
}

// vsockE2EEnv turns the vsock scenario on. It is off by default: its first
// runs in the sandbox hung the guest as soon as its vsock driver bound (the
// vCPU spun 6m42s inside a module with interrupts off, no exit after an
// InterruptACK write; vmm's stop report), and the cause is not found yet.
// The device's own tests (devices/virtio/vsock) play the driver and pass.
const vsockE2EEnv = "VMM_E2E_VSOCK"

// vsockScript is the vsock step's level-1 part, when vsockE2EEnv is set.
func vsockScript() string {
	if os.Getenv(vsockE2EEnv) == "" {
		return ""
	}
	return fmt.Sprintf(`
x="$DATA/vsockx"
"$x" host-serve "$WORK/v.sock_5000" 1 %[1]d 22 21 > "$WORK/h5000" 2>&1 &
h1=$!
"$x" host-serve "$WORK/v.sock_5001" %[3]d %[2]d 24 23 > "$WORK/h5001" 2>&1 &
h2=$!
"$x" host-connect "$WORK/v.sock" 1234 1 %[1]d 12 11 > "$WORK/h1234" 2>&1 &
h3=$!
"$x" host-connect "$WORK/v.sock" 1235 %[3]d %[2]d 14 13 > "$WORK/h1235" 2>&1 &
h4=$!
`, vsockBigBytes, vsockSmallBytes, vsockConns) +
		vmmRun("vsock", "GUEST_BZIMAGE", guestCmdline+" vmmtest=vsock", "--memory", "1G", "--vsock", `cid=3,uds="$WORK/v.sock"`) + `
# The host sides end with their streams; give them a moment, then stop
# what is left (a failed run).
i=0
while [ $i -lt 20 ] && { kill -0 $h1 || kill -0 $h2 || kill -0 $h3 || kill -0 $h4; } 2> /dev/null; do sleep 1; i=$((i + 1)); done
kill $h1 $h2 $h3 $h4 2> /dev/null
for f in h5000 h5001 h1234 h1235; do sed "s/^/$f| /" "$WORK/$f"; done
metric vsock $(grep -h '_ok=' "$WORK/h5000" "$WORK/h5001" "$WORK/h1234" "$WORK/h1235")
[ -e "$WORK/v.sock" ] && metric vsock uds_left=1 || metric vsock uds_left=0
`
}

func skipUnlessVsock(t *testing.T) {
	t.Helper()
	if os.Getenv(vsockE2EEnv) == "" {
		t.Skipf("set %s=1: the guest hangs once its vsock driver binds (tests/devices_test.go, vsockE2EEnv)", vsockE2EEnv)
	}
}

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
	devicesFiles.once.Do(func() { devicesFiles.err = prepareDevicesGroup() })
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
	return nil
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

// 64 MiB each way through a host-initiated and a guest-initiated vsock
// connection arrive with equal checksums.
func TestVsockTransfer64MiB(t *testing.T) {
	skipUnlessVsock(t)
	s := devicesStep(t, "vsock")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	for _, k := range []string{"guest_serve_1234", "host_connect_1234", "guest_connect_5000", "host_serve_5000"} {
		assert.Equal(t, "1", s.Values[k+"_ok"], "%s (err %s)\n%s", k, s.Values[k+"_err"], s.Describe())
		t.Logf("metric: vsock %s: %s bytes in %s ms", k, s.Values[k+"_in"], s.Values[k+"_ms"])
	}
	assert.Equal(t, "0", s.Values["uds_left"], "vmm removes its socket at exit")
}

// 32 host-initiated and 32 guest-initiated connections at once all
// complete intact.
func TestVsock32Connections(t *testing.T) {
	skipUnlessVsock(t)
	s := devicesStep(t, "vsock")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	want := strconv.Itoa(vsockConns)
	for _, k := range []string{"guest_serve_1235", "host_connect_1235", "guest_connect_5001", "host_serve_5001"} {
		assert.Equal(t, want, s.Values[k+"_ok"], "%s (err %s)\n%s", k, s.Values[k+"_err"], s.Describe())
	}
}
