package tests

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/tests/sandbox"
)

// virtio over PCI: Debian's cloud kernel with its virtio_pci module
// finds the disks and NICs on PCI bus 0 (MSI-X interrupts), with 1 vCPU
// and 2 and 4 (VMM_E2E_PCI_SMP=0 leaves those out), and 16 disks and 8
// NICs in one VM.
//
// The 172.30.2.0/24 addresses live only on a TAP link inside level 1.

// pciDmesgBad counts kernel messages about PCI or ACPI that say
// something is wrong with what we describe. Linux prints "if necessary,
// use pci=nocrs and report a bug" whenever it uses _CRS windows: that
// line is advice, not a complaint.
const pciDmesgBad = `dmesg | grep -iE 'pci|acpi|mmconfig|ecam|_prt|_crs' | grep -iE 'error|warn|fail|bug|conflict|not reserved|invalid|bad|corrupt|ignor' |
	grep -v 'pci=nocrs' > /tmp/bad.txt
echo "@@GUEST dmesg_bad=$(wc -l < /tmp/bad.txt)"
sed 's/^/bad| /' /tmp/bad.txt
`

const pciGuest = `
echo "@@GUEST pci_functions=$(ls /sys/bus/pci/devices | wc -l)"
n=0
for d in /sys/bus/pci/devices/*; do
	drv=none
	[ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
	echo "pci| $(basename "$d") $(cat "$d/vendor"):$(cat "$d/device") class=$(cat "$d/class") driver=$drv irq=$(cat "$d/irq")"
	[ "$drv" = virtio-pci ] && n=$((n + 1))
done
echo "@@GUEST virtio_pci_bound=$n"
msix=$(grep -c 'PCI-MSI' /proc/interrupts)
echo "@@GUEST msix_irqs=$msix"
if mount -t ext4 -o ro /dev/vda /mnt; then
	want=$(cat /mnt/hello.sha256)
	got=$(sha256sum /mnt/hello.bin | cut -d' ' -f1)
	echo "@@GUEST host_file_ok=$([ "$want" = "$got" ] && echo 1 || echo 0)"
	umount /mnt
else
	echo "@@GUEST host_file_ok=0"
fi
if [ -e /sys/class/net/eth0 ]; then
	echo "@@GUEST eth0=1"
	ip addr add 172.30.2.2/24 dev eth0
	ip link set eth0 up
	if ping -c 2 -W 5 172.30.2.1 > /dev/null; then echo "@@GUEST ping=ok"; else echo "@@GUEST ping=fail"; fi
else
	echo "@@GUEST eth0=0"
fi
` + pciDmesgBad

const pciManyGuest = `
echo "@@GUEST disks=$(ls -d /sys/block/vd* | wc -l) nics=$(ls -d /sys/class/net/eth* | wc -l)"
echo "@@GUEST msix_irqs=$(grep -c 'PCI-MSI' /proc/interrupts)"
if mount -t ext4 -o ro /dev/vdp /mnt; then
	want=$(cat /mnt/hello.sha256)
	got=$(sha256sum /mnt/hello.bin | cut -d' ' -f1)
	echo "@@GUEST last_disk_ok=$([ "$want" = "$got" ] && echo 1 || echo 0)"
	umount /mnt
fi
` + pciDmesgBad

func pciRun(step string, cpus int) string {
	return vmmRun(step, "GUEST_BZIMAGE", guestCmdline+" vmmtest=pci", "--transport", "pci", "--cpus", fmt.Sprint(cpus),
		"--disk", `"$DATA/disk.img,ro"`, "--net", "tap=tap0")
}

func pciManyRun() string {
	args := []string{"--transport", "pci", "--cpus", "1", "--memory", "1G"}
	for i := 0; i < 16; i++ {
		args = append(args, "--disk", `"$DATA/disk.img,ro"`)
	}
	for i := 0; i < 8; i++ {
		args = append(args, "--net", fmt.Sprintf("tap=tapm%d", i))
	}
	return vmmRun("pci-many", "GUEST_BZIMAGE", guestCmdline+" vmmtest=pcimany", args...)
}

