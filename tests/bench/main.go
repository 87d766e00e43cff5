// Command bench compares vmm with QEMU's microvm (make bench): the same
// guests, booted alternately by both VMMs in one level-1 sandbox run,
// measuring boot time, VMM start-up, memory overhead and virtio-blk and
// virtio-net throughput; plus VMM start-up on this machine's own /dev/kvm.
// It prints a table of medians and ratios and writes the samples and the
// summary as JSON.
//
//	go run ./tests/bench [flags]            the benchmark
//	go run ./tests/bench guest-kernel       build (or find) the minimal guest kernel
//
// See tests/bench/README.md.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

func main() {
	app := &cli.App{
		Name:  "bench",
		Usage: "compare vmm with QEMU microvm in the nested-KVM sandbox",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "runs", Value: 5, Usage: "boots per VMM, guest kernel and metric (alternating vmm/QEMU)"},
			&cli.StringFlag{Name: "json", Value: "bench-results.json", Usage: "where to write the results"},
			&cli.StringSliceFlag{Name: "kernels", Value: cli.NewStringSlice("debian", "minimal"), Usage: "guest kernels: debian (the cloud kernel), minimal (tests/guest/kernel/minimal.config), kvmguest (kvm_guest.config, virtio over PCI only)"},
			&cli.BoolFlag{Name: "pci", Value: true, Usage: "boot vmm over --transport pci too (a third column: PCI against MMIO)"},
			&cli.BoolFlag{Name: "build-kernel", Value: true, Usage: "build the minimal kernel if the cache has none (3 to 10 minutes)"},
			&cli.StringFlag{Name: "cmdline", Value: defaultGuestCmdline, Usage: "guest kernel command line (bench.* parameters are added)"},
			&cli.IntFlag{Name: "cpus", Value: 1, Usage: "guest vCPUs"},
			&cli.IntFlag{Name: "memory-mib", Value: 256, Usage: "guest RAM (MiB)"},
			&cli.IntFlag{Name: "disk-mib", Value: 256, Usage: "size of the raw disk image both VMMs get (0: none)"},
			&cli.Int64Flag{Name: "net-mib", Value: 64, Usage: "bytes the guest sends to level 1 over TCP, in MiB (0: no network)"},
			&cli.Int64Flag{Name: "net-down-mib", Usage: "with --net-mib: bytes level 1 sends the guest first, in MiB, checked by SHA-256 (0: none)"},
			&cli.Float64Flag{Name: "idle", Value: 2, Usage: "seconds the guest idles at init (memory sample)"},
			&cli.Float64Flag{Name: "io-seconds", Value: 2, Usage: "limit of each guest I/O test, seconds"},
			&cli.BoolFlag{Name: "command", Value: true, Usage: "the kernel-developer workflow: vmm run -- true against a plain boot, and a share read and walked (Debian's kernel over virtio-fs; the kvm_guest kernel over 9p, when built)"},
			&cli.IntFlag{Name: "command-runs", Value: 1, Usage: "with --command: its rounds (at most --runs)"},
			&cli.IntFlag{Name: "share-mib", Value: 256, Usage: "with --command: the size of the file the guest reads from the share, MiB"},
			&cli.IntFlag{Name: "share-files", Value: 20000, Usage: "with --command: the files of the tree the guest walks"},
			&cli.BoolFlag{Name: "snapshot", Value: true, Usage: "snapshot and restore vmm's guest each round (256 MiB and 1 GiB; first kernel only)"},
			&cli.IntFlag{Name: "clones", Value: 10, Usage: "with --snapshot: restores of one snapshot run at once, for their total RSS and PSS"},
			&cli.IntFlag{Name: "host-runs", Value: 15, Usage: "start-up measurements per VMM on this machine's /dev/kvm (0: skip)"},
			&cli.StringFlag{Name: "vmm", Usage: "use this static vmm binary instead of building ./cmd/vmm"},
			&cli.StringFlag{Name: "mode", Usage: "sandbox mode: nested or direct (default: detect; also $VMM_SANDBOX)"},
			&cli.DurationFlag{Name: "timeout", Value: 40 * time.Minute, Usage: "limit for the sandbox run"},
			&cli.BoolFlag{Name: "console", Usage: "show level 1's console while it runs"},
			&cli.BoolFlag{Name: "guest-console", Usage: "with --console: show the guests' consoles too (slows the runs)"},
		},
		Action: benchAction,
		Commands: []*cli.Command{{
			Name:   "guest-kernel",
			Usage:  "build the minimal guest kernel into the artifact cache (once) and print its path",
			Action: guestKernelAction,
		}},
	}
	if err := app.Run(os.Args); err != nil {
		var exit cli.ExitCoder
		if errors.As(err, &exit) {
			if msg := exit.Error(); msg != "" {
				fmt.Fprintln(os.Stderr, "bench:", msg)
			}
			os.Exit(exit.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func guestKernelAction(c *cli.Context) error {
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	env, err := newEnvironment(ctx)
	if err != nil {
		return err
	}
	p, err := minimalKernel(ctx, env.repo, env.cache, true, os.Stderr)
	if err != nil {
		return err
	}
	fmt.Println(p)
	return nil
}
