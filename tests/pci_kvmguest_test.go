package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/tests/guestkernel"
	"github.com/vmm-dev/vmm/tests/sandbox"
)

// The kernel kernel developers build, over PCI: `make tinyconfig
// kvm_guest.config` of linux-source-6.1 plus tests/guest/kernel/
// kvmguest.config (initramfs, ext4, the kernel log; never VIRTIO_MMIO),
// built once into the artifact cache by `make prepare` or, failing
// that, here. Everything is built in: the guest loads no module.
//
//   - kvmguest-pci: the guest lists the PCI functions as lspci does (from
//     sysfs: Debian's busybox has no lspci applet), mounts the ext4 image
//     from /dev/vda read-write, checks the host-written file, writes a
//     file of its own that level 1 then finds in the image, and downloads
//     16 MiB from busybox httpd in level 1 through the TAP; both sides'
//     MD5s are compared. dmesg has no PCI or ACPI complaint.
//   - kvmguest-mmio: the same kernel and disk over --transport mmio finds
//     no disk, since the kernel has no virtio-mmio driver: the transport
//     choice is what gives such a kernel its devices.
//   - kvmguest-run: the kernel developer's workflow as they type it,
//     `vmm run -k bzImage -- CMD` with no other option: vmm picks PCI
//     (the kernel has no virtio-mmio), the guest mounts level 1's / and
//     the current directory over 9p (the kernel has no virtio-fs), and
//     the command's output and exit status come back.
//
// The 172.30.3.0/24 addresses live only on a TAP link inside level 1.

// kvmGuestWrote starts the line the guest writes into /mnt/guest.txt,
// followed by the SHA-256 it computed of the host's file.
const kvmGuestWrote = "vmm-kvmguest-pci-wrote"

const kvmGuestPCI = `
echo "@@GUEST modules=$([ -e /proc/modules ] && echo 1 || echo 0)"
ids=
for d in /sys/bus/pci/devices/*; do
	v=$(cat "$d/vendor"); dev=$(cat "$d/device"); c=$(cat "$d/class")
	echo "lspci| ${d##*/} Class ${c#0x}: ${v#0x}:${dev#0x}"
	ids="$ids${v#0x}:${dev#0x},"
done
echo "@@GUEST pci_ids=$ids"
echo "@@GUEST msix_irqs=$(grep -c 'PCI-MSI' /proc/interrupts)"
if [ -b /dev/vda ]; then echo "@@GUEST vda=1"; else echo "@@GUEST vda=0"; fi
if mount -t ext4 /dev/vda /mnt; then
	want=$(cat /mnt/hello.sha256)
	got=$(sha256sum /mnt/hello.bin | cut -d' ' -f1)
	echo "@@GUEST host_file_ok=$([ "$want" = "$got" ] && echo 1 || echo 0) host_file_sha=$got"
	echo "` + kvmGuestWrote + ` $got" > /mnt/guest.txt
	sync
	umount /mnt && echo "@@GUEST umount=ok"
else
	echo "@@GUEST host_file_ok=0"
fi
if [ -e /sys/class/net/eth0 ]; then
	ip addr add 172.30.3.2/24 dev eth0
	ip link set eth0 up
	if wget -q -O /tmp/blob http://172.30.3.1:8080/blob; then
		echo "@@GUEST blob_md5=$(md5sum /tmp/blob | cut -d' ' -f1) blob_bytes=$(wc -c < /tmp/blob)"
	else
		echo "@@GUEST blob_md5=wget-failed"
	fi
	rm -f /tmp/blob
else
	echo "@@GUEST blob_md5=no-eth0"
fi
` + pciDmesgBad

const kvmGuestMMIO = `
if [ -b /dev/vda ]; then echo "@@GUEST vda=1"; else echo "@@GUEST vda=0"; fi
`

// kvmGuestBlobBytes is the download: 16 MiB.
const kvmGuestBlobBytes = 16 << 20

func kvmGuestRun(step, script string, extra ...string) string {
	args := []string{"run_vmm", step, "run",
		"--kernel", `"$DATA/kvmguest-bzImage"`,
		"--initrd", `"$GUEST_INITRD"`,
		"--cmdline", `"` + guestCmdline + " vmmtest=" + script + `"`}
	return strings.Join(append(args, extra...), " ")
}

