package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/tests/sandbox"
)

// acpiReport is the guest script that shows what the guest made of our
// ACPI tables: its CPU count, and every ACPI error or warning in its log
// (the acceptance check is that there are none).
const acpiReport = `n=$(dmesg | grep -i -E 'acpi.*(error|warn)' | tee /dev/stderr | wc -l)
echo "@@GUEST acpi_problems=$n cpus_seen=$(grep -c ^processor /proc/cpuinfo)"
dmesg | grep -i -E 'acpi.*(error|warn)' | sed 's/^/vmm guest: acpi problem: /'
`

// restartScript reboots the guest on its first boot and powers it off on
// the second; the disk ($DATA/boots.img) remembers which boot it is.
const restartScript = `mark=$(dd if=/dev/vda bs=1 count=5 2>/dev/null)
if [ "$mark" = "boot1" ]; then
	echo "@@GUEST second_boot=1"
	echo "vmm guest: second boot, powering off"
else
	echo "@@GUEST second_boot=0"
	printf boot1 | dd of=/dev/vda bs=1 count=5 conv=notrunc 2>/dev/null
	sync
	echo "vmm guest: first boot, rebooting"
	reboot -f
	sleep 10
fi
`

var acpiCPUCounts = []int{1, 2, 4}

var acpiGroup = &group{
	name:        "acpi",
	timeout:     8 * time.Minute,
	stepTimeout: 120 * time.Second,
	guestScripts: map[string]string{
		"acpi":    acpiReport,
		"restart": restartScript,
		// Without ACPI a kernel can only halt on poweroff: reboot instead.
		"reboot": "echo 'vmm guest: init reached, rebooting'\nreboot -f\nsleep 10\n",
	},
	files: []sandbox.File{{Name: "boots.img", Data: make([]byte, 1<<20)}},
	script: func() string {
		s := ""
		for _, n := range acpiCPUCounts {
			s += vmmRun(fmt.Sprintf("acpi-cpus%d", n), "GUEST_BZIMAGE", guestCmdline+" vmmtest=acpi",
				"--cpus", fmt.Sprint(n)) + "\n"
		}
		s += vmmRun("restart", "GUEST_BZIMAGE", guestCmdline+" vmmtest=restart",
			"--on-reboot", "restart", "--disk", `"$DATA/boots.img"`) + "\n"
		s += vmmRun("no-acpi", "GUEST_BZIMAGE", guestCmdline+" vmmtest=reboot", "--no-acpi") + "\n"
		return s
	}(),
}

// Debian's kernel sees exactly the vCPUs we give it (it finds them only in
// the MADT), logs no ACPI complaint about our tables, and its poweroff -f
// ends vmm through ACPI S5 ("reboot: Power down").
func TestACPICPUsAndPowerOff(t *testing.T) {
	for _, n := range acpiCPUCounts {
		t.Run(fmt.Sprintf("%dvCPUs", n), func(t *testing.T) {
			s := acpiGroup.step(t, fmt.Sprintf("acpi-cpus%d", n))
			requireCleanExit(t, s, "reboot: Power down")
			require.Equal(t, fmt.Sprint(n), s.Values["cpus_seen"], "CPUs in /proc/cpuinfo\n%s", s.Describe())
			require.Equal(t, "0", s.Values["acpi_problems"], "ACPI errors or warnings in the guest log\n%s", s.Describe())
			assert.False(t, s.Contains("did not stop the VM"), s.Describe())
		})
	}
}

// With --on-reboot restart, a guest reboot boots it again in a fresh VM.
func TestRebootRestart(t *testing.T) {
	s := acpiGroup.step(t, "restart")
	requireCleanExit(t, s, "vmm guest: second boot, powering off")
	require.True(t, s.Contains("vmm guest: first boot, rebooting"), s.Describe())
	require.True(t, s.Contains("guest reset: booting again"), s.Describe())
}

// Without ACPI the reference kernel (no MP table parser) still boots on one
// CPU; it cannot power off (a kernel without a power-off method halts), so
// the guest reboots, which the i8042 reset line turns into a clean exit.
func TestNoACPIBoots(t *testing.T) {
	s := acpiGroup.step(t, "no-acpi")
	requireCleanExit(t, s, "vmm guest: init reached, rebooting")
	require.Equal(t, "1", s.Values["cpus"], s.Describe())
}
