// Package results holds what the benchmark's two halves share: the
// samples the level-1 runner (tests/bench/benchrun) prints as "@@BENCH"
// console lines and the host program (tests/bench) aggregates, the
// runner's configuration, and parsers for what the VMMs and Linux report
// (vmm --stats, /proc/PID/smaps, strace).
package results

import (
	"encoding/json"
	"fmt"
	"strings"
)

// LinePrefix starts every console line of the level-1 runner that carries
// a sample.
const LinePrefix = "@@BENCH-SAMPLE "

// The VMMs compared.
const (
	// VMM is vmm with --transport mmio, the device model QEMU's microvm
	// has too.
	VMM  = "vmm"
	QEMU = "qemu"
	// VMMPCI is vmm with --transport pci: the same devices as virtio-pci
	// functions with MSI-X, for the transport comparison.
	VMMPCI = "vmm-pci"
)

// Kinds of runs.
const (
	// KindBoot boots the guest to its init, idles, runs the I/O tests
	// (when enabled) and powers off.
	KindBoot = "boot"
	// KindStartup starts the VMM under strace and stops it at its first
	// KVM_RUN.
	KindStartup = "startup"
	// KindAPI boots vmm through Firecracker's API socket and stops it at
	// the guest's init line.
	KindAPI = "api"
	// KindSnapshot boots vmm through the API to the guest's ticks,
	// snapshots it, and restores it in new processes (one, then many at
	// once).
	KindSnapshot = "snapshot"
	// KindCommand runs the kernel-developer workflow: vmm run -- CMD
	// against a plain boot, and a shared directory read and walked from
	// the guest against the same in level 1.
	KindCommand = "command"
)

// Sample is one run of one VMM.
type Sample struct {
	Kernel string `json:"kernel"` // "debian" or "minimal"
	VMM    string `json:"vmm"`
	Kind   string `json:"kind"`
	Round  int    `json:"round"`
	// Where is "sandbox" (level 1) or "host" (this machine's /dev/kvm).
	Where string `json:"where"`
	// Metrics are named as in Metrics (the metric table).
	Metrics map[string]float64 `json:"metrics"`
	// KVMStats are the level-1 kernel's per-VM counters from
	// /sys/kernel/debug/kvm/PID-FD/ as the guest finished.
	KVMStats map[string]uint64 `json:"kvm_stats,omitempty"`
	// VMMExits and VMMPorts are vmm --stats' exit counts.
	VMMExits map[string]uint64 `json:"vmm_exits,omitempty"`
	VMMPorts map[string]uint64 `json:"vmm_ports,omitempty"`
	Notes    []string          `json:"notes,omitempty"`
	Error    string            `json:"error,omitempty"`
	// ConsoleTail is the end of the guest console and the VMM's stderr
	// when the run failed.
	ConsoleTail []string `json:"console_tail,omitempty"`
}

// Line renders s as one console line.
func (s *Sample) Line() (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("sample %s/%s: %w", s.Kernel, s.VMM, err)
	}
	return LinePrefix + string(b), nil
}

// ParseLine returns the sample of a console line, ok=false for other lines.
func ParseLine(line string) (*Sample, bool, error) {
	i := strings.Index(line, LinePrefix)
	if i < 0 {
		return nil, false, nil
	}
	var s Sample
	if err := json.Unmarshal([]byte(line[i+len(LinePrefix):]), &s); err != nil {
		return nil, true, fmt.Errorf("sample line: %w", err)
	}
	return &s, true, nil
}

// SetMetric records a metric, creating the map on first use.
func (s *Sample) SetMetric(name string, v float64) {
	if s.Metrics == nil {
		s.Metrics = map[string]float64{}
	}
	s.Metrics[name] = v
}

// Notef adds a note.
func (s *Sample) Notef(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}
