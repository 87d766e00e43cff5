// Package host tells whether this machine's KVM can run guest kernels,
// and says why not when it cannot.
package host

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ErrNoHardwareVirt reports a /dev/kvm that does not run guests on
// hardware virtualization (no vmx or svm CPU flag): ring-0 guest code
// then goes through KVM's instruction emulator, which cannot run Linux.
var ErrNoHardwareVirt = errors.New("this host's KVM has no hardware virtualization")

// Virtualization describes the CPU's virtualization support.
type Virtualization struct {
	Vendor string // "Intel VT-x", "AMD-V", or ""
	Flag   string // "vmx", "svm", or ""
	Module string // the loaded KVM vendor module, e.g. "kvm_intel"
}

// Hardware reports whether the CPU offers hardware virtualization.
func (v Virtualization) Hardware() bool { return v.Flag != "" }

// Detect reads /proc/cpuinfo and /sys/module. It runs no guest code, so
// it costs nothing at VM start-up.
func Detect() (Virtualization, error) {
	var v Virtualization
	for _, m := range []string{"kvm_intel", "kvm_amd", "kvm_pvm", "kvm"} {
		if _, err := os.Stat("/sys/module/" + m); err == nil {
			v.Module = m
			break
		}
	}
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return v, fmt.Errorf("read CPU flags: %w", err)
	}
	v.Flag = cpuFlag(data)
	switch v.Flag {
	case "vmx":
		v.Vendor = "Intel VT-x"
	case "svm":
		v.Vendor = "AMD-V"
	}
	return v, nil
}

// cpuFlag returns "vmx" or "svm" when the first CPU's flags list one.
func cpuFlag(cpuinfo []byte) string {
	s := bufio.NewScanner(bytes.NewReader(cpuinfo))
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		key, val, ok := strings.Cut(s.Text(), ":")
		if !ok || strings.TrimSpace(key) != "flags" {
			continue
		}
		for _, f := range strings.Fields(val) {
			if f == "vmx" || f == "svm" {
				return f
			}
		}
		return ""
	}
	return ""
}

// Explanation is what a user reads when guests cannot boot here.
func (v Virtualization) Explanation() string {
	mod := v.Module
	if mod == "" {
		mod = "unknown"
	}
	return fmt.Sprintf(`/dev/kvm exists, but this CPU reports neither vmx (Intel VT-x) nor svm (AMD-V),
and the KVM module loaded is %q. Without hardware virtualization, KVM runs guest
kernel (ring-0) code through its instruction emulator: about a thousand times
slower than native, and unable to execute instructions Linux needs while
booting (int3, iretq, xsave/xrstor). A Linux guest cannot boot on this host.
What to do:
  - run vmm on a machine or cloud VM with (nested) hardware virtualization
    enabled: /proc/cpuinfo must list vmx or svm;
  - or use the project's nested sandbox, which runs vmm inside a QEMU machine
    that emulates AMD-V: make boot (see README.md).`, mod)
}