// kvmGuestCommand is a step of the command workflow with the kvm_guest
// kernel and nothing else vmm needs told, then its dump.
func kvmGuestCommand(step, extra, cmd string) string {
	return `run_vmm ` + step + ` run -k "$DATA/kvmguest-bzImage" ` + extra + ` -- ` + cmd + `
dump ` + step
}

var kvmGuestGroup = &group{
	name:        "pci-kvmguest",
	timeout:     12 * time.Minute,
	stepTimeout: 180 * time.Second,
	guestScripts: map[string]string{
		"kvmguestpci":     kvmGuestPCI,
		"kvmguestmmio":    kvmGuestMMIO,
		"kvmguestcounter": kvmGuestCounter,
	},
	script: `
tunctl -t tapk > /dev/null
ip addr add 172.30.3.1/24 dev tapk
ip link set tapk up
mkdir -p "$WORK/www"
head -c ` + fmt.Sprint(kvmGuestBlobBytes) + ` /dev/urandom > "$WORK/www/blob"
httpd -f -p 172.30.3.1:8080 -h "$WORK/www" &
httpd_pid=$!
` + kvmGuestRun("kvmguest-pci", "kvmguestpci", "--transport", "pci", "--disk", `"$DATA/disk.img"`, "--net", "tap=tapk") + `
kill $httpd_pid
metric kvmguest-pci l1_blob_md5=$(md5sum < "$WORK/www/blob" | cut -d' ' -f1)
metric kvmguest-pci l1_guest_file=$(grep -a -o '` + kvmGuestWrote + ` [0-9a-f]*' "$DATA/disk.img" | head -n 1 | cut -d' ' -f2)
` + kvmGuestRun("kvmguest-mmio", "kvmguestmmio", "--transport", "mmio", "--disk", `"$DATA/disk.img,ro"`) + `
tunctl -d tapk > /dev/null
` + dumpScript + `mkdir -p "$WORK/kcwd" && cd "$WORK/kcwd"
` + kvmGuestCommand("kvmguest-run", "", `sh -c "cat '$DATA/hello.txt'; echo written > out.txt; grep -c ' 9p ' /proc/mounts; echo oops >&2; exit 7"`) + `
metric kvmguest-run written=$(cat "$WORK/kcwd/out.txt" 2>/dev/null); cd /
` + kvmGuestCommand("kvmguest-true", "", "true") + `
` + kvmGuestCommand("kvmguest-exit1", "", `sh -c 'exit 1'`) + `
` + kvmGuestCommand("kvmguest-notfound", "", "/no/such/command") + `
` + kvmGuestCommand("kvmguest-kill9", "", `sh -c 'kill -9 $$'`) + `
` + kvmGuestCommand("kvmguest-timeout", "--timeout 15s", "sleep 600") + `
` + kvmGuestCommand("kvmguest-panic", "", `sh -c 'echo c > /proc/sysrq-trigger; sleep 30'`) + `
` + snapshotScript + kvmGuestSnapshotScript + `
kvmsnapstep kvmguest-snapshot
`,
}

// kvmGuestCounter: each second a count, a read of a fresh 4 KiB of the
// disk (256 KiB further on each time, past the readahead window: a
// virtio-blk request over PCI), and how often the kernel said it reseeded
// its RNG for a VM fork. It first waits for the RNG to be initialized,
// since Linux reseeds (and says so) only then.
const kvmGuestCounter = `head -c 1 /dev/random > /dev/null
i=0
while [ $i -lt 600 ]; do
	i=$((i+1))
	d=$(dd if=/dev/vda bs=4096 count=1 skip=$((i * 64)) 2>/dev/null | md5sum | cut -c1-8)
	r=$(dmesg | grep -c 'reseeded due to virtual machine fork')
	echo "counter $i disk=$d reseed=$r"
	sleep 1
done
`

