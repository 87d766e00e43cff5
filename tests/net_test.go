package tests

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/tests/sandbox"
)

// Network scenarios: virtio-net on TAP devices in level 1.
//
// The 172.30.0.0/24 and 172.30.1.0/24 addresses below live only on the TAP
// and bridge links inside the sandbox's level-1 machine, a QEMU VM without
// a network of its own: nothing here reaches a real network.
const (
	netGuestMAC    = "02:00:00:00:00:42"
	netTransferMiB = 64
)

// netGroup boots level 1 once for both scenarios:
//
//   - net-transfer: one guest on tap0 (made persistent beforehand, as an
//     administrator would, with 172.30.0.1/24 on the level-1 side) checks
//     its MAC, pings level 1, then moves 64 MiB of random data each way
//     with busybox nc; both sides' checksums are compared.
//   - net-bridge: two guests on tapa and tapb, both ports of bridge br0,
//     ping each other.
var netGroup = &group{
	name:        "net",
	timeout:     14 * time.Minute,
	stepTimeout: 300 * time.Second,
	guestScripts: map[string]string{
		"nettransfer": netTransferGuest,
		"netbridge":   netBridgeGuest,
	},
	script: netTransferL1 + "\n" + netBridgeL1,
}

// Busybox nc exits as soon as its standard input ends, even while the
// other side still sends. A receiving nc therefore reads its standard
// input from a FIFO that a sleeping writer holds open.
const netMS = `ms() {
	local up _
	read -r up _ < /proc/uptime
	echo $(( ${up%.*} * 1000 + 1${up#*.} * 10 - 1000 ))
}
`

const netTransferGuest = netMS + `
echo "@@GUEST mac=$(cat /sys/class/net/eth0/address)"
ip addr add 172.30.0.2/24 dev eth0
ip link set eth0 up
if ping -c 3 -W 5 172.30.0.1; then
	echo "@@GUEST ping=ok"
else
	echo "@@GUEST ping=fail"
fi

# Each direction gives up after vmmnettimeout= seconds (240 unless the
# command line says otherwise: the soak's 256 MiB need longer).
nt=240
for arg in $(cat /proc/cmdline); do
	case $arg in vmmnettimeout=*) nt=${arg#*=} ;; esac
done

# Level 1 -> guest: the server in level 1 sends its file on connection.
mkfifo /tmp/hold
sleep 3600 > /tmp/hold &
holder=$!
t0=$(ms)
timeout $nt nc 172.30.0.1 5002 < /tmp/hold > /tmp/in.bin
t1=$(ms)
kill $holder
echo "@@GUEST in_bytes=$(wc -c < /tmp/in.bin) in_ms=$((t1 - t0)) in_md5=$(md5sum < /tmp/in.bin | cut -d' ' -f1)"

# Guest -> level 1: send the same bytes back.
t0=$(ms)
timeout $nt nc 172.30.0.1 5001 < /tmp/in.bin
t1=$(ms)
echo "@@GUEST out_ms=$((t1 - t0))"
# Which CPUs took the NIC's interrupts (per CPU, "/" between): a vCPU
# that takes none may run for minutes without an exit to vmm.
echo "@@GUEST net_irqs=$(awk -v n=$(nproc) '/virtio/ { for (i = 2; i <= n + 1; i++) c[i] += $i } END { s = ""; for (i = 2; i <= n + 1; i++) s = s (i > 2 ? "/" : "") c[i] + 0; print s }' /proc/interrupts)"
`

var netTransferL1 = fmt.Sprintf(`
tunctl -t tap0 > /dev/null
ip addr add 172.30.0.1/24 dev tap0
ip link set tap0 up
dd if=/dev/urandom of="$WORK/send.bin" bs=1M count=%d 2> /dev/null
sent_md5=$(md5sum < "$WORK/send.bin" | cut -d' ' -f1)
nc -l -p 5002 < "$WORK/send.bin" &
sender=$!
mkfifo "$WORK/hold"
sleep 3600 > "$WORK/hold" &
holder=$!
nc -l -p 5001 < "$WORK/hold" > "$WORK/back.bin" &
receiver=$!
%s --net tap=tap0,mac=%s
# The receiver ends when the guest closes; give it a moment to drain.
i=0
while kill -0 $receiver 2> /dev/null && [ $i -lt 10 ]; do sleep 1; i=$((i + 1)); done
kill $sender $holder $receiver 2> /dev/null
metric net-transfer sent_md5=$sent_md5 back_bytes=$(wc -c < "$WORK/back.bin") back_md5=$(md5sum < "$WORK/back.bin" | cut -d' ' -f1)
tunctl -d tap0 > /dev/null
`, netTransferMiB, vmmRun("net-transfer", "GUEST_BZIMAGE", guestCmdline+" vmmtest=nettransfer"), netGuestMAC)

// netBridgeGuest reads its address and its peer's from the kernel command
// line, pings the peer until it answers, then stays up a while so that the
// peer's pings are answered too.
const netBridgeGuest = `
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	netip=*) addr=${arg#netip=} ;;
	netpeer=*) peer=${arg#netpeer=} ;;
	esac
done
ip addr add "$addr/24" dev eth0
ip link set eth0 up
result=fail
tries=0
while [ $tries -lt 120 ]; do
	tries=$((tries + 1))
	if ping -c 1 -W 1 "$peer" > /dev/null 2>&1; then
		result=ok
		break
	fi
done
echo "@@GUEST ping=$result tries=$tries"
ping -c 3 "$peer"
sleep 10
`

