package sandbox

import (
	"fmt"
	"os"
	"strings"
)

// Mode is where a level-1 script runs.
type Mode string

const (
	// ModeNested boots the level-1 machine in QEMU TCG emulating AMD-V,
	// whose Debian kernel gives a real /dev/kvm.
	ModeNested Mode = "nested"
	// ModeDirect runs the script on the host, which has hardware KVM.
	ModeDirect Mode = "direct"
)

// ModeEnv forces a mode: VMM_SANDBOX=nested or VMM_SANDBOX=direct.
const ModeEnv = "VMM_SANDBOX"

// DetectMode picks direct mode when the host has hardware virtualization
// (vmx or svm in /proc/cpuinfo) and /dev/kvm opens, nested mode otherwise,
// unless $VMM_SANDBOX forces one. The string says why.
func DetectMode() (Mode, string, error) {
	switch forced := os.Getenv(ModeEnv); forced {
	case "":
	case string(ModeNested), string(ModeDirect):
		return Mode(forced), ModeEnv + "=" + forced, nil
	default:
		return "", "", fmt.Errorf("sandbox: %s=%q: want %q or %q", ModeEnv, forced, ModeNested, ModeDirect)
	}
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ModeNested, "cannot read /proc/cpuinfo", nil
	}
	if !hasVirtFlag(string(cpuinfo)) {
		// A /dev/kvm without vmx/svm is an emulator that cannot run Linux
		// guests (see ENVIRONMENT.md: kvm_pvm).
		return ModeNested, "the CPU has no vmx/svm flag", nil
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return ModeNested, fmt.Sprintf("/dev/kvm does not open: %v", err), nil
	}
	if err := f.Close(); err != nil {
		return ModeNested, fmt.Sprintf("/dev/kvm: %v", err), nil
	}
	return ModeDirect, "the CPU has vmx/svm and /dev/kvm opens", nil
}

func hasVirtFlag(cpuinfo string) bool {
	for _, line := range strings.Split(cpuinfo, "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, flag := range strings.Fields(value) {
			if flag == "vmx" || flag == "svm" {
				return true
			}
		}
	}
	return false
}
