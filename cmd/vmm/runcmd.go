package main

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"

	vconsole "github.com/vmm-dev/vmm/devices/virtio/console"
	"github.com/vmm-dev/vmm/guestinit"
	"github.com/vmm-dev/vmm/host"
	"github.com/vmm-dev/vmm/initramfs"
	"github.com/vmm-dev/vmm/machine"
)

// Exit statuses of `vmm run -- CMD` that are vmm's own, below the
// shell's 126 (not executable), 127 (not found) and 128+n (signal n),
// which keep their shell meaning for CMD.
const (
	// statusPanic: the guest kernel panicked.
	statusPanic = 122
	// statusNoCommand: the guest never reached the command (the kernel
	// did not boot, its init failed: modules, ports, mounts), or ended
	// without reporting the command's status (a triple fault, a power-off
	// from inside the command).
	statusNoCommand = 123
	// statusTimeout: --timeout expired (as timeout(1) reports it).
	statusTimeout = 124
	// statusVMMError: vmm could not start the VM (bad arguments, images,
	// no KVM).
	statusVMMError = 125
)

// commandCmdline is the kernel command line of a command run: the serial
// console for the kernel's log, quiet because the log is read only on
// failure (and a verbose boot is most of a boot's exits), and an
// immediate reset on panic, which vmm reports as one.
const commandCmdline = "console=ttyS0 quiet panic=-1"

// kernelLogTail is how much of the kernel's console is kept for the
// failure report, and how many of its lines are shown.
const (
	kernelLogTail  = 64 << 10
	kernelLogLines = 25
)

// wantedModules are the drivers the guest's init needs, by name; each
// that the kernel has as a module is loaded with its dependencies, and
// the others are taken to be built in (the guest says if not).
var wantedModules = []string{
	"virtio_mmio", "virtio_pci", "virtio_console",
	"virtiofs", "9pnet_virtio", "9p", "overlay",
}

// commandFlags are the flags of `vmm run` that only a command run reads.
func commandFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "modules", Usage: "with -- CMD: the kernel's module `DIR` (a lib/modules/RELEASE tree, or an unpacked kernel package); default /lib/modules/RELEASE, RELEASE read from the kernel image"},
		&cli.StringSliceFlag{Name: "env", Aliases: []string{"e"}, Usage: "with -- CMD: set `K=V` in the command's environment (repeatable)"},
		&cli.BoolFlag{Name: "root", Usage: "with -- CMD: run the command as root (default: as the invoking user, root only when vmm runs as root)"},
		&cli.DurationFlag{Name: "timeout", Usage: "with -- CMD: stop the guest after `DURATION` (e.g. 30s) and exit 124"},
		&cli.StringFlag{Name: "rootfs", Value: "host", Usage: "with -- CMD: the command's root, `KIND`: host (the host's / read-only with a copy-on-write layer, the current directory writable) or initramfs (only what --add puts there)"},
		&cli.StringSliceFlag{Name: "add", Usage: "with -- CMD: copy host file `HOST[:GUEST]` into the guest's initramfs (repeatable)"},
	}
}

// cmdOutcome is everything that decides a command run's exit status.
type cmdOutcome struct {
	runErr   error          // what machine.Run returned
	timedOut bool           // --timeout stopped the VM
	signal   syscall.Signal // a signal stopped vmm; 0 if none
	started  bool           // the guest's init reached the command
	final    *guestinit.Status
	guestErr string // the guest's init failed before the command
}

