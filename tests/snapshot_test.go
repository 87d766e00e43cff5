package tests

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/tests/sandbox"
)

// The snapshot group: Debian's kernel with an initramfs whose script
// prints "counter N" every second, booted through the API (`vmm
// firecracker --api-sock`), paused (the counter stops), snapshotted
// (`vmm snapshot create`, PATCH /vm and PUT /snapshot/create), resumed (it
// goes on), stopped; then two `vmm restore` processes from the one
// snapshot, running at once, must each go on from the paused count, not
// from 1, each with a new VM generation ID. With 1, 2 and 4 vCPUs; the
// devices step adds a disk and a NIC.
var snapshotGroup = &group{
	name:        "snapshot",
	timeout:     12 * time.Minute,
	stepTimeout: 150 * time.Second,
	guestScripts: map[string]string{
		// Each second, with the count: a digest of the VM generation ID,
		// read where the DSDT's \_SB_.VGEN.ADDR says it is (the 16 bytes
		// at 0xfffe0, in the BIOS area /dev/mem may read), and the
		// interrupts of the Generic Event Device that announces a new one
		// (ACPI:Ged in /proc/interrupts, summed over the CPUs).
		"counter": `i=0
while [ $i -lt 600 ]; do
	i=$((i+1))
	id=$(dd if=/dev/mem bs=16 skip=$((0xfffe0 / 16)) count=1 2>/dev/null | md5sum | cut -c1-12)
	ged=$(awk '/Ged/ { n = 0; for (f = 2; f <= NF && $f ~ /^[0-9]+$/; f++) n += $f; print n }' /proc/interrupts)
	echo "counter $i genid=$id ged=${ged:-none}"
	sleep 1
done
`,
		// Each second: a sector read from the disk past the page cache,
		// and a ping through the NIC to level 1.
		"counter-dev": `ip addr add 172.30.0.2/24 dev eth0
ip link set eth0 up
# Which transport the devices came on: virtio-pci functions bound to
# their driver, and per-queue MSI-X vectors (virtioN-config, -requests).
echo "pcidevs=$(ls /sys/bus/pci/drivers/virtio-pci 2>/dev/null | grep -c :) msix=$(grep -cE 'virtio[0-9]+-' /proc/interrupts)"
i=0
while [ $i -lt 600 ]; do
	i=$((i+1))
	echo 3 > /proc/sys/vm/drop_caches
	d=$(dd if=/dev/vda bs=512 count=1 skip=$((i % 2048)) 2>/dev/null | md5sum | cut -c1-8)
	if ping -c 1 -W 1 172.30.0.1 > /dev/null 2>&1; then n=ok; else n=fail; fi
	echo "counter $i disk=$d net=$n"
	sleep 1
done
`,
	},
	script: snapshotScript + snapdevScript + snapdiffScript + `
snapstep snapshot-1cpu 1
snapstep snapshot-2cpu 2
snapstep snapshot-4cpu 4
snapdevstep snapshot-devices
snapdevstep snapshot-devices-diff diff
snapdevstep snapshot-devices-pci pci
snapdiffstep snapshot-diff
`,
}

