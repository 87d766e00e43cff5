package tests

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/tests/sandbox"
)

// The reboot matrix: every way Linux (arch/x86/kernel/reboot.c) reboots
// Debian's kernel on vmm's machine, with the command line a user types,
// "console=ttyS0 panic=-1" ($GUEST_QUIET adds quiet in nested mode), plus only the reboot= option under test (and
// vmmtest=NAME, which picks the guest script). Each must end vmm with
// status 0; --stats shows which port the guest reset through.
//
// What each option does here (Linux 6.1):
//   - none: reboot_init sees a hardware-reduced FADT and picks BOOT_EFI;
//     without EFI, efi_reboot returns and BOOT_BIOS jumps to the real-mode
//     reset vector f000:fff0, where package firmware asks 0xcf9 for a reset.
//   - a: the FADT's reset register, port 0x604.
//   - k: the i8042's reset pulse, port 0x64.
//   - p: BOOT_CF9_FORCE, port 0xcf9, PCI or not.
//   - q: BOOT_CF9_SAFE is not a command-line letter (reboot_setup ignores
//     it); any reboot= turns off reboot_init's EFI pick, so this is the
//     generic default, BOOT_ACPI: port 0x604. CF9_SAFE is only reached
//     after a BIOS jump returns, and writes 0xcf9 only when PCI
//     configuration mechanism 1 was detected (port_cf9_safe).
//   - b: BOOT_BIOS, the reset vector.
//   - e: BOOT_EFI, no EFI, then BOOT_BIOS: the reset vector.
var rebootMethods = []struct {
	name   string
	option string // reboot= option, "" for none
	port   uint16 // the port the reset went through
}{
	{"default", "", 0xcf9},
	{"a", "reboot=a", 0x604},
	{"k", "reboot=k", 0x64},
	{"p", "reboot=p", 0xcf9},
	{"q", "reboot=q", 0x604},
	{"b", "reboot=b", 0xcf9},
	{"e", "reboot=e", 0xcf9},
}

// panicCases: a guest kernel panic ends vmm with status 1 and the panic on
// stderr, whatever panic= says, promptly: panic=-1 resets at once, panic=1
// after a second, panic=0 never. With pvpanic-mmio bound to our QEMU0001
// device the guest tells vmm at once; with the driver unloaded, vmm's
// watch of the console catches the banner.
var panicCases = []struct {
	name, cmdline string
	pvpanic       bool
}{
	{"panic-1", "console=ttyS0 panic=-1 $GUEST_QUIET", true},
	{"panic1", "console=ttyS0 panic=1 $GUEST_QUIET", true},
	{"panic0", "console=ttyS0 panic=0 $GUEST_QUIET", true},
	{"panic0-console", "console=ttyS0 panic=0 $GUEST_QUIET", false},
	{"panic-1-console", "console=ttyS0 panic=-1 $GUEST_QUIET", false},
}

// panicScript panics the guest through sysrq (built into Debian's kernel;
// /proc/sysrq-trigger works whatever kernel.sysrq masks), after saying
// whether pvpanic-mmio drives our device.
const panicScript = `d=/sys/bus/platform/drivers/pvpanic-mmio
if ls "$d" 2>/dev/null | grep -q QEMU0001; then echo "@@GUEST pvpanic=1"; else echo "@@GUEST pvpanic=0"; fi
echo "vmm guest: triggering a kernel panic"
echo c > /proc/sysrq-trigger
sleep 10
echo "vmm guest: still running after the panic"
`

// busyboxInitScript replaces the guest's PID 1 (a shell, which ignores the
// signal a plain reboot sends) with busybox init, the way a busybox system
// boots; its once-action runs a plain reboot, which signals init (SIGTERM),
// which runs its shutdown actions, kills every process and calls reboot(2),
// the same system call reboot -f and systemd make last.
const busyboxInitScript = `cat > /etc/inittab <<'EOF'
::sysinit:/bin/echo "vmm guest: busybox init running"
::once:/bin/sh -c 'echo "vmm guest: plain reboot"; reboot'
::shutdown:/bin/echo "vmm guest: busybox init shutting down"
EOF
exec /bin/init
`

