package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/tests/sandbox"
)

// The hostile guest: tests/guest/hostile drives the first disk's and the
// NIC's virtio-mmio devices itself, through /dev/mem, with rings and buffers in
// a RAM region the kernel is told to leave alone (memmap=16M$0x10000000;
// Debian's CONFIG_STRICT_DEVMEM and CONFIG_IO_STRICT_DEVMEM allow /dev/mem
// on reserved RAM and on MMIO no driver has claimed, so the guest script
// unbinds those devices from virtio-mmio first). The second disk stays with
// the kernel's virtio_blk driver as a witness. Each case breaks one rule
// of virtio 1.2; hostileWant says what the device must do about it.

// hostileRegion is the memmap= region: 16 MiB at 256 MiB, inside the
// default 512 MiB of guest RAM.
const (
	hostileRegion  = "0x10000000"
	hostileRAMEnd  = "0x20000000"
	hostileImgSize = 1 << 20
)

const hostileGuest = `set -e
# Kernel messages on the console could land inside the program's result
# lines (seen: the clocksource watchdog's); keep only emergencies.
dmesg -n 1
# The platform device at each window, from the resources ACPI gave it.
dev_at() { awk -v r="$1" '$1 == r { print $3; exit }' /proc/iomem; }
target=$(dev_at d0000000-d0000fff)
witness=$(dev_at d0001000-d0001fff)
wdisk=$(ls /sys/bus/platform/devices/$witness/virtio*/block/)
echo "@@GUEST target=$target witness=$witness witness_disk=$wdisk"
nic=$(dev_at d0002000-d0002fff)
# The kernel's drivers let go of the attacked devices (and reset them).
echo "$target" > /sys/bus/platform/drivers/virtio-mmio/unbind
echo "$nic" > /sys/bus/platform/drivers/virtio-mmio/unbind
/bin/hostile -window 0xd0000000 -net-window 0xd0002000 -region ` + hostileRegion + ` -region-size 0x1000000 \
	-ram-end ` + hostileRAMEnd + ` -witness /dev/$wdisk
`

var hostileGroup = &group{
	name:         "hostile",
	timeout:      5 * time.Minute,
	stepTimeout:  180 * time.Second,
	guestScripts: map[string]string{"hostile": hostileGuest},
	// `\$` keeps level 1's shell from expanding "$0x1..." inside the
	// double-quoted command line; the kernel gets memmap=16M$0x10000000.
	// Level 1 broadcasts ARP requests (54 bytes with the virtio-net
	// header) on the NIC's TAP for the receive cases.
	script: `before=$(md5sum < "$DATA/target.img")
tunctl -t hst0 > /dev/null
ip addr add 172.31.0.1/24 dev hst0
ip link set hst0 up
( while :; do arping -c 1 -w 1 -I hst0 172.31.0.2 > /dev/null 2>&1; sleep 0.2; done ) &
sender=$!
` + vmmRun("hostile", "GUEST_BZIMAGE", guestCmdline+` memmap=16M\$`+hostileRegion+` vmmtest=hostile`,
		"--disk", `"$DATA/target.img"`, "--disk", `"$DATA/witness.img,ro"`, "--net", "tap=hst0") + `
kill $sender
after=$(md5sum < "$DATA/target.img")
metric hostile target_unchanged=$([ "$before" = "$after" ] && echo 1 || echo 0)
metric hostile reset_logs=$(grep -c 'virtio device needs reset' "$WORK/hostile.err") \
	refused_logs=$(grep -c 'virtio driver features refused' "$WORK/hostile.err") \
	net_logs=$(grep -c 'virtio-net: ' "$WORK/hostile.err") \
	log_lines=$(grep -c . "$WORK/hostile.err")
sed 's/^/@@VMMLOG /' "$WORK/hostile.err"
`,
}

var (
	hostileOnce sync.Once
	hostileBin  string
	hostileErr  error
	hostileImgs [2][]byte // target, witness
)

// hostileGroupFor builds the guest program and the two disk images once.
func hostileGroupFor(t *testing.T) *group {
	t.Helper()
	hostileOnce.Do(func() {
		hostileBin, hostileErr = buildGuestProgram("./tests/guest/hostile")
		rng := rand.NewChaCha8([32]byte{'h', 'o', 's', 't', 'i', 'l', 'e'})
		for i := range hostileImgs {
			hostileImgs[i] = make([]byte, hostileImgSize)
			_, _ = rng.Read(hostileImgs[i])
		}
	})
	require.NoError(t, hostileErr)
	hostileGroup.guestFiles = []sandbox.File{{Name: "/bin/hostile", HostPath: hostileBin, Mode: 0o755}}
	hostileGroup.files = []sandbox.File{
		{Name: "target.img", Data: hostileImgs[0]},
		{Name: "witness.img", Data: hostileImgs[1]},
	}
	return hostileGroup
}