// snapshotScript is the level-1 side: snapstep NAME CPUS prints one
// step's markers around the whole sequence and its numbers as metrics.
const snapshotScript = `
last_count() { grep -o 'counter [0-9]*' "$1" | tail -n 1 | cut -d' ' -f2; }
first_count() { grep -o 'counter [0-9]*' "$1" | head -n 1 | cut -d' ' -f2; }
# last_value FILE KEY: the last KEY=value the guest printed.
last_value() { grep -o "$2=[^ ]*" "$1" | tail -n 1 | cut -d= -f2; }
# wait_count FILE N SECONDS: until FILE shows counter N or more.
wait_count() {
	local n=0 c
	while [ $n -lt $(( $3 * 10 )) ]; do
		c=$(last_count "$1"); [ -n "$c" ] && [ "$c" -ge "$2" ] && return 0
		sleep 0.1; n=$((n+1))
	done
	return 1
}
# start_origin DIR [FLAGS...]: vmm firecracker FLAGS boots DIR/vm.json
# behind DIR/a.sock, its console in DIR/a.out and its log in DIR/a.err;
# sets pid; fails if the guest never counts to 3.
start_origin() {
	local d=$1; shift
	"$VMM" firecracker "$@" --api-sock "$d/a.sock" --config-file "$d/vm.json" < /dev/null > "$d/a.out" 2> "$d/a.err" &
	pid=$!
	wait_count "$d/a.out" 3 100
}
# run_clone OUT COUNT SECONDS [FLAGS...]: vmm restore FLAGS, its console in
# OUT and its log beside it (.err), until OUT shows counter COUNT or SECONDS
# pass (then it fails); the clone is stopped either way.
run_clone() {
	local out=$1 n=$2 secs=$3 p r=0; shift 3
	"$VMM" restore "$@" < /dev/null > "$out" 2> "${out%.out}.err" &
	p=$!
	wait_count "$out" "$n" "$secs" || r=1
	kill "$p"; wait "$p"
	return $r
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
	local pid
	start_origin "$d" || { rc=10; echo "@@ERROR name=$step the guest never counted to 3"; }
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
		clone1_rss_kb=$rss1 clone1_pss_kb=$pss1 clone2_pss_kb=$pss2 \
		clone1_load=$(grep -o 'loaded in [^ ]*' "$d/r1.err" | cut -d' ' -f3) \
		clone2_load=$(grep -o 'loaded in [^ ]*' "$d/r2.err" | cut -d' ' -f3) \
		origin_genid=$(last_value "$d/a.out" genid) origin_ged=$(last_value "$d/a.out" ged) \
		clone1_genid=$(last_value "$d/r1.out" genid) clone1_ged=$(last_value "$d/r1.out" ged) \
		clone2_genid=$(last_value "$d/r2.out" genid) clone2_ged=$(last_value "$d/r2.out" ged)
	rm -f "$d/vm.mem"
	local end=$(uptime_ms)
	echo
	echo "@@RESULT name=$step rc=$rc ms=$(( end - start )) timedout=0"
	[ $rc -eq 0 ] || vmm_error "$step" "$d/a.err" "$d/r1.err" "$d/r2.err"
}
`