// kvmGuestSnapshotScript: kvmsnapstep NAME boots the counter guest on the
// kvm_guest kernel through ` + "`vmm firecracker --enable-pci`" + ` (so its disk
// is a virtio-pci function: the kernel has no virtio-mmio), snapshots it
// and restores it in a new process.
const kvmGuestSnapshotScript = `
kvmsnapstep() {
	local step=$1 d="$WORK/$1" rc=0
	mkdir -p "$d"
	truncate -s 256M "$d/disk.img"
	cat > "$d/vm.json" <<JSON
{"boot-source": {"kernel_image_path": "$DATA/kvmguest-bzImage", "initrd_path": "$GUEST_INITRD", "boot_args": "$(guest_cmdline kvmguestcounter) $GUEST_QUIET"},
 "machine-config": {"vcpu_count": 2, "mem_size_mib": 256},
 "drives": [{"drive_id": "data", "path_on_host": "$d/disk.img", "is_root_device": false, "is_read_only": true}]}
JSON
	echo "@@STEP name=$step begin"
	local start=$(uptime_ms)
	local pid
	start_origin "$d" --enable-pci || rc=10
	"$VMM" snapshot create --api-sock "$d/a.sock" --snapshot-path "$d/vm.snap" --mem-file-path "$d/vm.mem" --leave-paused || rc=11
	local paused=$(last_count "$d/a.out")
	kill "$pid"; wait "$pid"
	run_clone "$d/r1.out" $(( paused + 3 )) 40 --snapshot-path "$d/vm.snap" --mem-file-path "$d/vm.mem" || rc=14
	echo "--- origin"; cat "$d/a.out"; cat "$d/a.err"
	echo "--- restored"; cat "$d/r1.out"; cat "$d/r1.err"
	local after=$(sed -n "/counter $(( paused + 1 )) /,\$p" "$d/r1.out")
	metric "$step" paused=$paused restored_first=$(first_count "$d/r1.out") restored_last=$(last_count "$d/r1.out") \
		origin_reseed=$(last_value "$d/a.out" reseed) restored_reseed=$(last_value "$d/r1.out" reseed) \
		restored_disk_lines=$(echo "$after" | grep -c 'disk=[0-9a-f]')
	rm -f "$d/vm.mem" "$d/disk.img"
	echo
	echo "@@RESULT name=$step rc=$rc ms=$(( $(uptime_ms) - start )) timedout=0"
	[ $rc -eq 0 ] || vmm_error "$step" "$d/a.err" "$d/r1.err"
}
`

// kvmGuestKernel returns the kvm_guest kernel, building it (once, 10 to
// 35 minutes) when `make prepare` has not.
var kvmGuestKernel = sync.OnceValues(func() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	repo, err := sandbox.RepoRoot(ctx)
	if err != nil {
		return "", err
	}
	cache, err := sandbox.CacheDir()
	if err != nil {
		return "", err
	}
	return guestkernel.Path(ctx, repo, cache, guestkernel.KVMGuest, true, os.Stderr)
})

// kvmGuestFiles are the group's files, made once: the kernel and a fresh
// ext4 image of the group's own, since the guest writes to it.
var kvmGuestFiles = sync.OnceValues(func() ([]sandbox.File, error) {
	bz, err := kvmGuestKernel()
	if err != nil {
		return nil, err
	}
	img, err := makeExt4Image()
	if err != nil {
		return nil, err
	}
	return []sandbox.File{{Name: "disk.img", HostPath: img}, {Name: "kvmguest-bzImage", HostPath: bz},
		{Name: "hello.txt", Data: []byte("hello from level 1\n")}}, nil
})

func kvmGuestGroupFor(t *testing.T) *group {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end scenario: skipped with -short")
	}
	files, err := kvmGuestFiles()
	require.NoError(t, err)
	kvmGuestGroup.files = files
	return kvmGuestGroup
}

// hostFileSHA reads hello.sha256 out of the ext4 image on this machine.
func hostFileSHA(t *testing.T, img string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat /hello.sha256", img).Output()
	require.NoError(t, err, "debugfs %s", img)
	return strings.TrimSpace(string(out))
}