// buildGuestProgram builds pkg as a static binary (the guest has no C
// library) in a directory removed at the end of the test process.
func buildGuestProgram(pkg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := sandbox.RepoRoot(ctx)
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "vmm-guest-bin-")
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, strings.TrimSpace(string(msg)))
	}
	return out, nil
}

// hostileWant is what each case must show, beyond what every case must:
// result=done (the program could run it), witness=ok (the other disk read
// the same bytes afterwards) and recovered=1 (after a reset and a new
// handshake the device served a good read).
//
// needs_reset=1 where the driver broke the ring rules (virtio 1.2 §2.1.2:
// the device stops and says so); a bad block request is instead answered
// with a status byte (§5.2.6: 1 VIRTIO_BLK_S_IOERR, 2 VIRTIO_BLK_S_UNSUPP)
// and the device keeps going. Its used length counts the status byte only
// when every writable byte before it was written (§2.7.8.2: never more
// than was written), so it is 0 for a failed request with read buffers.
var hostileWant = map[string]map[string]string{
	"desc_loop":                  {"needs_reset": "1", "completed": "0"},
	"chain_longer_than_queue":    {"needs_reset": "1", "completed": "0"},
	"indirect_in_indirect":       {"needs_reset": "1", "completed": "0"},
	"indirect_not_negotiated":    {"needs_reset": "1", "completed": "0"},
	"buffer_outside_ram":         {"needs_reset": "1", "completed": "0"},
	"buffer_in_mmio_hole":        {"needs_reset": "1", "completed": "0"},
	"buffer_straddles_ram_end":   {"needs_reset": "1", "completed": "0"},
	"buffer_wraps_past_2_64":     {"needs_reset": "1", "completed": "0"},
	"indirect_table_outside_ram": {"needs_reset": "1", "completed": "0"},
	"avail_idx_jump":             {"needs_reset": "1", "completed": "0"},
	"avail_head_out_of_range":    {"needs_reset": "1", "completed": "0"},
	"queue_size_not_power_of_2":  {"needs_reset": "1", "num_max": "256"},
	"queue_size_above_max":       {"needs_reset": "1"},
	"queue_size_zero":            {"needs_reset": "1"},
	// A queue made ready before its addresses keeps the reset values
	// (address 0, guest RAM) since a ready queue's registers are
	// read-only (§4.2.2.2): the request in the driver's own rings is
	// never seen. Nothing outside guest RAM is at stake.
	"queue_ready_before_addresses": {"needs_reset": "0", "completed": "0"},
	// §4.2.2: notifications name queues; one that does not exist is
	// ignored, and the device keeps serving without a reset.
	"notify_missing_queue": {"needs_reset": "0", "served_after": "1"},
	"config_space_edges": {"needs_reset": "0", "served_after": "1",
		"capacity": "2048", "halves_agree": "1", "bytes_agree": "1", "unaligned_16": "8",
		"past_end_zero": "1", "capacity_unchanged": "1", "narrow_reads": "0x0", "status_unchanged": "1"},
	"failed_then_renegotiate":    {"needs_reset": "0", "failed_bit": "1"},
	"features_without_version_1": {"needs_reset": "0", "features_ok": "0"},
	// §2.4: once the reset completes, the device touches no buffer of
	// the old rings.
	"reset_during_io":          {"written_after_reset": "0", "status_after_reset": "0"},
	"blk_short_header":         {"needs_reset": "0", "completed": "1", "status": "1", "used_len": "0"},
	"blk_sector_past_end":      {"needs_reset": "0", "completed": "1", "status": "1", "used_len": "0"},
	"blk_sector_straddles_end": {"needs_reset": "0", "completed": "1", "status": "1", "used_len": "0"},
	"blk_sector_huge":          {"needs_reset": "0", "completed": "1", "status": "1", "used_len": "0"},
	"blk_read_into_readable":   {"needs_reset": "0", "completed": "1", "status": "1", "used_len": "1"},
	"blk_write_from_writable":  {"needs_reset": "0", "completed": "1", "status": "1", "used_len": "0"},
	"blk_partial_sector":       {"needs_reset": "0", "completed": "1", "status": "1", "used_len": "0"},
	"blk_unknown_type":         {"needs_reset": "0", "completed": "1", "status": "2", "used_len": "0"},
	// No device-writable byte: no status can be returned (§2.7.5.1).
	"blk_no_status": {"needs_reset": "1", "completed": "0"},
	// §5.1.6.2: transmit has no status: an oversized frame is dropped
	// and its chain returned with nothing written.
	"net_tx_oversized": {"needs_reset": "0", "completed": "1", "used_len": "0", "sent_after": "1"},
	// Receive buffers smaller than every frame (without MRG_RXBUF the
	// driver SHOULD post 1526 bytes, §5.1.6.3.1): frames may be cut or
	// dropped, never written past a buffer.
	"net_rx_small_buffers": {"needs_reset": "0", "within_buffer": "1", "guard_bytes_written": "0"},
}

