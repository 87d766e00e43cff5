package tests

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// smpCounts are the vCPU counts TestSMP boots; the Debian kernel finds the
// secondary CPUs only through the ACPI MADT (CONFIG_X86_MPPARSE is off).
var smpCounts = []int{2, 4}

var smpGroup = &group{
	name:        "smp",
	timeout:     5 * time.Minute,
	stepTimeout: 90 * time.Second,
	script:      smpScript(),
}

func smpScript() string {
	var script string
	for _, n := range smpCounts {
		script += vmmRun(fmt.Sprintf("cpus%d", n), "GUEST_BZIMAGE", guestCmdline, "--cpus", fmt.Sprint(n)) + "\n"
	}
	return script
}

func TestSMP(t *testing.T) {
	for _, n := range smpCounts {
		t.Run(fmt.Sprintf("%dvCPUs", n), func(t *testing.T) {
			s := smpGroup.step(t, fmt.Sprintf("cpus%d", n))
			requireCleanExit(t, s, "vmm guest: init reached")
			require.Equal(t, fmt.Sprint(n), s.Values["cpus"], "processors the guest found\n%s", s.Describe())
		})
	}
}
