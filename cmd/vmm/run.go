package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vmm-dev/vmm/console"
	"github.com/vmm-dev/vmm/devices"
	"github.com/vmm-dev/vmm/host"
	"github.com/vmm-dev/vmm/machine"
)

func runCommand() *cli.Command {
	return &cli.Command{
		Name:      "run",
		Usage:     "boot a Linux kernel in a new micro-VM",
		ArgsUsage: "[-- CMD [ARGS...]]",
		Description: "run boots KERNEL (a bzImage, or an ELF vmlinux with or without a PVH entry note) with a\n" +
			"serial console on COM1. It exits 0 when the guest powers off or reboots, and non-zero\n" +
			"with a one-line reason on a guest crash, a KVM error, or bad arguments; 128+n when\n" +
			"signal n (SIGINT, SIGTERM, SIGHUP) stopped it.\n\n" +
			"On an interactive terminal, type Ctrl-A then x to quit, Ctrl-A h for help.\n\n" +
			"With -- CMD, run boots the kernel with vmm itself as its init, runs CMD in the host's\n" +
			"current directory (the host's / read-only with a copy-on-write layer, the directory\n" +
			"writable) with vmm's stdin, stdout and stderr, and exits with CMD's status: 128+n for\n" +
			"signal n, 122 when the guest kernel panicked, 123 when the guest never reached CMD,\n" +
			"124 when --timeout expired, 125 when vmm could not start the VM.",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "kernel", Aliases: []string{"k"}, Usage: "guest kernel `PATH`: bzImage, or ELF vmlinux (PVH entry when it has the note)"},
			&cli.StringFlag{Name: "initrd", Aliases: []string{"i"}, Usage: "initial ramdisk `PATH` (cpio archive, optionally compressed)"},
			&cli.StringFlag{Name: "cmdline", Aliases: []string{"c"}, Value: machine.DefaultCmdline, Usage: "kernel command `LINE`; virtio-mmio device announcements are appended"},
			&cli.IntFlag{Name: "cpus", Value: machine.DefaultCPUs, Usage: "number of vCPUs, `N` (1 up to the host's KVM limit)"},
			&cli.StringFlag{Name: "memory", Aliases: []string{"m"}, Value: "512M", Usage: "guest RAM `SIZE`: a number with K, M, G or T suffix (bare number: MiB)"},
			&cli.StringFlag{Name: "console", Value: "stdio", Usage: "where the serial console goes, `MODE`: stdio (output to stdout, input from stdin), none, or file=PATH"},
			&cli.StringSliceFlag{Name: "disk", Usage: "virtio-blk disk from a raw image `PATH[,ro][,bw=RATE][,iops=N]` (repeatable; the first is /dev/vda; bw in bytes/s and iops limit its I/O, e.g. bw=1M)"},
			&cli.StringSliceFlag{Name: "net", Usage: "virtio-net interface on a host TAP device `tap=NAME[,mac=MAC][,LIMIT...]` (repeatable; created if missing); LIMIT: rx-bw=RATE, tx-bw=RATE, rx-iops=N, tx-iops=N, or bw=/iops= for both directions; mrg-rxbuf=off withholds mergeable receive buffers"},
			&cli.StringFlag{Name: "entropy", Usage: "a virtio-rng device fed by the host's getrandom, `SPEC`: on, or bw=RATE[,iops=N] to rate-limit it"},
			&cli.StringFlag{Name: "vsock", Usage: "a virtio-vsock device, `cid=N,uds=PATH`: the guest's CID (3 or more) and a host unix socket (it must not exist) on which programs send \"CONNECT <port>\\n\"; guest connections to the host's port P go to PATH_P"},
			&cli.StringFlag{Name: "balloon", Usage: "a virtio memory balloon of `MIB[,deflate-on-oom][,stats=SECONDS]`: the guest gives MIB of its RAM back to the host (its driver: virtio_balloon)"},
			&cli.StringSliceFlag{Name: "share", Usage: "a host directory the guest mounts by tag, `HOST[:TAG][,ro][,proto=fs|9p]` (repeatable; TAG defaults to HOST's base name; without proto= both devices are offered): in the guest `mount -t virtiofs TAG /mnt` (driver: virtiofs) or `mount -t 9p -o trans=virtio,version=9p2000.L TAG /mnt` (9p, 9pnet_virtio); nothing outside HOST is reachable, ro refuses writes"},
			&cli.StringFlag{Name: "on-reboot", Value: "exit", Usage: "what a guest reboot does, `ACTION`: exit (status 0) or restart (boot again)"},
			&cli.StringFlag{Name: "transport", Value: string(machine.DefaultTransport), Usage: "how virtio devices reach the guest, `KIND`: mmio (virtio-mmio) or pci (virtio-pci with MSI-X; needs ACPI)"},
			&cli.BoolFlag{Name: "no-acpi", Usage: "describe the machine with an MP table instead of ACPI tables (kernels without ACPI)"},
			&cli.BoolFlag{Name: "stats", Usage: "print boot-progress timestamps and VM exit counts to stderr at exit"},
			&cli.BoolFlag{Name: "allow-emulated", Usage: "run even where KVM has no hardware virtualization (tiny test guests only)"},
			&cli.StringFlag{Name: "config-file", Usage: "boot the VM a Firecracker JSON configuration `FILE` describes (then only --console and --allow-emulated apply)"},
		}, commandFlags()...),
		Action: run,
	}
}