// snapdevStep: the counter-dev guest with a disk and a NIC on tap0;
// restored once with its NIC overridden to tap1 (tap0 is gone by then).
const snapdevScript = `
snapdevstep() {
	local step=$1 mode=$2 d="$WORK/$1" rc=0 dirty=false fcargs=
	[ "$mode" = diff ] && dirty=true
	[ "$mode" = pci ] && fcargs=--enable-pci
	mkdir -p "$d"
	dd if=/dev/urandom of="$d/disk.img" bs=1M count=1 2>/dev/null
	tunctl -t tap0 > /dev/null; ip addr add 172.30.0.1/24 dev tap0; ip link set tap0 up
	cat > "$d/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$GUEST_BZIMAGE", "initrd_path": "$GUEST_INITRD", "boot_args": "$(guest_cmdline counter-dev) $GUEST_QUIET"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 256, "track_dirty_pages": $dirty},
 "drives": [{"drive_id": "data", "path_on_host": "$d/disk.img", "is_root_device": false, "is_read_only": true}],
 "network-interfaces": [{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "06:00:ac:10:00:02"}]}
JSON
	echo "@@STEP name=$step begin"
	local start=$(uptime_ms)
	local pid
	start_origin "$d" $fcargs || rc=10
	"$VMM" snapshot create --api-sock "$d/a.sock" --snapshot-path "$d/vm.snap" --mem-file-path "$d/vm.mem" || rc=11
	local paused=$(last_count "$d/a.out") snap="$d/vm.snap" diff_kb=0
	if [ "$mode" = diff ]; then
		# Three seconds of disk reads and pings later, a Diff: it must
		# hold the pages the devices wrote (buffers, used rings), which
		# KVM's dirty log does not see; merged over the Full file, it is
		# what the clone starts from.
		wait_count "$d/a.out" $(( paused + 3 )) 20 || rc=12
		"$VMM" snapshot create --api-sock "$d/a.sock" --snapshot-type Diff --snapshot-path "$d/diff.snap" --mem-file-path "$d/diff.mem" --leave-paused || rc=13
		paused=$(last_count "$d/a.out") snap="$d/diff.snap" diff_kb=$(du -k "$d/diff.mem" | cut -f1)
		"$VMM" snapshot merge "$d/vm.mem" "$d/diff.mem" || rc=13
	fi
	kill "$pid"; wait "$pid"
	# The new TAP takes the old one's MAC: the guest's neighbour cache
	# still maps 172.30.0.1 to it, and a TAP drops frames for another
	# address (what a user restoring clones does too, README).
	local mac=$(cat /sys/class/net/tap0/address)
	tunctl -d tap0 > /dev/null
	tunctl -t tap1 > /dev/null; ip link set tap1 address "$mac"; ip addr add 172.30.0.1/24 dev tap1; ip link set tap1 up
	run_clone "$d/r1.out" $(( paused + 4 )) 40 --snapshot-path "$snap" --mem-file-path "$d/vm.mem" --network-override eth0=tap1 || rc=14
	tunctl -d tap1 > /dev/null
	echo "--- origin"; cat "$d/a.out"; cat "$d/a.err"
	echo "--- restored on tap1"; cat "$d/r1.out"; cat "$d/r1.err"
	local after=$(sed -n "/counter $(( paused + 1 )) /,\$p" "$d/r1.out")
	metric "$step" paused=$paused restored_first=$(first_count "$d/r1.out") restored_last=$(last_count "$d/r1.out") \
		restored_net_ok=$(echo "$after" | grep -c 'net=ok') restored_net_fail=$(echo "$after" | grep -c 'net=fail') \
		restored_disk_lines=$(echo "$after" | grep -c 'disk=[0-9a-f]') diff_kb=$diff_kb \
		pcidevs=$(last_value "$d/a.out" pcidevs) msix=$(last_value "$d/a.out" msix)
	rm -f "$d/vm.mem" "$d/diff.mem"
	local end=$(uptime_ms)
	echo
	echo "@@RESULT name=$step rc=$rc ms=$(( end - start )) timedout=0"
	[ $rc -eq 0 ] || vmm_error "$step" "$d/a.err" "$d/r1.err"
}
`