// bridgeSetupL1 makes bridge br0 with ports tapa and tapb. The bridge
// module is not among level 1's modules: it comes in $DATA and is loaded
// here unless the kernel already has bridges (direct mode).
const bridgeSetupL1 = `
if ! ip link add br0 type bridge 2> /dev/null; then
	for m in llc stp bridge; do insmod "$DATA/$m.ko"; done
	ip link add br0 type bridge
fi
ip addr add 172.30.1.1/24 dev br0
ip link set br0 up
for t in tapa tapb; do
	tunctl -t $t > /dev/null
	ip link set $t master br0
	ip link set $t up
done
`

var netBridgeL1 = bridgeSetupL1 + `
# Guest A runs in the background, its console kept in a file; guest B is
# the step.
timeout -k 5 "$STEP_TIMEOUT" "$VMM" run --kernel "$GUEST_BZIMAGE" --initrd "$GUEST_INITRD" \
	--cmdline "$GUEST_CMDLINE vmmtest=netbridge netip=172.30.1.2 netpeer=172.30.1.3" \
	--net tap=tapa,mac=02:00:00:00:01:02 < /dev/null > "$WORK/guest-a.out" 2>&1 &
guest_a=$!
` + vmmRun("net-bridge", "GUEST_BZIMAGE", guestCmdline+" vmmtest=netbridge netip=172.30.1.3 netpeer=172.30.1.2",
	"--net", "tap=tapb,mac=02:00:00:00:01:03") + `
wait $guest_a
rc_a=$?
sed 's/^/guest-a| /' "$WORK/guest-a.out"
metric net-bridge peer_rc=$rc_a peer_ping=$(sed -n 's/.*@@GUEST ping=\([a-z]*\).*/\1/p' "$WORK/guest-a.out" | head -n 1)
`

// bridgeModules are the level-1 kernel's bridge module and its
// dependencies, in load order.
var bridgeModules = []string{"net/llc/llc.ko", "net/802/stp.ko", "net/bridge/bridge.ko"}

var netFiles struct {
	once sync.Once
	err  error
}

// netStep runs the group once, with the bridge modules in $DATA.
func netStep(t *testing.T, name string) *sandbox.Step {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end scenario: skipped with -short")
	}
	netFiles.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		k, err := sandbox.Kernel(ctx)
		if err != nil {
			netFiles.err = err
			return
		}
		for _, rel := range bridgeModules {
			p, err := k.Module(rel)
			if err != nil {
				netFiles.err = err
				return
			}
			netGroup.files = append(netGroup.files, sandbox.File{Name: path.Base(rel), HostPath: p})
		}
	})
	require.NoError(t, netFiles.err, "bridge modules for level 1")
	return netGroup.step(t, name)
}

func TestNetMACAndPing(t *testing.T) {
	s := netStep(t, "net-transfer")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	assert.Equal(t, netGuestMAC, s.Values["mac"], "eth0's address in the guest\n%s", s.Describe())
	assert.Equal(t, "ok", s.Values["ping"], "guest pings level 1\n%s", s.Describe())
}

func TestNetTransfer64MiB(t *testing.T) {
	s := netStep(t, "net-transfer")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	const size = netTransferMiB << 20
	require.NotEmpty(t, s.Values["sent_md5"], s.Describe())
	assert.Equal(t, strconv.Itoa(size), s.Values["in_bytes"], "level 1 -> guest bytes\n%s", s.Describe())
	assert.Equal(t, s.Values["sent_md5"], s.Values["in_md5"], "level 1 -> guest checksum")
	assert.Equal(t, strconv.Itoa(size), s.Values["back_bytes"], "guest -> level 1 bytes\n%s", s.Describe())
	assert.Equal(t, s.Values["sent_md5"], s.Values["back_md5"], "guest -> level 1 checksum")
	for _, dir := range []struct{ name, key string }{{"level 1 -> guest", "in_ms"}, {"guest -> level 1", "out_ms"}} {
		ms, err := strconv.Atoi(s.Values[dir.key])
		if err != nil || ms <= 0 {
			t.Errorf("%s: no duration (%s=%q)", dir.name, dir.key, s.Values[dir.key])
			continue
		}
		t.Logf("metric: %s: %d MiB in %.2f s = %.1f MiB/s (%.0f Mbit/s)", dir.name, netTransferMiB,
			float64(ms)/1000, float64(netTransferMiB)*1000/float64(ms), float64(size)*8/1e6*1000/float64(ms))
	}
}

func TestNetBridgePing(t *testing.T) {
	s := netStep(t, "net-bridge")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	assert.Equal(t, "ok", s.Values["ping"], "guest B pings guest A across br0\n%s", s.Describe())
	assert.Equal(t, "0", s.Values["peer_rc"], "guest A's vmm exit status\n%s", s.Describe())
	assert.Equal(t, "ok", s.Values["peer_ping"], "guest A pings guest B across br0\n%s", s.Describe())
}
