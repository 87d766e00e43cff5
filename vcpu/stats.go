package vcpu

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/vmm-dev/vmm/kvm"
)

// Stats counts a vCPU's exits to userspace by kind, and port I/O by port,
// so `vmm run --stats` shows where the guest leaves the fast path. Only
// the vCPU's own goroutine writes it.
type Stats struct {
	Exits map[string]uint64
	Ports map[uint16]uint64
}

func newStats() *Stats {
	return &Stats{Exits: map[string]uint64{}, Ports: map[uint16]uint64{}}
}

func (s *Stats) count(exit kvm.Exit) {
	switch e := exit.(type) {
	case kvm.IOIn:
		s.Exits["io-in"]++
		s.Ports[e.Port]++
	case kvm.IOOut:
		s.Exits["io-out"]++
		s.Ports[e.Port]++
	case kvm.MMIORead:
		s.Exits["mmio-read"]++
	case kvm.MMIOWrite:
		s.Exits["mmio-write"]++
	case kvm.Interrupted:
		s.Exits["interrupted"]++
	default:
		s.Exits[fmt.Sprintf("%T", exit)]++
	}
}

// Add folds o into s.
func (s *Stats) Add(o *Stats) {
	for k, n := range o.Exits {
		s.Exits[k] += n
	}
	for k, n := range o.Ports {
		s.Ports[k] += n
	}
}

// String prints the counters, busiest first.
func (s *Stats) String() string {
	var b strings.Builder
	var total uint64
	for _, n := range s.Exits {
		total += n
	}
	fmt.Fprintf(&b, "vCPU exits to userspace: %d\n", total)
	for _, k := range sortedByCount(s.Exits) {
		fmt.Fprintf(&b, "  %-14s %d\n", k, s.Exits[k])
	}
	if len(s.Ports) > 0 {
		fmt.Fprintf(&b, "port I/O exits by port:\n")
		for _, p := range sortedByCount(s.Ports) {
			fmt.Fprintf(&b, "  %#06x %d\n", p, s.Ports[p])
		}
	}
	return b.String()
}

func sortedByCount[K comparable](m map[K]uint64) []K {
	keys := slices.Collect(maps.Keys(m))
	slices.SortStableFunc(keys, func(a, b K) int {
		switch {
		case m[a] > m[b]:
			return -1
		case m[a] < m[b]:
			return 1
		}
		return strings.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
	return keys
}