// snapdiffScript: the counter guest with track_dirty_pages gets a Full
// snapshot, counts on for a few seconds, then a Diff snapshot; the Diff's
// pages merged over the Full file (vmm snapshot merge) restore the later
// count.
const snapdiffScript = `
snapdiffstep() {
	local step=$1 d="$WORK/$1" rc=0
	mkdir -p "$d"
	cat > "$d/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$GUEST_BZIMAGE", "initrd_path": "$GUEST_INITRD", "boot_args": "$(guest_cmdline counter) $GUEST_QUIET"},
 "machine-config": {"vcpu_count": 1, "mem_size_mib": 256, "track_dirty_pages": true}}
JSON
	echo "@@STEP name=$step begin"
	local start=$(uptime_ms)
	local pid
	start_origin "$d" || rc=10
	"$VMM" snapshot create --api-sock "$d/a.sock" --snapshot-path "$d/full.snap" --mem-file-path "$d/full.mem" || rc=11
	local full_count=$(last_count "$d/a.out")
	wait_count "$d/a.out" $(( full_count + 3 )) 20 || rc=12
	"$VMM" snapshot create --api-sock "$d/a.sock" --snapshot-type Diff --snapshot-path "$d/diff.snap" --mem-file-path "$d/diff.mem" --leave-paused || rc=13
	local paused=$(last_count "$d/a.out")
	kill "$pid"; wait "$pid"
	local full_kb=$(du -k "$d/full.mem" | cut -f1) diff_kb=$(du -k "$d/diff.mem" | cut -f1)
	"$VMM" snapshot merge "$d/full.mem" "$d/diff.mem" || rc=14
	run_clone "$d/r1.out" $(( paused + 3 )) 30 --snapshot-path "$d/diff.snap" --mem-file-path "$d/full.mem" || rc=15
	echo "--- origin"; cat "$d/a.out"; cat "$d/a.err"
	echo "--- restored from full + diff"; cat "$d/r1.out"; cat "$d/r1.err"
	metric "$step" full_count=$full_count paused=$paused full_kb=$full_kb diff_kb=$diff_kb \
		restored_first=$(first_count "$d/r1.out") restored_last=$(last_count "$d/r1.out")
	local end=$(uptime_ms)
	echo
	echo "@@RESULT name=$step rc=$rc ms=$(( end - start )) timedout=0"
	[ $rc -eq 0 ] || vmm_error "$step" "$d/a.err" "$d/r1.err"
	rm -rf "$d"
}
`

// A Diff snapshot after a few seconds of counting is a small part of the
// Full one, and the Full file with the Diff merged over it restores the
// Diff's count, not the Full one's.
func TestSnapshotDiffRestoresTheLaterState(t *testing.T) {
	s := snapshotGroup.step(t, "snapshot-diff")
	require.Equal(t, 0, s.RC, s.Describe())
	v := intMetrics(t, s, "full_count", "paused", "full_kb", "diff_kb", "restored_first", "restored_last")
	t.Logf("metric: snapshot-diff: Full %d KiB at count %d, Diff %d KiB at count %d; restored from %d to %d",
		v["full_kb"], v["full_count"], v["diff_kb"], v["paused"], v["restored_first"], v["restored_last"])
	assert.Greater(t, v["paused"], v["full_count"], "the Diff is of a later state")
	assert.Less(t, v["diff_kb"]*4, v["full_kb"], "a Diff after a few seconds is much smaller than the Full snapshot")
	assert.Equal(t, v["paused"]+1, v["restored_first"], "full plus diff goes on from the Diff's count")
	assert.Greater(t, v["restored_last"], v["restored_first"])
}

// A guest with a disk and a NIC, restored onto another TAP. Its first
// sandbox run restored the disk but not the network (0 of 4 pings): the
// new TAP had a new MAC, while the guest's ARP cache and the peer's held
// the old one. Since the override keeps the MAC, the clean-clone CI run of
// 2026-12-01 15:47 restored both: 4 of 4 pings and 4 of 4 disk reads.
func TestSnapshotRestoreLinuxWithDiskAndNIC(t *testing.T) {
	checkSnapshotDevices(t, "snapshot-devices")
}

// The same guest restored from a Full snapshot with a Diff merged over
// it, taken after three more seconds of disk reads and pings: the Diff
// carries what the disk and the NIC wrote into guest memory (KVM's dirty
// log has none of it), or the clone's drivers would find their used
// rings where the Full snapshot left them and wait for ever.
func TestSnapshotDiffWithDiskAndNIC(t *testing.T) {
	s := checkSnapshotDevices(t, "snapshot-devices-diff")
	t.Logf("metric: snapshot-devices-diff: Diff of %s KiB", s.Values["diff_kb"])
}

