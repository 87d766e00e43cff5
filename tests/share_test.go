package tests

import (
	"context"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/tests/sandbox"
)

// Shared directories: level 1 plays the host and shares two directories
// of its own with `--share`; Debian's cloud kernel (virtiofs and fuse are
// modules there) mounts them by tag.
//
//   - share-fs: `--share $WORK/share:hostshare --share $WORK/ro:roshare,ro`
//     (virtio-mmio; both devices offered, the guest mounts virtio-fs);
//     share-fs-pci: the same with `--transport pci,proto=fs`; share-9p
//     (its own group, with a kvm_guest.config kernel): over virtio-9p.
//     The guest reads a 4 MiB level-1 file (md5 compared by level 1),
//     writes a file level 1 then reads, times a 256 MiB read (64 MiB over
//     9p), tries to reach $WORK/secret (outside the share) through an
//     absolute and a relative symlink, .. and a device node, and tries to
//     write to the read-only share. Level 1 checks that nothing outside the share
//     changed.
const shareBigMiB = 256

// share9PBigMiB is the 9p step's timed read. 256 MiB took 186 s there
// (2026-12-01), against 55 s over virtio-fs, and once ran the group out of
// time; 64 MiB keeps the step well inside it.
const share9PBigMiB = 64

// shareGuestScript is the guest's half of a share step; share_mount
// TAG DIR mounts a share.
const shareGuestScript = netMS + `
mkdir -p /mnt/s /mnt/ro
share_mount hostshare /mnt/s && echo "@@GUEST mounted=1" || echo "@@GUEST mounted=0"
share_mount roshare /mnt/ro && echo "@@GUEST ro_mounted=1" || echo "@@GUEST ro_mounted=0"
echo "@@GUEST data_md5=$(md5sum /mnt/s/data | cut -d' ' -f1) data_size=$(wc -c < /mnt/s/data)"
echo "written by the guest" > /mnt/s/fromguest
echo "@@GUEST write_rc=$?"
sync
leaked=0
for p in /mnt/s/abs /mnt/s/rel /mnt/s/../secret /mnt/s/dir/../../secret /mnt/s/absdir/secret /mnt/s/reldir/secret; do
	if cat "$p" 2> /dev/null | grep -q "host secret"; then
		echo "vmm guest: read the secret through $p"
		leaked=$((leaked + 1))
	fi
	# The guest resolves these links itself, into its own tree; level 1
	# checks its secret is unchanged.
	echo overwritten 2> /dev/null > "$p"
done
mknod /mnt/s/sda b 8 0 2> /dev/null && echo "@@GUEST mknod=made" || echo "@@GUEST mknod=refused"
echo "@@GUEST leaked=$leaked"
echo x 2> /dev/null > /mnt/ro/new && echo "@@GUEST ro_create=made" || echo "@@GUEST ro_create=refused"
rm /mnt/ro/file 2> /dev/null && echo "@@GUEST ro_rm=done" || echo "@@GUEST ro_rm=refused"
echo "@@GUEST ro_content=$(cat /mnt/ro/file | tr ' ' _)"
t0=$(ms)
n=$(cat /mnt/s/big | wc -c)
t1=$(ms)
echo "@@GUEST big_bytes=$n big_ms=$((t1 - t0))"
umount /mnt/s && echo "@@GUEST umount=1"
`

const shareVirtioFSMount = `
for m in fuse virtiofs; do
	insmod /lib/modules/extra/$m.ko || echo "@@GUEST insmod-failed module=$m"
done
share_mount() { mount -t virtiofs "$1" "$2"; }
`

// A kvm_guest.config kernel has 9p built in.
const shareP9Mount = `
share_mount() { mount -t 9p -o trans=virtio,version=9p2000.L "$1" "$2"; }
`

// shareLevel1 makes the level-1 files of a share step, with a big file
// of shareBigMiB MiB.
var shareLevel1 = shareLevel1For(shareBigMiB)

// shareLevel1For makes them with a big file of mib MiB.
func shareLevel1For(mib int) string {
	return strings.Replace(shareLevel1Template, "count=BIGMIB", "count="+strconv.Itoa(mib), 1)
}