func configFromFlags(c *cli.Context) (machine.Config, machine.RebootAction, error) {
	mem, err := parseSize(c.String("memory"))
	if err != nil {
		return machine.Config{}, 0, err
	}
	onReboot, err := parseOnReboot(c.String("on-reboot"))
	if err != nil {
		return machine.Config{}, 0, err
	}
	cfg := machine.Config{
		Kernel:  c.String("kernel"),
		Initrd:  c.String("initrd"),
		Cmdline: c.String("cmdline"),
		CPUs:    c.Int("cpus"),
		Memory:  mem,
		NoACPI:  c.Bool("no-acpi"),
	}
	switch t := machine.Transport(c.String("transport")); t {
	case machine.TransportMMIO, machine.TransportPCI:
		cfg.Transport = t
	default:
		return cfg, 0, fmt.Errorf("%w: --transport %q: mmio or pci", errBadFlag, c.String("transport"))
	}
	if cfg.Transport == machine.TransportPCI && cfg.NoACPI {
		return cfg, 0, fmt.Errorf("%w: --transport pci needs ACPI (the MCFG and the root bridge in the DSDT): drop --no-acpi or use --transport mmio", errBadFlag)
	}
	if cfg.CPUs < 1 {
		return cfg, 0, fmt.Errorf("%w: --cpus %d: need at least 1", errBadFlag, cfg.CPUs)
	}
	if mem == 0 {
		return cfg, 0, fmt.Errorf("%w: --memory %q: the guest needs some RAM", errBadFlag, c.String("memory"))
	}
	for _, s := range c.StringSlice("disk") {
		d, err := parseDisk(s)
		if err != nil {
			return cfg, 0, err
		}
		cfg.Disks = append(cfg.Disks, d)
	}
	for _, s := range c.StringSlice("net") {
		n, err := parseNIC(s)
		if err != nil {
			return cfg, 0, err
		}
		cfg.NICs = append(cfg.NICs, n)
	}
	if c.IsSet("entropy") {
		e, err := parseEntropy(c.String("entropy"))
		if err != nil {
			return cfg, 0, err
		}
		cfg.Entropy = e
	}
	if c.IsSet("vsock") {
		v, err := parseVsock(c.String("vsock"))
		if err != nil {
			return cfg, 0, err
		}
		cfg.Vsock = v
	}
	for i, s := range c.StringSlice("share") {
		sh, err := parseShare(s, i)
		if err != nil {
			return cfg, 0, err
		}
		cfg.Shares = append(cfg.Shares, sh)
	}
	if c.IsSet("balloon") {
		b, err := parseBalloon(c.String("balloon"))
		if err != nil {
			return cfg, 0, err
		}
		cfg.Balloon = b
	}
	return cfg, onReboot, nil
}

func run(c *cli.Context) error {
	start := processStart
	if c.NArg() > 0 {
		return runWithCommand(c)
	}
	if c.IsSet("config-file") {
		return runConfigFile(c)
	}
	if !c.IsSet("kernel") {
		return fmt.Errorf("%w: Required flag \"kernel\" not set (or give --config-file)", errBadFlag)
	}
	cfg, onReboot, err := configFromFlags(c)
	if err != nil {
		return err
	}
	out, err := console.Output(c.String("console"))
	if err != nil {
		return err
	}
	defer out.Close()
	cfg.Console = out

	// Registered before the first VM is built: a signal during set-up
	// still tears it down (a TAP it created disappears) and sets the status.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	for boot := 1; ; boot++ {
		action, err := runOnce(c, cfg, sigs, boot == 1 && !c.Bool("allow-emulated"), start)
		if err != nil {
			return err
		}
		if action == devices.Reset && onReboot == machine.RebootRestart {
			fmt.Fprintf(os.Stderr, "vmm: guest reset: booting again (boot %d)\n", boot+1)
			continue
		}
		return nil
	}
}

