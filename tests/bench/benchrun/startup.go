package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/vmm-dev/vmm/tests/bench/internal/results"
)

// command returns the argv that boots kernel k with vmm; for QEMU also
// the listener its port-0x80 device (isa-debugcon) writes to, which the
// caller closes.
func (r *runner) command(k results.KernelSpec, vmm string) ([]string, *port80Listener, error) {
	if vmm != results.QEMU {
		return r.vmmArgs(k, vmm), nil, nil
	}
	port80, err := listenPort80(r.scratch("p80.sock"))
	if err != nil {
		return nil, nil, err
	}
	return r.qemuArgs(k, port80.path), port80, nil
}

// startup runs the VMM under strace, with the same arguments as a boot,
// and kills it at its first KVM_RUN: process start-up, measured the same
// way for both VMMs. strace stops the VMM at every ioctl, which costs QEMU
// (about 170 ioctls before its first KVM_RUN) more than vmm (about 20).
func (r *runner) startup(k results.KernelSpec, vmm string, round int) *results.Sample {
	s := &results.Sample{Kernel: k.Name, VMM: vmm, Kind: results.KindStartup, Round: round}
	argv, port80, err := r.command(k, vmm)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	if port80 != nil {
		defer port80.close()
	}
	argv = append(append(r.cfg.Strace.Command(), results.StraceArgs...), argv...)
	var trace results.StraceStartup
	untilFirstRun(s, argv, "strace", func(p *proc, text string) bool {
		if !trace.Feed(text) {
			return false
		}
		s.SetMetric(results.StartupStrace, ms(trace.Startup()))
		return true
	})
	return s
}

// qemuStartup runs QEMU with its vCPU ioctls traced (no ptrace) and kills
// it at the first KVM_RUN: QEMU's own report of its start-up, like vmm's
// --stats line in the boot runs.
func (r *runner) qemuStartup(k results.KernelSpec, round int) *results.Sample {
	s := &results.Sample{Kernel: k.Name, VMM: results.QEMU, Kind: results.KindStartup, Round: round}
	argv, port80, err := r.command(k, results.QEMU)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	defer port80.close()
	argv = append(argv, results.QEMUTraceArgs...)
	untilFirstRun(s, argv, "QEMU", func(p *proc, text string) bool {
		at, ok := results.QEMUFirstRun(text)
		if ok {
			s.SetMetric(results.StartupSelf, ms(at.Sub(p.fork)))
		}
		return ok
	})
	return s
}

// untilFirstRun starts argv and feeds its output lines to firstRun until
// it reports the first KVM_RUN, then kills the process; failures go to
// s.Error.
func untilFirstRun(s *results.Sample, argv []string, what string, firstRun func(p *proc, text string) bool) {
	p, err := start(argv, true)
	if err != nil {
		s.Error = fmt.Sprintf("start %s: %v", what, err)
		return
	}
	defer p.wait(10 * time.Second)
	deadline := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				s.Error = "the VMM ended before its first KVM_RUN: " + strings.Join(p.tailLines(), " | ")
				return
			}
			if firstRun(p, l.text) {
				p.kill()
				return
			}
		case <-deadline:
			p.kill()
			s.Error = "no KVM_RUN within 60 s"
			s.ConsoleTail = p.tailLines()
			return
		}
	}
}
