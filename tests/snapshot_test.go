package tests

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The snapshot group: Debian's kernel with an initramfs whose script
// prints "counter N" every second, booted through the API (`vmm
// firecracker --api-sock`), paused (the counter stops), snapshotted
// (`vmm snapshot create`, PATCH /vm and PUT /snapshot/create), resumed (it
// goes on), stopped; then two `vmm restore` processes from the one
// snapshot, running at once, must each go on from the paused count, not
// from 1. With 1 and 2 vCPUs. No disk or NIC: virtio devices have no
// snapshot state yet (a snapshot of a VM with one is refused).
var snapshotGroup = &group{
	name:        "snapshot",
	timeout:     12 * time.Minute,
	stepTimeout: 150 * time.Second,
	guestScripts: map[string]string{
		"counter": `i=0
while [ $i -lt 600 ]; do i=$((i+1)); echo "counter $i"; sleep 1; done
`,
	},
	script: snapshotScript + `
snapstep snapshot-1cpu 1
snapstep snapshot-2cpu 2
`,
}

// snapshotScript is the level-1 side: snapstep NAME CPUS prints one
// step's markers around the whole sequence and its numbers as metrics.
const snapshotScript = `
last_count() { grep -o 'counter [0-9]*' "$1" | tail -n 1 | cut -d' ' -f2; }
first_count() { grep -o 'counter [0-9]*' "$1" | head -n 1 | cut -d' ' -f2; }
# wait_count FILE N SECONDS: until FILE shows counter N or more.
wait_count() {
	local n=0 c
	while [ $n -lt $(( $3 * 10 )) ]; do
		c=$(last_count "$1"); [ -n "$c" ] && [ "$c" -ge "$2" ] && return 0
		sleep 0.1; n=$((n+1))
	done
	return 1
}
snapstep() {
	local step=$1 cpus=$2 d="$WORK/$1" rc=0
	mkdir -p "$d"
	cat > "$d/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$GUEST_BZIMAGE", "initrd_path": "$GUEST_INITRD", "boot_args": "$(guest_cmdline counter) $GUEST_QUIET"},
 "machine-config": {"vcpu_count": $cpus, "mem_size_mib": 256}}
JSON
	echo "@@STEP name=$step begin"
	local start=$(uptime_ms)
	"$VMM" firecracker --api-sock "$d/a.sock" --config-file "$d/vm.json" < /dev/null > "$d/a.out" 2> "$d/a.err" &
	local pid=$!
	wait_count "$d/a.out" 3 100 || { rc=10; echo "@@ERROR name=$step the guest never counted to 3"; }
	local t0=$(uptime_ms)
	"$VMM" snapshot create --api-sock "$d/a.sock" --snapshot-path "$d/vm.snap" --mem-file-path "$d/vm.mem" --leave-paused || rc=11
	local t1=$(uptime_ms)
	local paused=$(last_count "$d/a.out")
	sleep 3
	local after_pause=$(last_count "$d/a.out")
	"$VMM" snapshot resume --api-sock "$d/a.sock" || rc=12
	wait_count "$d/a.out" $(( paused + 2 )) 20 || rc=13
	local resumed=$(last_count "$d/a.out")
	kill "$pid"; wait "$pid"
	local r1start=$(uptime_ms)
	"$VMM" restore --snapshot-path "$d/vm.snap" --mem-file-path "$d/vm.mem" < /dev/null > "$d/r1.out" 2> "$d/r1.err" &
	local p1=$!
	"$VMM" restore --snapshot-path "$d/vm.snap" --mem-file-path "$d/vm.mem" < /dev/null > "$d/r2.out" 2> "$d/r2.err" &
	local p2=$!
	wait_count "$d/r1.out" $(( paused + 3 )) 30 || rc=14
	wait_count "$d/r2.out" $(( paused + 3 )) 30 || rc=15
	local c1first=$(first_count "$d/r1.out") c2first=$(first_count "$d/r2.out")
	local c1last=$(last_count "$d/r1.out") c2last=$(last_count "$d/r2.out")
	local pss1=$(awk '/^Pss:/ {print $2}' /proc/$p1/smaps_rollup 2>/dev/null)
	local pss2=$(awk '/^Pss:/ {print $2}' /proc/$p2/smaps_rollup 2>/dev/null)
	local rss1=$(awk '/^Rss:/ {print $2}' /proc/$p1/smaps_rollup 2>/dev/null)
	kill "$p1" "$p2"; wait "$p1" "$p2"
	echo "--- origin"; cat "$d/a.out"; cat "$d/a.err"
	echo "--- clone 1"; cat "$d/r1.out"; cat "$d/r1.err"
	echo "--- clone 2"; cat "$d/r2.out"; cat "$d/r2.err"
	local memkb=$(du -k "$d/vm.mem" | cut -f1)
	metric "$step" paused=$paused after_pause=$after_pause resumed=$resumed \
		clone1_first=$c1first clone1_last=$c1last clone2_first=$c2first clone2_last=$c2last \
		snapshot_ms=$(( t1 - t0 )) mem_file_kb=$memkb state_bytes=$(wc -c < "$d/vm.snap") \
		clone1_rss_kb=$rss1 clone1_pss_kb=$pss1 clone2_pss_kb=$pss2
	rm -f "$d/vm.mem"
	local end=$(uptime_ms)
	echo
	echo "@@RESULT name=$step rc=$rc ms=$(( end - start )) timedout=0"
}
`

func snapshotStep(t *testing.T, name string) map[string]int {
	s := snapshotGroup.step(t, name)
	require.Equal(t, 0, s.RC, s.Describe())
	v := map[string]int{}
	for _, k := range []string{"paused", "after_pause", "resumed", "clone1_first", "clone1_last",
		"clone2_first", "clone2_last", "snapshot_ms", "mem_file_kb", "state_bytes",
		"clone1_rss_kb", "clone1_pss_kb", "clone2_pss_kb"} {
		n, err := strconv.Atoi(strings.TrimSpace(s.Values[k]))
		require.NoError(t, err, "metric %s=%q\n%s", k, s.Values[k], s.Describe())
		v[k] = n
	}
	t.Logf("%s: %v", name, v)
	return v
}

func checkSnapshotCounts(t *testing.T, v map[string]int) {
	assert.Equal(t, v["paused"], v["after_pause"], "the counter stops while paused")
	assert.Greater(t, v["resumed"], v["paused"], "the counter goes on after resume")
	for _, c := range []string{"clone1", "clone2"} {
		// The guest printed "counter paused" before the pause; a restored
		// guest prints paused+1 next (or paused+2 if a second passed on
		// its clock in between, which should not happen).
		assert.Equal(t, v["paused"]+1, v[c+"_first"], fmt.Sprintf("%s goes on from the snapshot's count, not from 1", c))
		assert.Greater(t, v[c+"_last"], v[c+"_first"], c+" keeps counting: its timers fire")
	}
}

func TestSnapshotRestoreLinux1CPU(t *testing.T) {
	checkSnapshotCounts(t, snapshotStep(t, "snapshot-1cpu"))
}

func TestSnapshotRestoreLinux2CPUs(t *testing.T) {
	checkSnapshotCounts(t, snapshotStep(t, "snapshot-2cpu"))
}