// runOnce builds, runs and tears down one VM.
func runOnce(c *cli.Context, cfg machine.Config, sigs <-chan os.Signal, checkHost bool, start time.Time) (devices.PowerAction, error) {
	m, err := machine.New(cfg)
	if err != nil {
		return 0, err
	}
	defer m.Close()

	// Checked after the configuration and images proved good, so bad
	// arguments are reported as such on every host; and it only reads
	// /proc/cpuinfo, so it costs nothing on a real host.
	if checkHost {
		virt, err := host.Detect()
		if err == nil && !virt.Hardware() {
			return 0, fmt.Errorf("%w\n%s", host.ErrNoHardwareVirt, virt.Explanation())
		}
	}

	in, err := console.Open(c.String("console"), console.Options{
		Sink: m.Console().Receive, Quit: m.Stop, Stdin: os.Stdin, Messages: os.Stderr})
	if err != nil {
		return 0, err
	}
	defer in.Close()
	var stoppedBy atomic.Value // os.Signal
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case sig := <-sigs:
			stoppedBy.Store(sig)
			m.Stop()
		case <-done:
		}
	}()

	action, err := m.Run()
	if c.Bool("stats") {
		printStats(os.Stderr, m, start)
	}
	if errors.Is(err, machine.ErrStopped) {
		// A signal ends the VM with the shell's status for it (128+n), so
		// a script that killed it, or a timeout, is not read as a clean
		// power-off; the console's quit key is the user's choice: 0.
		if sig, ok := stoppedBy.Load().(syscall.Signal); ok {
			// Where each vCPU was: a guest stopped by a timeout then
			// says whether it hung in its own code or in the VMM.
			for _, st := range m.StopStates() {
				fmt.Fprintf(os.Stderr, "vmm: stopped: %v\n", st)
			}
			// And where each device's queues were: a stalled transfer
			// shows which side holds work the other has not seen.
			for _, line := range m.DeviceStates() {
				fmt.Fprintf(os.Stderr, "vmm: stopped: %s\n", line)
			}
			return 0, cli.Exit(fmt.Sprintf("stopped by signal: %v", sig), 128+int(sig))
		}
		return devices.PowerOff, nil
	}
	return action, err
}

func printStats(w io.Writer, m *machine.Machine, start time.Time) {
	for _, p := range m.Phases() {
		fmt.Fprintf(w, "vmm: startup phase %-28s %v\n", p.Name+":", p.Duration.Round(time.Microsecond))
	}
	if first := m.FirstRun(); !first.IsZero() {
		fmt.Fprintf(w, "vmm: startup: first KVM_RUN %v after main, at unix-ns=%d\n",
			first.Sub(start).Round(time.Microsecond), first.UnixNano())
	}
	fmt.Fprintf(w, "vmm: ran for %v\n%s", time.Since(start).Round(time.Millisecond), m.Stats())
	recs := m.ProgressRecords()
	// Linux's early I/O delays write port 0x80 too; show the last few,
	// which are the guest's own markers.
	if len(recs) > 8 {
		recs = recs[len(recs)-8:]
	}
	for _, r := range recs {
		fmt.Fprintf(w, "boot-progress port 0x80 <- %#04x at %v\n", r.Value, r.Since.Round(time.Microsecond))
	}
}

// runConfigFile boots the VM of a Firecracker configuration file, as
// `firecracker --no-api --config-file FILE` does: one description of the
// machine, whichever front end reads it.
func runConfigFile(c *cli.Context) error {
	for _, name := range c.FlagNames() {
		switch name {
		case "config-file", "console", "allow-emulated":
		default:
			return fmt.Errorf("%w: --%s: with --config-file the file describes the VM", errBadFlag, name)
		}
	}
	out, err := console.Output(c.String("console"))
	if err != nil {
		return err
	}
	defer out.Close()
	r := fcRun{id: "anonymous-instance", configFile: c.String("config-file"),
		allowEmulated: c.Bool("allow-emulated"), console: out, consoleInput: c.String("console")}
	if code := r.serve(); code != 0 {
		return cli.Exit("", code)
	}
	return nil
}
