package tests

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Guest command lines. $GUEST_CMDLINE is sandbox.DefaultGuestCmdline
// ("console=ttyS0 panic=1"); vmmtest=NAME selects the guest script.
const (
	guestCmdline = "$GUEST_CMDLINE"
	// guestPanicCmdline keeps panic=1: after a panic the guest kernel
	// requests a reset one second later, just like `reboot -f` does. The
	// vmm learns of the panic first from its pvpanic device ("QEMU0001"
	// in the DSDT; the guest initramfs loads pvpanic-mmio.ko); the
	// reboot group (reboot_test.go) covers the other panic= values.
	guestPanicCmdline = "$GUEST_CMDLINE panic=1 vmmtest=panic"
)

// bootGroup boots the reference guest (Debian's cloud kernel) four times in
// one level-1 machine: bzImage, vmlinux through PVH, a guest that reboots,
// one that panics.
var bootGroup = &group{
	name:         "boot",
	needsVmlinux: true,
	timeout:      8 * time.Minute,
	stepTimeout:  90 * time.Second,
	guestScripts: map[string]string{
		"reboot": `echo "vmm guest: reboot -f"
reboot -f
sleep 10
echo "vmm guest: reboot -f did not stop the VM"
`,
		"panic": `echo "vmm guest: triggering a kernel panic"
echo c > /proc/sysrq-trigger
sleep 10
echo "vmm guest: still running after the panic"
`,
	},
	script: vmmRun("bzimage", "GUEST_BZIMAGE", guestCmdline) + "\n" +
		vmmRun("pvh", "GUEST_VMLINUX", guestCmdline) + "\n" +
		vmmRun("reboot", "GUEST_BZIMAGE", guestCmdline+" vmmtest=reboot") + "\n" +
		vmmRun("panic", "GUEST_BZIMAGE", guestPanicCmdline) + "\n",
}

func TestBootBzImageToInit(t *testing.T) {
	s := bootGroup.step(t, "bzimage")
	requireCleanExit(t, s, "vmm guest: init reached")
	assert.NotEmpty(t, s.Values["kernel"], "guest did not report its kernel release")
}

func TestBootVmlinuxPVH(t *testing.T) {
	s := bootGroup.step(t, "pvh")
	requireCleanExit(t, s, "vmm guest: init reached")
}

// The default guest script ends with `poweroff -f` and falls back to
// `reboot -f` after 5 s: a clean exit without the fallback line means the
// power-off itself stopped the vmm.
func TestGuestPowerOffExits(t *testing.T) {
	s := bootGroup.step(t, "bzimage")
	requireCleanExit(t, s, "vmm guest: poweroff -f")
	require.False(t, s.Contains("poweroff -f did not stop the VM"), s.Describe())
}

func TestGuestRebootExits(t *testing.T) {
	s := bootGroup.step(t, "reboot")
	requireCleanExit(t, s, "vmm guest: reboot -f")
	require.False(t, s.Contains("reboot -f did not stop the VM"), s.Describe())
}

// A guest kernel panic must not look like success: the vmm exits non-zero,
// and promptly (not by its step timeout).
func TestGuestPanicFails(t *testing.T) {
	s := bootGroup.step(t, "panic")
	require.True(t, s.Contains("Kernel panic"), "the guest did not panic\n%s", s.Describe())
	require.False(t, s.TimedOut, "the vmm did not exit after the guest panicked\n%s", s.Describe())
	require.NotEqual(t, 0, s.RC, "the vmm exited 0 after a guest panic\n%s", s.Describe())
}
