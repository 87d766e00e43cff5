// Command benchrun is the level-1 half of `make bench`: inside the sandbox
// (or directly on a host with hardware KVM) it boots the same guests with
// vmm and QEMU's microvm, alternating, and prints one "@@BENCH-SAMPLE
// {json}" console line per run for the host program (tests/bench) to
// aggregate.
//
//	benchrun CONFIG.json
//
// Paths in the configuration may use $DATA, $WORK, $GUEST_INITRD and the
// other variables of the sandbox's scenario environment.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/vmm-dev/vmm/tests/bench/internal/results"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchrun CONFIG.json")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Printf("@@BENCH-FATAL %v\n", err)
		os.Exit(1)
	}
}

func run(configPath string) error {
	cfg, err := loadConfig(configPath)
	if err != nil {
		return err
	}
	r, err := newRunner(cfg)
	if err != nil {
		return err
	}
	defer r.close()
	start := time.Now()
	for round := 0; round < cfg.Rounds; round++ {
		// ABBA order: a drift in level 1's speed over the run (another
		// load on the host) then favours neither VMM.
		order := []string{results.VMM, results.QEMU}
		if cfg.PCI {
			order = append(order, results.VMMPCI)
		}
		if round%2 == 1 {
			slices.Reverse(order)
		}
		for _, k := range cfg.Kernels {
			for _, v := range order {
				r.emit(r.boot(k, v, round))
			}
			// The same guest through Firecracker's API (vmm only).
			r.emit(r.apiBoot(k, round))
		}
		if cfg.Snapshot != nil {
			r.emit(r.snapshotBench(cfg.Kernels[0], round))
		}
		if c := cfg.Command; c != nil && round < c.Rounds {
			for _, ck := range c.Kernels {
				r.emit(r.commandBench(ck, round))
			}
		}
		for _, k := range cfg.Kernels {
			// vmm reports its start-up in every boot run; QEMU's
			// trace costs a run of its own.
			r.emit(r.qemuStartup(k, round))
			if cfg.Strace.Binary != "" {
				for _, v := range order {
					r.emit(r.startup(k, v, round))
				}
			}
		}
		fmt.Printf("bench: round %d of %d done after %.0fs\n", round+1, cfg.Rounds, time.Since(start).Seconds())
	}
	fmt.Println("@@BENCH-END")
	return nil
}

func loadConfig(path string) (*results.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var cfg results.Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if len(cfg.Kernels) == 0 || cfg.Rounds < 1 {
		return nil, fmt.Errorf("config %s: no kernels or rounds", path)
	}
	expand := func(p *string) { *p = os.ExpandEnv(*p) }
	expand(&cfg.Initrd)
	expand(&cfg.VMM)
	expand(&cfg.Disk)
	expand(&cfg.Work)
	expand(&cfg.QEMUDataDir)
	if c := cfg.Command; c != nil {
		expand(&c.Dir)
		for i := range c.Kernels {
			expand(&c.Kernels[i].BzImage)
			expand(&c.Kernels[i].Modules)
		}
	}
	for _, d := range []*results.Dynamic{&cfg.QEMU, &cfg.Strace} {
		expand(&d.Loader)
		expand(&d.LibDir)
		expand(&d.Binary)
	}
	for i := range cfg.Kernels {
		expand(&cfg.Kernels[i].BzImage)
	}
	return &cfg, nil
}

// emit prints the sample's console line.
func (r *runner) emit(s *results.Sample) {
	s.Where = "sandbox"
	line, err := s.Line()
	if err != nil {
		fmt.Printf("@@BENCH error %v\n", err)
		return
	}
	fmt.Println(line)
	status := "ok"
	if s.Error != "" {
		status = "FAILED: " + s.Error
	}
	fmt.Printf("bench: %s %s %s round %d: %s %s\n", s.Kind, s.Kernel, s.VMM, s.Round, brief(s), status)
}

func brief(s *results.Sample) string {
	out := ""
	for _, k := range []string{results.BootConsole, results.StartupSelf, results.StartupStrace, results.RSSOverhead,
		results.SnapBootTick, results.RestoreRun256, results.RestoreTick256, results.RestoreTick1G, results.ClonesPSS,
		results.CmdTrue, results.CmdPlain, results.ShareRead, results.ShareFind} {
		if v, ok := s.Metrics[k]; ok {
			out += fmt.Sprintf("%s=%.1f ", k, v)
		}
	}
	return out
}