// The same guest under `vmm firecracker --enable-pci`: its disk and NIC
// are virtio-pci functions with MSI-X vectors, which the restore brings
// back (configuration space, MSI-X table, the driver's vectors), or the
// clone's driver would wait for interrupts that go nowhere.
func TestSnapshotRestoreLinuxWithVirtioPCI(t *testing.T) {
	s := checkSnapshotDevices(t, "snapshot-devices-pci")
	assert.Equal(t, "2", s.Values["pcidevs"], "the disk and the NIC are virtio-pci functions\n%s", s.Describe())
	n, err := strconv.Atoi(s.Values["msix"])
	require.NoError(t, err, "msix=%q", s.Values["msix"])
	assert.Positive(t, n, "the drivers use MSI-X vectors")
}

// intMetrics reads the step's metrics of keys as integers; a missing or
// malformed one fails the test with the step's output.
func intMetrics(t *testing.T, s *sandbox.Step, keys ...string) map[string]int {
	t.Helper()
	v := map[string]int{}
	for _, k := range keys {
		n, err := strconv.Atoi(strings.TrimSpace(s.Values[k]))
		require.NoError(t, err, "metric %s=%q\n%s", k, s.Values[k], s.Describe())
		v[k] = n
	}
	return v
}

func checkSnapshotDevices(t *testing.T, step string) *sandbox.Step {
	s := snapshotGroup.step(t, step)
	require.Equal(t, 0, s.RC, s.Describe())
	v := intMetrics(t, s, "paused", "restored_first", "restored_last", "restored_net_ok", "restored_net_fail", "restored_disk_lines")
	t.Logf("%s: %v", step, v)
	assert.Equal(t, v["paused"]+1, v["restored_first"], "the restored guest goes on from the snapshot's count")
	assert.Greater(t, v["restored_last"], v["restored_first"]+2)
	assert.Positive(t, v["restored_disk_lines"], "disk reads work after the restore")
	assert.Positive(t, v["restored_net_ok"], "pings through the overridden TAP work after the restore")
	return s
}

func snapshotStep(t *testing.T, name string) map[string]int {
	s := snapshotGroup.step(t, name)
	require.Equal(t, 0, s.RC, s.Describe())
	v := intMetrics(t, s, "paused", "after_pause", "resumed", "clone1_first", "clone1_last",
		"clone2_first", "clone2_last", "snapshot_ms", "mem_file_kb", "state_bytes",
		"clone1_rss_kb", "clone1_pss_kb", "clone2_pss_kb")
	t.Logf("%s: %v; snapshot load (PUT /snapshot/load) took %s and %s", name, v, s.Values["clone1_load"], s.Values["clone2_load"])
	checkGenerationIDs(t, s.Values)
	return v
}

// zeroGenID is what the guest prints for a generation ID of 16 zero
// bytes (the first 12 hex digits of their MD5).
const zeroGenID = "4ae71336e44b"

// checkGenerationIDs: the origin and both clones each see their own VM
// generation ID, and each clone's Generic Event Device took one
// interrupt, the restore's notification, while the origin's took none.
func checkGenerationIDs(t *testing.T, v map[string]string) {
	t.Helper()
	ids := map[string]string{}
	for _, vm := range []string{"origin", "clone1", "clone2"} {
		id := v[vm+"_genid"]
		if assert.Len(t, id, 12, "%s's generation ID digest", vm) {
			assert.NotEqual(t, zeroGenID, id, "%s's generation ID is all zero", vm)
		}
		if other, ok := ids[id]; ok {
			t.Errorf("%s has the generation ID of %s (%s)", vm, other, id)
		}
		ids[id] = vm
	}
	assert.Equal(t, "0", v["origin_ged"], "the booted VM's event device took no interrupt")
	assert.Equal(t, "1", v["clone1_ged"], "clone 1's event device took the restore's notification")
	assert.Equal(t, "1", v["clone2_ged"], "clone 2's event device took the restore's notification")
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

func TestSnapshotRestoreLinux4CPUs(t *testing.T) {
	checkSnapshotCounts(t, snapshotStep(t, "snapshot-4cpu"))
}