var rebootGroup = &group{
	name:        "reboot",
	timeout:     14 * time.Minute,
	stepTimeout: 90 * time.Second,
	guestScripts: map[string]string{
		"reboot": `echo "vmm guest: reboot -f"
reboot -f
sleep 10
echo "vmm guest: reboot -f did not stop the VM"
`,
		"init-busybox": busyboxInitScript,
	},
	script: func() string {
		var b strings.Builder
		for _, m := range rebootMethods {
			b.WriteString(vmmRun("reboot-"+m.name, "GUEST_BZIMAGE",
				strings.Join(strings.Fields("console=ttyS0 panic=-1 $GUEST_QUIET "+m.option), " ")+" vmmtest=reboot",
				"--stats") + "\n")
		}
		b.WriteString(vmmRun("reboot-busybox-init", "GUEST_BZIMAGE",
			"console=ttyS0 panic=-1 $GUEST_QUIET vmmtest=init-busybox", "--stats") + "\n")
		return b.String()
	}(),
}

// panicGroup is the panic matrix, in a level-1 boot of its own so that a
// sandbox fault repeats fewer boots (tests/README.md).
var panicGroup = &group{
	name:        "panic",
	timeout:     10 * time.Minute,
	stepTimeout: 90 * time.Second,
	guestScripts: map[string]string{
		"panic": panicScript,
		"panic-nopvpanic": "rmmod pvpanic_mmio || echo 'vmm guest: rmmod pvpanic_mmio failed'\n" +
			panicScript,
	},
	script: func() string {
		var b strings.Builder
		for _, p := range panicCases {
			script := "panic"
			if !p.pvpanic {
				script = "panic-nopvpanic"
			}
			b.WriteString(vmmRun(p.name, "GUEST_BZIMAGE", p.cmdline+" vmmtest="+script) + "\n")
		}
		return b.String()
	}(),
}

// requireResetThrough checks the step's --stats: the guest accessed the
// port it was meant to reset through ("port I/O exits by port:" lists
// each as "  %#06x COUNT", vcpu/stats.go).
func requireResetThrough(t *testing.T, s *sandbox.Step, port uint16) {
	t.Helper()
	want := fmt.Sprintf("%#06x", port)
	for _, l := range s.Console {
		if f := strings.Fields(l.Text); len(f) == 2 && f[0] == want {
			return
		}
	}
	require.Fail(t, "no port I/O exits at "+want+" in --stats", s.Describe())
}

func TestRebootMatrix(t *testing.T) {
	for _, m := range rebootMethods {
		t.Run(m.name, func(t *testing.T) {
			s := rebootGroup.step(t, "reboot-"+m.name)
			requireCleanExit(t, s, "vmm guest: reboot -f")
			require.True(t, s.Contains("reboot: Restarting system"), s.Describe())
			require.False(t, s.Contains("reboot -f did not stop the VM"), s.Describe())
			requireResetThrough(t, s, m.port)
		})
	}
}

// A plain reboot (no -f) under busybox init, by the default path.
func TestRebootBusyboxInit(t *testing.T) {
	s := rebootGroup.step(t, "reboot-busybox-init")
	requireCleanExit(t, s, "vmm guest: plain reboot")
	require.True(t, s.Contains("vmm guest: busybox init shutting down"), s.Describe())
	require.True(t, s.Contains("reboot: Restarting system"), s.Describe())
	requireResetThrough(t, s, 0xcf9)
}

func TestGuestPanicMatrix(t *testing.T) {
	for _, p := range panicCases {
		t.Run(p.name, func(t *testing.T) {
			s := panicGroup.step(t, p.name)
			require.True(t, s.Contains("Kernel panic - not syncing: sysrq triggered crash"), "the guest did not panic\n%s", s.Describe())
			require.False(t, s.TimedOut, "vmm did not exit after the guest panicked\n%s", s.Describe())
			require.Equal(t, 1, s.RC, s.Describe())
			assert.Contains(t, s.ErrorLine, "guest kernel panicked", s.Describe())
			assert.Contains(t, s.ErrorLine, "Kernel panic - not syncing: sysrq triggered crash", "the panic on stderr\n%s", s.Describe())
			assert.False(t, s.Contains("still running after the panic"), s.Describe())
			if p.pvpanic {
				require.Equal(t, "1", s.Values["pvpanic"], "pvpanic-mmio did not bind to QEMU0001\n%s", s.Describe())
				assert.Contains(t, s.ErrorLine, "pvpanic", s.Describe())
				// vmm stops at the guest's pvpanic write, before the
				// kernel's reboot delay begins.
				assert.False(t, s.Contains("Rebooting in"), s.Describe())
			} else {
				require.Equal(t, "0", s.Values["pvpanic"], s.Describe())
			}
		})
	}
}