const shareLevel1Template = `
mkdir -p "$WORK/share/dir" "$WORK/ro" "$WORK/outdir"
head -c 4194304 /dev/urandom > "$WORK/share/data"
echo "host secret" > "$WORK/secret"
echo "host secret" > "$WORK/outdir/secret"
ln -s ../secret "$WORK/share/rel"
ln -s "$WORK/secret" "$WORK/share/abs"
ln -s "$WORK/outdir" "$WORK/share/absdir"
ln -s ../outdir "$WORK/share/reldir"
echo "read only" > "$WORK/ro/file"
dd if=/dev/urandom of="$WORK/share/big" bs=1M count=BIGMIB 2> /dev/null
t0=$(ms)
cat "$WORK/share/big" | wc -c > /dev/null
t1=$(ms)
`

// shareChecks reports what level 1 sees after share step NAME, and
// resets the share for the next step.
func shareChecks(step string) string {
	return `
metric ` + step + ` host_md5=$(md5sum "$WORK/share/data" | cut -d' ' -f1) l1_big_ms=$((t1 - t0))
metric ` + step + ` fromguest=$(tr ' ' _ < "$WORK/share/fromguest") secret=$(tr ' ' _ < "$WORK/secret") outdir_secret=$(tr ' ' _ < "$WORK/outdir/secret")
metric ` + step + ` outside=$(ls "$WORK/outdir" | tr '\n' ,) ro_files=$(ls "$WORK/ro" | tr '\n' ,) sda=$([ -e "$WORK/share/sda" ] && echo 1 || echo 0)
rm -f "$WORK/share/fromguest"
`
}

var shareGroup = &group{
	name:        "share",
	timeout:     10 * time.Minute,
	stepTimeout: 240 * time.Second,
	guestScripts: map[string]string{
		"share": shareVirtioFSMount + shareGuestScript,
	},
	script: netMS + shareLevel1 +
		vmmRun("share-fs", "GUEST_BZIMAGE", guestCmdline+" vmmtest=share", "--memory", "1G",
			"--share", `"$WORK/share:hostshare"`, "--share", `"$WORK/ro:roshare,ro"`) + shareChecks("share-fs") +
		vmmRun("share-fs-pci", "GUEST_BZIMAGE", guestCmdline+" vmmtest=share", "--memory", "1G", "--transport", "pci",
			"--share", `"$WORK/share:hostshare,proto=fs"`, "--share", `"$WORK/ro:roshare,ro,proto=fs"`) + shareChecks("share-fs-pci"),
}

// shareModules are the guest modules the share scenario loads itself.
var shareModules = []string{"fs/fuse/fuse.ko", "fs/fuse/virtiofs.ko"}

var shareFiles struct {
	once sync.Once
	err  error
}

func shareStep(t *testing.T, name string) *sandbox.Step {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end scenario: skipped with -short")
	}
	shareFiles.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		k, err := sandbox.Kernel(ctx)
		if err != nil {
			shareFiles.err = err
			return
		}
		for _, rel := range shareModules {
			p, err := k.Module(rel)
			if err != nil {
				shareFiles.err = err
				return
			}
			shareGroup.guestFiles = append(shareGroup.guestFiles,
				sandbox.File{Name: "/lib/modules/extra/" + path.Base(rel), HostPath: p})
		}
	})
	require.NoError(t, shareFiles.err, "files of the share group")
	return shareGroup.step(t, name)
}

// checkShareReadWrite: the guest read level 1's file intact and wrote one
// level 1 then read.
func checkShareReadWrite(t *testing.T, s *sandbox.Step, bigMiB int) {
	t.Helper()
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	require.Equal(t, "1", s.Values["mounted"], "the guest mounts the share by tag\n%s", s.Describe())
	assert.Equal(t, s.Values["host_md5"], s.Values["data_md5"], "the guest reads level 1's file intact\n%s", s.Describe())
	assert.Equal(t, "4194304", s.Values["data_size"], s.Describe())
	assert.Equal(t, "0", s.Values["write_rc"], s.Describe())
	assert.Equal(t, "written_by_the_guest", s.Values["fromguest"], "level 1 reads what the guest wrote\n%s", s.Describe())
	assert.Equal(t, "1", s.Values["umount"], s.Describe())
	assert.Equal(t, strconv.Itoa(bigMiB<<20), s.Values["big_bytes"], s.Describe())
	ms, _ := strconv.Atoi(s.Values["big_ms"])
	l1, _ := strconv.Atoi(s.Values["l1_big_ms"])
	if ms > 0 {
		t.Logf("metric: %s: %d MiB read in the guest in %d ms (%.0f MiB/s); the same read in level 1: %d ms",
			s.Name, bigMiB, ms, float64(bigMiB)/(float64(ms)/1000), l1)
	}
}