// commandExit maps an outcome to vmm's exit status and, for vmm's own
// statuses, the reason.
func commandExit(o cmdOutcome) (int, string) {
	switch {
	case o.signal != 0:
		return 128 + int(o.signal), fmt.Sprintf("stopped by signal: %v", o.signal)
	case o.timedOut:
		return statusTimeout, "--timeout expired"
	case o.final != nil && o.final.Kind == guestinit.StatusExit:
		return o.final.Code, ""
	case o.final != nil && o.final.Kind == guestinit.StatusSignal:
		return 128 + o.final.Code, ""
	case errors.Is(o.runErr, machine.ErrGuestPanic):
		return statusPanic, o.runErr.Error()
	case o.guestErr != "":
		return statusNoCommand, "the guest never reached the command: " + o.guestErr
	case o.started:
		why := "it powered off"
		if o.runErr != nil {
			why = o.runErr.Error()
		}
		return statusNoCommand, "the guest ended without the command's status: " + why
	case o.runErr != nil:
		return statusNoCommand, "the guest never reached the command: " + o.runErr.Error()
	}
	return statusNoCommand, "the guest never reached the command (it stopped before its init ran it)"
}

// findKernel is --kernel, or a kernel build tree's bzImage when vmm runs
// in one; it returns the tree too, whose modules go with its kernel.
func findKernel(flag string) (kernel, tree string, err error) {
	if flag != "" {
		return flag, "", nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", "", fmt.Errorf("%w: no --kernel, and no working directory: %w", errBadFlag, err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		bz := filepath.Join(d, "arch/x86/boot/bzImage")
		if _, err := os.Stat(bz); err == nil {
			if _, err := os.Stat(filepath.Join(d, "Kbuild")); err == nil {
				return bz, d, nil
			}
		}
		if d == "/" {
			break
		}
	}
	return "", "", fmt.Errorf("%w: no --kernel given, and %s is not inside a kernel build tree with arch/x86/boot/bzImage", errBadFlag, wd)
}

// selectModules picks the module tree and the modules to load, and
// reports whether the kernel has virtio-mmio (as a module or built in)
// as far as the tree tells: without a tree, nothing says it has.
func selectModules(kernel, tree, dir string) (mods []initramfs.Module, hasMMIO bool, err error) {
	rel, relErr := initramfs.KernelRelease(kernel)
	switch {
	case dir != "":
		if relErr != nil {
			rel = "unknown"
		}
		d, err := initramfs.FindModuleDir(dir, rel)
		if err != nil {
			return nil, false, fmt.Errorf("--modules: %w", err)
		}
		dir = d
	case tree != "":
		dir = tree
	default:
		if relErr != nil {
			return nil, false, nil // a kernel without a release string: built-in drivers or nothing
		}
		dir = filepath.Join("/lib/modules", rel)
		if _, err := os.Stat(dir); err != nil {
			return nil, false, nil // nothing to load: the drivers must be built in
		}
	}
	t, err := initramfs.OpenTree(dir)
	if err != nil {
		return nil, false, err
	}
	mods, _ = t.Resolve(wantedModules)
	hasMMIO = t.Has("virtio_mmio") || (tree != "" && kconfigHas(filepath.Join(tree, ".config"), "CONFIG_VIRTIO_MMIO"))
	return mods, hasMMIO, nil
}

// kconfigHas reports whether the .config at path sets option to y or m.
func kconfigHas(path, option string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, option+"="); ok && (v == "y" || v == "m") {
			return true
		}
	}
	return false
}

// commandTransport is a command run's virtio transport: the one asked
// for; else virtio-mmio when the kernel has it (Debian's does, as a
// module), and virtio-pci otherwise, as for the kernels `make defconfig
// kvm_guest.config` builds, which have virtio-pci and no virtio-mmio
// (virtio-pci needs ACPI: with --no-acpi it stays virtio-mmio).
func commandTransport(asked bool, flag machine.Transport, noACPI, hasMMIO bool) machine.Transport {
	switch {
	case asked:
		return flag
	case hasMMIO || noACPI:
		return machine.TransportMMIO
	}
	return machine.TransportPCI
}