var hostileCaseRE = regexp.MustCompile(`@@GUEST case=(\S+) (.*)$`)

// hostileCases parses the step's "@@GUEST case=NAME k=v..." lines.
func hostileCases(s *sandbox.Step) map[string]map[string]string {
	got := map[string]map[string]string{}
	for _, l := range s.Console {
		m := hostileCaseRE.FindStringSubmatch(l.Text)
		if m == nil {
			continue
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(m[2]) {
			if k, v, ok := strings.Cut(f, "="); ok {
				kv[k] = v
			}
		}
		got[m[1]] = kv
	}
	return got
}

func TestHostileGuest(t *testing.T) {
	g := hostileGroupFor(t)
	s := g.step(t, "hostile")
	// vmm survived every case: the guest went on to power off normally.
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	require.Equal(t, "done", s.Values["hostile"], "the hostile program finished\n%s", s.Describe())
	sum := sha256.Sum256(hostileImgs[0][:4096])
	assert.Equal(t, hex.EncodeToString(sum[:]), s.Values["target_sha256"], "first read of the attacked disk")
	sum = sha256.Sum256(hostileImgs[1])
	assert.Equal(t, hex.EncodeToString(sum[:]), s.Values["witness_sha256"], "first read of the witness disk")

	got := hostileCases(s)
	resets := 0
	for name, want := range hostileWant {
		t.Run(name, func(t *testing.T) {
			kv, ok := got[name]
			require.True(t, ok, "case %s did not report", name)
			assert.Equal(t, "done", kv["result"], "case ran: %v", kv)
			assert.Equal(t, "ok", kv["witness"], "the other disk still reads correct data: %v", kv)
			assert.Equal(t, "1", kv["recovered"], "a reset brings the device back: %v", kv)
			for k, v := range want {
				assert.Equal(t, v, kv[k], "%s: %v", k, kv)
			}
			if name == "net_rx_small_buffers" {
				assert.NotEqual(t, "0", kv["rx_frames"], "level 1's frames reached the guest's buffers: %v", kv)
			}
		})
		if want["needs_reset"] == "1" {
			resets++
		}
	}
	assert.Len(t, got, len(hostileWant), "cases reported")
	// One log line per broken device, no more; the refused feature
	// negotiation logs one; virtio-net logs the first of each kind of
	// dropped or cut frame (the oversized one, and at most two kinds of
	// cut receive frames). Nothing else.
	logs := vmmLogLines(g.run(t))
	assert.Equal(t, fmt.Sprint(resets), s.Values["reset_logs"], "'needs reset' lines on vmm's stderr:\n%s", logs)
	assert.Equal(t, "1", s.Values["refused_logs"], "'features refused' lines:\n%s", logs)
	netLogs, err := strconv.Atoi(s.Values["net_logs"])
	require.NoError(t, err, "net_logs")
	assert.True(t, netLogs >= 1 && netLogs <= 3, "virtio-net lines:\n%s", logs)
	assert.Equal(t, fmt.Sprint(resets+1+netLogs), s.Values["log_lines"], "vmm's stderr:\n%s", logs)
	assert.Equal(t, "1", s.Values["target_unchanged"], "no case wrote the attacked disk's image")
}

// vmmLogLines returns the "@@VMMLOG" lines the level-1 script printed.
func vmmLogLines(res *sandbox.Result) string {
	var b strings.Builder
	for _, l := range res.Console {
		if rest, ok := strings.CutPrefix(l.Text, "@@VMMLOG "); ok {
			b.WriteString(rest + "\n")
		}
	}
	return b.String()
}