// checkShareEscapes: nothing outside the share was readable or writable
// from the guest, and the read-only share refused writes.
func checkShareEscapes(t *testing.T, s *sandbox.Step) {
	t.Helper()
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	require.Equal(t, "1", s.Values["mounted"], s.Describe())
	assert.Equal(t, "0", s.Values["leaked"], "the guest read a file outside the share\n%s", s.Describe())
	assert.Equal(t, "host_secret", s.Values["secret"], "the secret outside the share is unchanged\n%s", s.Describe())
	assert.Equal(t, "host_secret", s.Values["outdir_secret"], s.Describe())
	assert.Equal(t, "secret,", s.Values["outside"], "nothing appeared outside the share\n%s", s.Describe())
	assert.Equal(t, "refused", s.Values["mknod"], "no device nodes in a share\n%s", s.Describe())
	assert.Equal(t, "0", s.Values["sda"], s.Describe())
	require.Equal(t, "1", s.Values["ro_mounted"], s.Describe())
	assert.Equal(t, "refused", s.Values["ro_create"], s.Describe())
	assert.Equal(t, "refused", s.Values["ro_rm"], s.Describe())
	assert.Equal(t, "read_only", s.Values["ro_content"], s.Describe())
	assert.Equal(t, "file,", s.Values["ro_files"], s.Describe())
}

// Debian's guest mounts a level-1 directory over virtio-fs (virtio-mmio)
// by tag, reads a level-1 file intact and writes one level 1 then reads.
func TestShareVirtioFSReadWrite(t *testing.T) {
	checkShareReadWrite(t, shareStep(t, "share-fs"), shareBigMiB)
}

// The same over virtio-pci: the device does not know its transport.
func TestShareVirtioFSOverPCI(t *testing.T) {
	checkShareReadWrite(t, shareStep(t, "share-fs-pci"), shareBigMiB)
}

// Nothing outside the share is readable or writable from the guest, and
// the read-only share refuses writes.
func TestShareVirtioFSEscapes(t *testing.T) {
	checkShareEscapes(t, shareStep(t, "share-fs"))
	checkShareEscapes(t, shareStep(t, "share-fs-pci"))
}

// share9PKernelEnv names another `defconfig kvm_guest.config` bzImage (9p
// and virtio-pci built in, no virtio-mmio, no virtio-fs) than the suite's
// own kvm_guest kernel, which is the default: Debian's cloud kernel has no
// 9p at all.
const share9PKernelEnv = "VMM_9P_KERNEL"

var share9PGroup = &group{
	name:         "share9p",
	timeout:      8 * time.Minute,
	stepTimeout:  240 * time.Second,
	guestScripts: map[string]string{"share9p": shareP9Mount + shareGuestScript},
	script: netMS + shareLevel1For(share9PBigMiB) + `
run_vmm share-9p run --kernel "$DATA/k9p" --initrd "$GUEST_INITRD" --cmdline "` + guestCmdline + ` vmmtest=share9p" --memory 1G --transport pci --share "$WORK/share:hostshare,proto=9p" --share "$WORK/ro:roshare,ro,proto=9p"
` + shareChecks("share-9p"),
}

// A kvm_guest.config kernel mounts a level-1 directory over virtio-9p,
// with the same checks as virtio-fs's.
//
// It failed three of its first five attempts (2026-12-01, level 1 on
// QEMU 10): out of time in the then 256 MiB read, a hang with level 1's
// registers in the vCPU, a triple fault (last exit a read of the UART's
// IIR), so it stayed behind VMM_E2E_9P=1. Those are the sandbox's faults
// that the race in QEMU's TCG explains (tests/README.md, "CPU 0's flags,
// overwritten by the other CPU"); with both of level 1's QEMU patches it
// passed five of five (2026-12-03 and 12-04), and it is part of make test.
func TestShareVirtio9PKvmGuestKernel(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end scenario: skipped with -short")
	}
	k := os.Getenv(share9PKernelEnv)
	if k == "" {
		var err error
		k, err = kvmGuestKernel()
		require.NoError(t, err, "the kvm_guest kernel")
	}
	share9PGroup.files = []sandbox.File{{Name: "k9p", HostPath: k}}
	s := share9PGroup.step(t, "share-9p")
	checkShareReadWrite(t, s, share9PBigMiB)
	checkShareEscapes(t, s)
}
