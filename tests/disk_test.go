package tests

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/tests/sandbox"
)

// guestToken is what the guest writes into a new file on the disk; level 1
// (the vmm's host) then finds it in the image file.
const guestToken = "vmm-guest-wrote-this-block-of-text-0123456789"

// diskRW checks the host's file, writes one of its own, and syncs.
const diskRW = `set -e
mount -t ext4 /dev/vda /mnt
want=$(cat /mnt/hello.sha256)
got=$(sha256sum /mnt/hello.bin | cut -d' ' -f1)
echo "@@GUEST host_file_ok=$([ "$want" = "$got" ] && echo 1 || echo 0)"
i=0
while [ $i -lt 200 ]; do echo "` + guestToken + `"; i=$((i+1)); done > /mnt/guest.txt
sha256sum /mnt/guest.txt | cut -d' ' -f1 > /mnt/guest.sha256
sync
umount /mnt
echo "@@GUEST guest_wrote=1"
`

// diskRO reads the guest's file back from the read-only disk and tries to
// write the device.
const diskRO = `mount -t ext4 -o ro /dev/vda /mnt
want=$(cat /mnt/guest.sha256)
got=$(sha256sum /mnt/guest.txt | cut -d' ' -f1)
echo "@@GUEST guest_file_ok=$([ -n "$want" ] && [ "$want" = "$got" ] && echo 1 || echo 0)"
echo "@@GUEST blk_ro=$(cat /sys/block/vda/ro)"
if dd if=/dev/zero of=/dev/vda bs=4096 count=1 conv=notrunc 2>/dev/null; then
	echo "@@GUEST ro_write_refused=0"
else
	echo "@@GUEST ro_write_refused=1"
fi
umount /mnt
`

var (
	diskOnce  sync.Once
	diskImage string
	diskErr   error
)

// diskGroupFor builds (once) an ext4 image on the host holding a random
// file and its checksum, and the group that hands it to the guest.
func diskGroupFor(t *testing.T) *group {
	t.Helper()
	diskOnce.Do(func() { diskImage, diskErr = makeExt4Image() })
	require.NoError(t, diskErr)
	diskGroup.files = []sandbox.File{{Name: "disk.img", HostPath: diskImage}}
	return diskGroup
}

func makeExt4Image() (string, error) {
	dir, err := os.MkdirTemp("", "vmm-disk-")
	if err != nil {
		return "", err
	}
	content := filepath.Join(dir, "content")
	if err := os.Mkdir(content, 0o755); err != nil {
		return "", err
	}
	data := make([]byte, 1<<20)
	if _, err := rand.Read(data); err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	if err := os.WriteFile(filepath.Join(content, "hello.bin"), data, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(content, "hello.sha256"), []byte(hex.EncodeToString(sum[:])+"\n"), 0o644); err != nil {
		return "", err
	}
	img := filepath.Join(dir, "disk.img")
	out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", content, img, "32M").CombinedOutput()
	if err != nil {
		return "", &exec.Error{Name: "mkfs.ext4: " + string(out), Err: err}
	}
	return img, nil
}

var diskGroup = &group{
	name:        "disk",
	timeout:     6 * time.Minute,
	stepTimeout: 120 * time.Second,
	guestScripts: map[string]string{
		"disk-rw": diskRW,
		"disk-ro": diskRO,
	},
	script: vmmRun("disk-rw", "GUEST_BZIMAGE", guestCmdline+" vmmtest=disk-rw", "--disk", `"$DATA/disk.img"`) + `
if grep -q "` + guestToken + `" "$DATA/disk.img"; then metric disk-rw host_sees_guest_file=1; else metric disk-rw host_sees_guest_file=0; fi
before=$(md5sum < "$DATA/disk.img")
` + vmmRun("disk-ro", "GUEST_BZIMAGE", guestCmdline+" vmmtest=disk-ro", "--disk", `"$DATA/disk.img,ro"`) + `
after=$(md5sum < "$DATA/disk.img")
if [ "$before" = "$after" ]; then metric disk-ro image_unchanged=1; else metric disk-ro image_unchanged=0; fi
`,
}

// The guest mounts an ext4 image the host made, verifies the host's file,
// writes its own and syncs; the host then finds it in the image file.
func TestDiskReadWrite(t *testing.T) {
	s := diskGroupFor(t).step(t, "disk-rw")
	requireCleanExit(t, s, "reboot: Power down")
	require.Equal(t, "1", s.Values["host_file_ok"], "checksum of the host's file in the guest\n%s", s.Describe())
	require.Equal(t, "1", s.Values["guest_wrote"], s.Describe())
	require.Equal(t, "1", s.Values["host_sees_guest_file"], "the guest's file in the image on the host\n%s", s.Describe())
}

// A read-only disk: the guest sees it read-only, cannot write it, and the
// image is byte for byte unchanged afterwards; the guest's earlier file
// reads back intact.
func TestDiskReadOnly(t *testing.T) {
	s := diskGroupFor(t).step(t, "disk-ro")
	requireCleanExit(t, s, "reboot: Power down")
	require.Equal(t, "1", s.Values["guest_file_ok"], s.Describe())
	require.Equal(t, "1", s.Values["blk_ro"], s.Describe())
	require.Equal(t, "1", s.Values["ro_write_refused"], s.Describe())
	require.Equal(t, "1", s.Values["image_unchanged"], s.Describe())
}