var pciGroup = &group{
	name:        "pci",
	timeout:     12 * time.Minute,
	stepTimeout: 150 * time.Second,
	guestScripts: map[string]string{
		"pci":     pciGuest,
		"pcimany": pciManyGuest,
	},
	script: `
tunctl -t tap0 > /dev/null
ip addr add 172.30.2.1/24 dev tap0
ip link set tap0 up
` + pciSMPRuns() + `
tunctl -d tap0 > /dev/null
`,
}

// pciSMPEnv, set to "0", leaves out the 2- and 4-vCPU PCI boots. They were
// off by default after the suite run of 2026-12-01 at noon, where the PCI
// group failed twice in a row with 2 vCPUs (vCPU 1 triple-faulted during
// enumeration; then level 1 froze) while every other boot passed. With
// level 1 on QEMU 10 both passed every check (2026-12-01 17:05; the 4-vCPU
// boot's last metric was cut by the kernel's power-down line, which the
// test now allows for), so they run again.
const pciSMPEnv = "VMM_E2E_PCI_SMP"

func pciSMPRuns() string {
	s := pciRun("pci-1cpu", 1) + "\n"
	if os.Getenv(pciSMPEnv) != "0" {
		s += pciRun("pci-2cpu", 2) + "\n" + pciRun("pci-4cpu", 4) + "\n"
	}
	return s
}

// pciManyGroup is a level-1 boot of its own, so that a sandbox fault in
// one of the two groups repeats fewer boots (tests/README.md).
var pciManyGroup = &group{
	name:         "pci-many",
	timeout:      8 * time.Minute,
	stepTimeout:  150 * time.Second,
	guestScripts: map[string]string{"pcimany": pciManyGuest},
	script:       pciManyRun(),
}

func pciGroupFor(t *testing.T, g *group) *group {
	t.Helper()
	diskOnce.Do(func() { diskImage, diskErr = makeExt4Image() })
	require.NoError(t, diskErr)
	g.files = []sandbox.File{{Name: "disk.img", HostPath: diskImage}}
	return g
}

func TestPCIDiskAndNet(t *testing.T) {
	for _, step := range []string{"pci-1cpu", "pci-2cpu", "pci-4cpu"} {
		t.Run(step, func(t *testing.T) {
			if step != "pci-1cpu" && os.Getenv(pciSMPEnv) == "0" {
				t.Skipf("%s=0 leaves out the PCI boots with several vCPUs (tests/pci_test.go, pciSMPEnv)", pciSMPEnv)
			}
			s := pciGroupFor(t, pciGroup).step(t, step)
			requireCleanExit(t, s, "vmm guest: poweroff -f")
			d := s.Describe()
			assert.Equal(t, "3", s.Values["pci_functions"], "host bridge, virtio-blk, virtio-net\n%s", d)
			assert.Equal(t, "2", s.Values["virtio_pci_bound"], d)
			assert.Equal(t, "1", s.Values["host_file_ok"], "checksum of the host's file read from /dev/vda\n%s", d)
			assert.Equal(t, "1", s.Values["eth0"], d)
			assert.Equal(t, "ok", s.Values["ping"], d)
			assert.NotEqual(t, "0", s.Values["msix_irqs"], "interrupts come through MSI-X\n%s", d)
			// The script's last line races the kernel's "reboot: Power
			// down" on the console: the tty sends user output from the
			// UART's interrupt while printk writes at once, so the
			// kernel's line can land right after the value, "0[  12.7...".
			bad, _, _ := strings.Cut(s.Values["dmesg_bad"], "[")
			assert.Equal(t, "0", bad, "PCI/ACPI complaints in dmesg\n%s", d)
		})
	}
}

func TestPCIManyDevices(t *testing.T) {
	s := pciGroupFor(t, pciManyGroup).step(t, "pci-many")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	d := s.Describe()
	assert.Equal(t, "16", s.Values["disks"], d)
	assert.Equal(t, "8", s.Values["nics"], d)
	assert.Equal(t, "1", s.Values["last_disk_ok"], "/dev/vdp reads intact\n%s", d)
	assert.Equal(t, "0", s.Values["dmesg_bad"], d)
	assert.False(t, strings.Contains(s.Tail(200), "needs reset"), d)
}