// buildInitramfs writes the guest's initramfs into a memory file and
// returns a path the boot loader can open: /proc/self/fd/N.
func buildInitramfs(gc guestinit.Config, mods []initramfs.Module, adds []string) (*os.File, error) {
	self, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("read vmm's own binary: %w", err)
	}
	if f, err := elf.NewFile(bytes.NewReader(self)); err == nil {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				return nil, errors.New("this vmm binary is dynamically linked: the guest's init must be static (build with CGO_ENABLED=0)")
			}
		}
	}
	archive, err := initramfsArchive(self, gc, mods, adds)
	if err != nil {
		return nil, err
	}
	fd, err := unix.MemfdCreate("vmm-initramfs", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("initramfs: memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "vmm-initramfs")
	if _, err := f.Write(archive); err != nil {
		f.Close()
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	return f, nil
}

// initramfsArchive is the archive: init (vmm), the modules in load
// order, --add files, and the guest's configuration.
func initramfsArchive(self []byte, gc guestinit.Config, mods []initramfs.Module, adds []string) ([]byte, error) {
	var buf bytes.Buffer
	w := initramfs.NewWriter(&buf)
	dirs := map[string]bool{}
	mkdirs := func(p string) error {
		var parents []string
		for d := filepath.Dir(p); d != "/" && d != "." && !dirs[d]; d = filepath.Dir(d) {
			parents = append(parents, d)
		}
		for i := len(parents) - 1; i >= 0; i-- {
			dirs[parents[i]] = true
			if err := w.Dir(parents[i], 0o755); err != nil {
				return err
			}
		}
		return nil
	}
	for _, d := range []string{"/dev", "/proc", "/sys", "/tmp", guestinit.ModuleDir} {
		if err := mkdirs(d + "/x"); err != nil {
			return nil, err
		}
	}
	// The kernel gives init /dev/console as stdin, stdout and stderr
	// before anything is mounted; without the node those descriptors are
	// closed and Go's runtime, which then opens /dev/null for them,
	// aborts.
	if err := w.CharDev("dev/console", 0o600, 5, 1); err != nil {
		return nil, err
	}
	if err := w.CharDev("dev/null", 0o666, 1, 3); err != nil {
		return nil, err
	}
	if err := w.File("init", 0o755, self); err != nil {
		return nil, err
	}
	for i, m := range mods {
		b, err := initramfs.ReadModule(m.Path)
		if err != nil {
			return nil, err
		}
		ext := ".ko"
		if !strings.HasSuffix(m.Path, ".ko") && !strings.HasSuffix(m.Path, ".ko.gz") {
			ext = filepath.Ext(m.Path) // .xz, .zst: the guest kernel decompresses
			ext = ".ko" + ext
		}
		p := fmt.Sprintf("%s/%02d-%s%s", guestinit.ModuleDir, i, m.Name, ext)
		if err := w.File(p, 0o644, b); err != nil {
			return nil, err
		}
		gc.Modules = append(gc.Modules, p)
	}
	for _, a := range adds {
		src, dst, ok := strings.Cut(a, ":")
		if !ok {
			dst = src
		}
		if !filepath.IsAbs(dst) {
			return nil, fmt.Errorf("%w: --add %q: the guest path must be absolute", errBadFlag, a)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("--add %q: %w", a, err)
		}
		st, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("--add %q: %w", a, err)
		}
		if err := mkdirs(dst); err != nil {
			return nil, err
		}
		if err := w.File(dst, uint32(st.Mode().Perm()), b); err != nil {
			return nil, err
		}
	}
	cfgJSON, err := guestinit.MarshalConfig(gc)
	if err != nil {
		return nil, err
	}
	if err := w.File(guestinit.ConfigPath, 0o644, cfgJSON); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// commandEnv is the command's environment: the host's PATH, HOME, TERM,
// USER and LANG, then --env.
func commandEnv(extra []string) ([]string, error) {
	env := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	for _, k := range []string{"PATH", "HOME", "TERM", "USER", "LOGNAME", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	for _, kv := range extra {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: --env %q: want K=V", errBadFlag, kv)
		}
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out, nil
}

// tailBuffer keeps the last bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

// lastLines returns up to n of the last lines. When a kernel panic is
// among the kept lines, they start a few lines before its banner: its
// cause comes first, and the backtrace after it would push it out.
func (t *tailBuffer) lastLines(n int) []string {
	t.mu.Lock()
	s := strings.TrimRight(strings.ReplaceAll(string(t.b), "\r", ""), "\n")
	t.mu.Unlock()
	if s == "" {
		return nil
	}
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "Kernel panic - not syncing") {
			from := max(0, i-3)
			return lines[from:min(len(lines), from+n)]
		}
	}
	return lines[max(0, len(lines)-n):]
}

// initNeeds are the kernel options the guest's init, this very binary (a
// Go program), cannot start without, each with what Go's runtime prints
// on the console when the kernel lacks it. Distribution kernels and `make
// defconfig kvm_guest.config` have them; `make tinyconfig` does not.
var initNeeds = []struct{ marker, option string }{
	{"runtime: epollcreate failed", "CONFIG_EPOLL"},
	{"runtime: eventfd failed", "CONFIG_EVENTFD"},
	{"futexwakeup addr=", "CONFIG_FUTEX"},
}

// initFailure explains a guest init that died in Go's runtime before it
// could report anything, from the kernel's console; "" when the console
// shows no such failure.
func (t *tailBuffer) initFailure() string {
	t.mu.Lock()
	s := string(t.b)
	t.mu.Unlock()
	var missing []string
	for _, n := range initNeeds {
		if strings.Contains(s, n.marker) {
			missing = append(missing, n.option)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("the guest's init (vmm itself, a Go program) could not start: the kernel lacks %s; "+
		"build it with that enabled (make defconfig kvm_guest.config has it)", strings.Join(missing, " and "))
}

// statusWatch follows the guest's status port.
type statusWatch struct {
	mu       sync.Mutex
	started  bool
	final    *guestinit.Status
	guestErr string
	bad      int
	phases   []guestPhase
}

// guestPhase is one phase line and when the host read it.
type guestPhase struct {
	name   string
	guest  time.Duration // the guest's CLOCK_BOOTTIME
	arrive time.Time
}

// maxPhases bounds what a guest can make the host keep.
const maxPhases = 16

// printPhases shows where the workflow's time went, for --stats: each
// phase of the guest's init by the guest's clock, and when the host
// heard of it counted from vmm's start.
func (s *statusWatch) printPhases(w io.Writer, start time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var last time.Duration
	for i, p := range s.phases {
		step := ""
		if i > 0 {
			step = fmt.Sprintf(" (+%v)", (p.guest - last).Round(time.Millisecond))
		}
		last = p.guest
		fmt.Fprintf(w, "vmm: guest phase %-8s at %v of guest time%s; host heard %v after vmm started\n",
			p.name+":", p.guest.Round(time.Millisecond), step, p.arrive.Sub(start).Round(time.Millisecond))
	}
}

func (s *statusWatch) handle(st guestinit.Status, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.bad++
		if s.bad == 1 {
			fmt.Fprintf(os.Stderr, "vmm: ignoring a malformed status line from the guest: %v\n", err)
		}
		return
	}
	switch st.Kind {
	case guestinit.StatusPhase:
		if len(s.phases) < maxPhases {
			s.phases = append(s.phases, guestPhase{name: st.Text, guest: time.Duration(st.Micros) * time.Microsecond, arrive: time.Now()})
		}
	case guestinit.StatusStarted:
		s.started = true
	case guestinit.StatusExit, guestinit.StatusSignal:
		if s.final == nil {
			s.final = &st
		}
	case guestinit.StatusError:
		if s.guestErr == "" {
			s.guestErr = st.Text
		}
	}
}

// runWithCommand is `vmm run [flags] -- CMD [ARGS...]`.
func runWithCommand(c *cli.Context) error {
	code, err := runCommandVM(c)
	if err != nil {
		msg := err.Error()
		if code == 0 {
			code = statusVMMError
		}
		return cli.Exit(msg, code)
	}
	if code != 0 {
		return cli.Exit("", code)
	}
	return nil
}

func runCommandVM(c *cli.Context) (int, error) {
	start := processStart
	for _, f := range []string{"initrd", "config-file", "on-reboot"} {
		if c.IsSet(f) {
			return statusVMMError, fmt.Errorf("%w: --%s does not go with a command", errBadFlag, f)
		}
	}
	kernel, tree, err := findKernel(c.String("kernel"))
	if err != nil {
		return statusVMMError, err
	}
	cfg, _, err := configFromFlags(c)
	if err != nil {
		return statusVMMError, err
	}
	cfg.Kernel = kernel
	if !c.IsSet("cmdline") {
		cfg.Cmdline = commandCmdline
	}
	wd, err := os.Getwd()
	if err != nil {
		return statusVMMError, fmt.Errorf("working directory: %w", err)
	}
	env, err := commandEnv(c.StringSlice("env"))
	if err != nil {
		return statusVMMError, err
	}
	gc := guestinit.Config{
		Args: c.Args().Slice(), Env: env, Dir: wd,
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		AsRoot: c.Bool("root") || os.Getuid() == 0,
	}
	if groups, err := os.Getgroups(); err == nil {
		for _, g := range groups {
			gc.Groups = append(gc.Groups, uint32(g))
		}
	}
	// --share directories appear in the command's guest where they are
	// on the host, after the root.
	for _, sh := range cfg.Shares {
		gc.Mounts = append(gc.Mounts, guestinit.Mount{Tag: sh.Tag, Target: sh.HostDir, ReadOnly: sh.ReadOnly})
	}
	switch c.String("rootfs") {
	case "host":
		gc.Root = &guestinit.Mount{Tag: guestinit.TagRoot, Target: "/", ReadOnly: true}
		cfg.Shares = append(cfg.Shares, machine.Share{HostDir: "/", Tag: guestinit.TagRoot, ReadOnly: true})
		if wd != "/" {
			// Before the --share mounts, which may lie below it.
			gc.Mounts = append([]guestinit.Mount{{Tag: guestinit.TagCwd, Target: wd}}, gc.Mounts...)
			cfg.Shares = append(cfg.Shares, machine.Share{HostDir: wd, Tag: guestinit.TagCwd})
		}
	case "initramfs":
	default:
		return statusVMMError, fmt.Errorf("%w: --rootfs %q: host or initramfs", errBadFlag, c.String("rootfs"))
	}

	// The terminal: a pty in the guest when stdin is one here.
	stdinFD := int(os.Stdin.Fd())
	saved, ttyErr := unix.IoctlGetTermios(stdinFD, unix.TCGETS)
	gc.TTY = ttyErr == nil
	if gc.TTY {
		if ws, err := unix.IoctlGetWinsize(stdinFD, unix.TIOCGWINSZ); err == nil {
			gc.Rows, gc.Cols = ws.Row, ws.Col
		}
	}

	mods, hasMMIO, err := selectModules(kernel, tree, c.String("modules"))
	if err != nil {
		return statusVMMError, err
	}
	cfg.Transport = commandTransport(c.IsSet("transport"), cfg.Transport, cfg.NoACPI, hasMMIO)
	initrd, err := buildInitramfs(gc, mods, c.StringSlice("add"))
	if err != nil {
		return statusVMMError, err
	}
	defer initrd.Close()
	cfg.Initrd = fmt.Sprintf("/proc/self/fd/%d", initrd.Fd())

	// The kernel's console: kept in memory for failure reports, and
	// copied to --console file=PATH (or PATH) when given.
	tail := &tailBuffer{max: kernelLogTail}
	var consoleOut io.Writer = tail
	if c.IsSet("console") {
		spec := c.String("console")
		path := strings.TrimPrefix(spec, "file=")
		switch spec {
		case "none":
		case "stdio":
			return statusVMMError, fmt.Errorf("%w: --console stdio: with a command, stdout is the command's; give --console FILE", errBadFlag)
		default:
			f, err := os.Create(path)
			if err != nil {
				return statusVMMError, fmt.Errorf("--console: %w", err)
			}
			defer f.Close()
			consoleOut = io.MultiWriter(tail, f)
		}
	}
	cfg.Console = consoleOut

	watch := &statusWatch{}
	statusIn, statusOut := io.Pipe()
	defer statusOut.Close()
	stdin := io.Reader(os.Stdin)
	cfg.ConsolePorts = []vconsole.Port{
		{Name: guestinit.PortStdin, Input: stdin},
		{Name: guestinit.PortStdout, Output: os.Stdout},
		{Name: guestinit.PortStderr, Output: os.Stderr},
		{Name: guestinit.PortStatus, Input: statusIn, Output: &guestinit.StatusReader{Handle: watch.handle}},
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	m, err := machine.New(cfg)
	if err != nil {
		return statusVMMError, err
	}
	defer m.Close()
	if !c.Bool("allow-emulated") {
		if virt, err := host.Detect(); err == nil && !virt.Hardware() {
			return statusVMMError, fmt.Errorf("%w\n%s", host.ErrNoHardwareVirt, virt.Explanation())
		}
	}

	if gc.TTY {
		raw := *saved
		raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		raw.Oflag &^= unix.OPOST
		raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		raw.Cflag &^= unix.CSIZE | unix.PARENB
		raw.Cflag |= unix.CS8
		raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
		if err := unix.IoctlSetTermios(stdinFD, unix.TCSETS, &raw); err == nil {
			defer func() { _ = unix.IoctlSetTermios(stdinFD, unix.TCSETS, saved) }()
		}
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				if ws, err := unix.IoctlGetWinsize(stdinFD, unix.TIOCGWINSZ); err == nil {
					_, _ = statusOut.Write(guestinit.Status{Kind: guestinit.StatusWinsize, Rows: ws.Row, Cols: ws.Col}.Encode())
				}
			}
		}()
	}

	var o cmdOutcome
	var stoppedBy atomic.Value // syscall.Signal
	var timedOut atomic.Bool
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-sigs:
			stoppedBy.Store(sig)
			m.Stop()
		case <-done:
		}
	}()
	if d := c.Duration("timeout"); d > 0 {
		t := time.AfterFunc(d, func() { timedOut.Store(true); m.Stop() })
		defer t.Stop()
	}
	_, o.runErr = m.Run()
	close(done)
	// Whatever the guest put in the rings before it stopped reaches
	// stdout, stderr and the status watch now.
	m.VirtioConsole().Flush()
	if c.Bool("stats") {
		printStats(os.Stderr, m, start)
		watch.printPhases(os.Stderr, start)
	}
	if sig, ok := stoppedBy.Load().(syscall.Signal); ok {
		o.signal = sig
	}
	o.timedOut = timedOut.Load()
	if errors.Is(o.runErr, machine.ErrStopped) && o.signal == 0 && !o.timedOut {
		o.runErr = nil
	}
	watch.mu.Lock()
	o.started, o.final, o.guestErr = watch.started, watch.final, watch.guestErr
	watch.mu.Unlock()
	code, reason := commandExit(o)
	if reason != "" {
		// vmm's own statuses explain themselves with the kernel's last
		// words.
		fmt.Fprintf(os.Stderr, "vmm: %s (exit status %d)\n", reason, code)
		if why := tail.initFailure(); why != "" && o.final == nil {
			fmt.Fprintf(os.Stderr, "vmm: %s\n", why)
		}
		if o.signal == 0 {
			lines := tail.lastLines(kernelLogLines)
			if len(lines) > 0 {
				fmt.Fprintf(os.Stderr, "vmm: the kernel's last %d console lines:\n", len(lines))
				for _, l := range lines {
					fmt.Fprintf(os.Stderr, "  | %s\n", l)
				}
			}
		}
		if o.timedOut || o.signal != 0 {
			for _, st := range m.StopStates() {
				fmt.Fprintf(os.Stderr, "vmm: stopped: %v\n", st)
			}
		}
	}
	return code, nil
}