func TestPCIKVMGuestKernel(t *testing.T) {
	g := kvmGuestGroupFor(t)
	s := g.step(t, "kvmguest-pci")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	d := s.Describe()
	want := hostFileSHA(t, g.files[0].HostPath)
	assert.Equal(t, "0", s.Values["modules"], "the kernel is all built in\n%s", d)
	// lspci: the host bridge, then virtio-blk (0x1040 + 2) and
	// virtio-net (0x1040 + 1), virtio 1.2 §4.1.2.1.
	assert.Equal(t, "1b36:0008,1af4:1042,1af4:1041,", s.Values["pci_ids"], d)
	assert.NotEqual(t, "0", s.Values["msix_irqs"], "interrupts come through MSI-X\n%s", d)
	assert.Equal(t, "1", s.Values["vda"], d)
	assert.Equal(t, "1", s.Values["host_file_ok"], "the host's file read from /dev/vda\n%s", d)
	assert.Equal(t, want, s.Values["host_file_sha"], d)
	assert.Equal(t, "ok", s.Values["umount"], d)
	assert.Equal(t, want, s.Values["l1_guest_file"], "level 1 finds the guest's file in the image\n%s", d)
	assert.Equal(t, fmt.Sprint(kvmGuestBlobBytes), s.Values["blob_bytes"], d)
	assert.Equal(t, s.Values["l1_blob_md5"], s.Values["blob_md5"], "16 MiB over TCP\n%s", d)
	assert.Len(t, s.Values["blob_md5"], 32, d)
	assert.Equal(t, "0", s.Values["dmesg_bad"], "PCI/ACPI complaints in dmesg\n%s", d)
}

func TestPCIKVMGuestKernelHasNoMMIODisk(t *testing.T) {
	s := kvmGuestGroupFor(t).step(t, "kvmguest-mmio")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	assert.Equal(t, "0", s.Values["vda"], "a kernel without CONFIG_VIRTIO_MMIO sees no disk over --transport mmio\n%s", s.Describe())
}

// A kernel developer's kernel, snapshotted over virtio-pci and restored
// in a new process: it counts on from the snapshot, its disk answers, and
// the VM generation ID's change makes it reseed its RNG (CONFIG_VMGENID),
// which the VM that was snapshotted never did.
func TestSnapshotKVMGuestKernelOverPCI(t *testing.T) {
	s := kvmGuestGroupFor(t).step(t, "kvmguest-snapshot")
	require.Equal(t, 0, s.RC, s.Describe())
	v := intMetrics(t, s, "paused", "restored_first", "restored_last", "origin_reseed", "restored_reseed", "restored_disk_lines")
	t.Logf("kvmguest-snapshot: %v", v)
	assert.Equal(t, v["paused"]+1, v["restored_first"], "the restored guest goes on from the snapshot's count")
	assert.Greater(t, v["restored_last"], v["restored_first"])
	assert.Positive(t, v["restored_disk_lines"], "disk reads over virtio-pci work after the restore")
	assert.Equal(t, 0, v["origin_reseed"], "the booted VM never reseeded for a fork")
	assert.Equal(t, 1, v["restored_reseed"], "the restored VM reseeded once, for its new generation ID")
}

// TestRunCommandKVMGuestKernel: `vmm run -k bzImage -- CMD` with a
// kvm_guest.config kernel and nothing else on the command line. The
// command reads a level-1 file through the host's / and writes into the
// current directory, both over 9p, and its status comes back.
func TestRunCommandKVMGuestKernel(t *testing.T) {
	s := kvmGuestGroupFor(t).step(t, "kvmguest-run")
	require.Equal(t, 7, s.RC, "the command's exit status\n%s", s.Describe())
	out, errOut := outputs(t, s)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 2, "stdout %q", out)
	assert.Equal(t, "hello from level 1", lines[0], "a level-1 file read through the host's /")
	assert.NotEqual(t, "0", lines[1], "the shares are 9p mounts (the kernel has no virtio-fs)")
	assert.Equal(t, "oops\n", errOut, "stderr on its own channel, without console noise")
	assert.Equal(t, "written", s.Values["written"], "a file written into the current directory, read by level 1")
}

// The documented statuses with the same kernel: a command's own (0, 1, 127
// when it is not found, 128+9 when killed), --timeout's 124 and a kernel
// panic's 122, with the panic's lines on stderr.
func TestRunCommandKVMGuestKernelStatuses(t *testing.T) {
	for _, tc := range []struct {
		step, wantErr string
		rc            int
	}{
		{"kvmguest-true", "", 0},
		{"kvmguest-exit1", "", 1},
		{"kvmguest-notfound", "vmm: /no/such/command: ", 127},
		{"kvmguest-kill9", "", 137},
		{"kvmguest-timeout", "--timeout expired", 124},
		{"kvmguest-panic", "Kernel panic - not syncing", 122},
	} {
		t.Run(tc.step, func(t *testing.T) {
			requireStatus(t, kvmGuestGroupFor(t).step(t, tc.step), tc.rc, tc.wantErr)
		})
	}
}
