package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// kvmDebugfs holds a directory per VM, named PID-FD, with one counter per
// file (Documentation/virt/kvm/api.rst, "KVM statistics"; the level-1
// script mounts debugfs).
const kvmDebugfs = "/sys/kernel/debug/kvm"

// readKVMStats returns the VM-wide counters of pid's VM (summed over its
// vCPUs by KVM), as the guest is about to power off. KVM names the
// directory after the thread that created the VM, which in a Go program
// need not be the main thread: any of pid's threads may match.
func readKVMStats(pid int) (map[string]uint64, error) {
	tids, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, t := range tids {
		matches, err := filepath.Glob(filepath.Join(kvmDebugfs, t.Name()+"-*"))
		if err != nil {
			return nil, err
		}
		dirs = append(dirs, matches...)
	}
	if len(dirs) != 1 {
		return nil, fmt.Errorf("%d VM directories for the threads of pid %d in %s", len(dirs), pid, kvmDebugfs)
	}
	entries, err := os.ReadDir(dirs[0])
	if err != nil {
		return nil, err
	}
	stats := map[string]uint64{}
	for _, e := range entries {
		if e.IsDir() {
			continue // vcpuN: per-vCPU state, not counters
		}
		data, err := os.ReadFile(filepath.Join(dirs[0], e.Name()))
		if err != nil {
			continue // some files are not readable counters
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err == nil && n != 0 {
			stats[e.Name()] = n
		}
	}
	return stats, nil
}
