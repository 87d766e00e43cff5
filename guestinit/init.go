package guestinit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// portWait bounds the wait for the console ports to appear: the driver
// creates them after a control-queue handshake with the host.
const portWait = 20 * time.Second

// moduleCompressedFile is MODULE_INIT_COMPRESSED_FILE (uapi
// linux/module.h): the kernel decompresses an xz or zstd module itself.
const moduleCompressedFile = 4

// Main is PID 1 in the guest. It never returns: it powers the guest off.
// What it prints goes to the kernel console (/dev/console), which the
// host keeps for its failure reports.
func Main() {
	st, err := run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmm-init: %v\n", err)
	}
	if st != nil {
		if err != nil {
			_, _ = st.Write(Status{Kind: StatusError, Text: err.Error()}.Encode())
		}
		_ = st.Close()
	}
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(os.Stderr, "vmm-init: power off: %v\n", err)
	}
	for {
		time.Sleep(time.Hour) // PID 1 must not exit: the kernel would panic
	}
}

// run does the work; a nil status port means the host cannot be told
// and learns only that the guest never reached the command.
func run() (*os.File, error) {
	var phases []Status
	phase := func(name string) {
		phases = append(phases, Status{Kind: StatusPhase, Text: name, Micros: uptimeMicros()})
	}
	phase(PhaseInit)
	for _, m := range []struct{ src, dir, fs string }{
		{"devtmpfs", "/dev", "devtmpfs"}, {"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"},
	} {
		if err := mount(m.src, m.dir, m.fs, 0, ""); err != nil {
			return nil, err
		}
	}
	raw, err := os.ReadFile(ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ConfigPath, err)
	}
	cfg, err := UnmarshalConfig(raw)
	if err != nil {
		return nil, err
	}
	if err := loadModules(cfg.Modules); err != nil {
		return nil, err
	}
	phase(PhaseModules)
	ports, err := findPorts(Ports, portWait)
	if err != nil {
		return nil, err
	}
	phase(PhasePorts)
	st, err := os.OpenFile(ports[PortStatus], os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("open status port: %w", err)
	}
	if err := setupRoot(cfg); err != nil {
		return st, err
	}
	phase(PhaseRoot)
	// The phases so far go out together, before "started": the host
	// prints them with --stats.
	var b []byte
	for _, p := range phases {
		b = append(b, p.Encode()...)
	}
	if _, err := st.Write(b); err != nil {
		return st, fmt.Errorf("status port: %w", err)
	}
	return st, runCommand(cfg, ports, st)
}

// uptimeMicros is CLOCK_BOOTTIME in microseconds: the guest's time since
// its kernel started keeping time.
func uptimeMicros() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

func mount(src, dir, fstype string, flags uintptr, data string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("mount %s: %w", dir, err)
	}
	if err := unix.Mount(src, dir, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", src, fstype, dir, err)
	}
	return nil
}

// loadModules loads the modules in the host's order. A module whose
// dependency failed, or came later after all, is retried while any
// other loads: the host's order comes from symbols it read, and the
// guest kernel is the judge.
func loadModules(paths []string) error {
	pending := paths
	errs := map[string]error{}
	for len(pending) > 0 {
		var again []string
		for _, p := range pending {
			if err := loadModule(p); err != nil {
				errs[p] = err
				again = append(again, p)
			} else {
				delete(errs, p)
			}
		}
		if len(again) == len(pending) {
			var msgs []string
			for _, p := range again {
				msgs = append(msgs, fmt.Sprintf("%s: %v", filepath.Base(p), errs[p]))
			}
			return fmt.Errorf("load modules: %s (dmesg on the console says more)", strings.Join(msgs, "; "))
		}
		pending = again
	}
	return nil
}

func loadModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(p, ".ko") {
		flags = moduleCompressedFile
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// findPorts waits for the named virtio-console ports and returns their
// device nodes.
func findPorts(names []string, timeout time.Duration) (map[string]string, error) {
	deadline := time.Now().Add(timeout)
	for {
		found := map[string]string{}
		dirs, _ := filepath.Glob("/sys/class/virtio-ports/*")
		for _, d := range dirs {
			b, err := os.ReadFile(filepath.Join(d, "name"))
			if err != nil {
				continue
			}
			dev := "/dev/" + filepath.Base(d)
			if _, err := os.Stat(dev); err == nil {
				found[strings.TrimSpace(string(b))] = dev
			}
		}
		var missing []string
		for _, n := range names {
			if found[n] == "" {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return found, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("virtio-console ports %v did not appear in %v (CONFIG_VIRTIO_CONSOLE and a virtio transport driver are needed)", missing, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// setupRoot builds the command's filesystem and enters it: the host's /
// read-only under a tmpfs upper layer (overlayfs), the other shares on
// top, then proc, sys, dev and a fresh /tmp.
func setupRoot(cfg Config) error {
	newRoot := "/"
	if cfg.Root != nil {
		lower, cow, root := "/vmm/lower", "/vmm/cow", "/vmm/root"
		if err := mountShare(cfg.Root.Tag, lower, true); err != nil {
			return fmt.Errorf("the host's /: %w", err)
		}
		if err := mount("tmpfs", cow, "tmpfs", 0, "mode=0755"); err != nil {
			return err
		}
		for _, d := range []string{cow + "/upper", cow + "/work"} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return fmt.Errorf("overlay: %w", err)
			}
		}
		opts := fmt.Sprintf("lowerdir=%s,upperdir=%s/upper,workdir=%s/work", lower, cow, cow)
		if err := mount("overlay", root, "overlay", 0, opts); err != nil {
			return fmt.Errorf("%w (CONFIG_OVERLAY_FS)", err)
		}
		newRoot = root
	}
	for _, m := range cfg.Mounts {
		if err := mountShare(m.Tag, filepath.Join(newRoot, m.Target), m.ReadOnly); err != nil {
			return err
		}
	}
	if newRoot != "/" {
		for _, d := range []string{"/dev", "/proc", "/sys"} {
			if err := mount(d, newRoot+d, "", unix.MS_MOVE, ""); err != nil {
				return err
			}
		}
		// The initramfs cannot be pivoted away (pivot_root refuses
		// rootfs); switch_root's way: move the new root over / and
		// chroot into it.
		if err := os.Chdir(newRoot); err != nil {
			return fmt.Errorf("enter new root: %w", err)
		}
		if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("move new root to /: %w", err)
		}
		if err := unix.Chroot("."); err != nil {
			return fmt.Errorf("chroot: %w", err)
		}
	}
	if err := mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "ptmxmode=0666,mode=0620"); err != nil &&
		!errors.Is(err, unix.EBUSY) {
		return err
	}
	if err := mount("tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=1777"); err != nil {
		return err
	}
	if cfg.Root == nil {
		// The initramfs has no copy of the host's tree: make the
		// directory so the command starts where it was asked to.
		_ = os.MkdirAll(cfg.Dir, 0o755)
	}
	if err := os.Chdir(cfg.Dir); err != nil {
		return fmt.Errorf("working directory: %w", err)
	}
	return nil
}

// mountShare mounts a host share by tag: virtio-fs first, then 9p.
func mountShare(tag, dir string, ro bool) error {
	var flags uintptr
	if ro {
		flags = unix.MS_RDONLY
	}
	errFS := mount(tag, dir, "virtiofs", flags, "")
	if errFS == nil {
		return nil
	}
	err9p := mount(tag, dir, "9p", flags, "trans=virtio,version=9p2000.L,msize=512000")
	if err9p == nil {
		return nil
	}
	return fmt.Errorf("share %q: neither virtio-fs (%v; CONFIG_VIRTIO_FS) nor 9p (%v; CONFIG_NET_9P_VIRTIO, CONFIG_9P_FS) mounts", tag, errFS, err9p)
}

// runCommand starts the command on the ports, waits for it and reports.
func runCommand(cfg Config, ports map[string]string, st *os.File) error {
	in, err := os.OpenFile(ports[PortStdin], os.O_RDONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", PortStdin, err)
	}
	defer in.Close()
	out, err := os.OpenFile(ports[PortStdout], os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", PortStdout, err)
	}
	defer out.Close()
	errOut, err := os.OpenFile(ports[PortStderr], os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", PortStderr, err)
	}
	defer errOut.Close()

	// The command is looked up in its own PATH, as a shell would.
	for _, kv := range cfg.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			_ = os.Setenv("PATH", v)
		}
	}
	cmd := exec.Command(cfg.Args[0], cfg.Args[1:]...)
	cmd.Env = cfg.Env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if !cfg.AsRoot {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: cfg.UID, Gid: cfg.GID, Groups: cfg.Groups}
	}
	if _, err := st.Write(Status{Kind: StatusStarted}.Encode()); err != nil {
		return fmt.Errorf("status port: %w", err)
	}
	var relay func() error
	if cfg.TTY {
		relay, err = attachTTY(cmd, cfg, in, out, st)
		if err != nil {
			return err
		}
	} else {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = in, out, errOut
	}
	if err := cmd.Start(); err != nil {
		code := 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			code = 127
		}
		fmt.Fprintf(errOut, "vmm: %s: %v\n", cfg.Args[0], err)
		_, werr := st.Write(Status{Kind: StatusExit, Code: code}.Encode())
		return werr
	}
	werr := cmd.Wait()
	exited := Status{Kind: StatusPhase, Text: PhaseExited, Micros: uptimeMicros()}
	if relay != nil {
		if err := relay(); err != nil {
			fmt.Fprintf(os.Stderr, "vmm-init: terminal relay: %v\n", err)
		}
	}
	s := Status{Kind: StatusExit}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		s = Status{Kind: StatusSignal, Code: int(ws.Signal())}
	} else if cmd.ProcessState != nil {
		s.Code = cmd.ProcessState.ExitCode()
	} else if werr != nil {
		return fmt.Errorf("wait for the command: %w", werr)
	}
	// The ports close before the status goes out, so the host has every
	// byte of stdout and stderr when it reads the status (it flushes the
	// rings when the status arrives).
	_ = out.Close()
	_ = errOut.Close()
	if _, err := st.Write(append(exited.Encode(), s.Encode()...)); err != nil {
		return fmt.Errorf("status port: %w", err)
	}
	return nil
}

// attachTTY gives cmd a pseudo-terminal: its slave is the command's
// controlling terminal and stdio, its master is relayed to the ports,
// and window sizes from the host's status lines resize it. The returned
// function waits until the command's output has gone to the host.
func attachTTY(cmd *exec.Cmd, cfg Config, in, out, st *os.File) (func() error, error) {
	master, slave, err := openPTY()
	if err != nil {
		return nil, err
	}
	setWinsize(master, cfg.Rows, cfg.Cols)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr.Setctty = true
	cmd.SysProcAttr.Ctty = 0
	go func() { _, _ = io.Copy(master, in) }()
	go func() {
		r := &StatusReader{Handle: func(s Status, err error) {
			if err == nil && s.Kind == StatusWinsize {
				setWinsize(master, s.Rows, s.Cols)
			}
		}}
		_, _ = io.Copy(r, st)
	}()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(out, master)
		// EIO is the master's end of file once every slave is closed.
		if errors.Is(err, unix.EIO) {
			err = nil
		}
		done <- err
	}()
	return func() error {
		_ = slave.Close()
		select {
		case err := <-done:
			return err
		case <-time.After(2 * time.Second):
			return errors.New("output still open (a background process holds the terminal)")
		}
	}, nil
}

func openPTY() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open /dev/ptmx: %w", err)
	}
	fd := int(m.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("open pty slave: %w", err)
	}
	return m, s, nil
}

func setWinsize(f *os.File, rows, cols uint16) {
	if rows == 0 || cols == 0 {
		return
	}
	ws := &unix.Winsize{Row: rows, Col: cols}
	if err := unix.IoctlSetWinsize(int(f.Fd()), unix.TIOCSWINSZ, ws); err != nil {
		fmt.Fprintf(os.Stderr, "vmm-init: window size: %v\n", err)
	}
}

// IsInit reports whether this process is the guest's init: PID 1, or
// started under the name init.
func IsInit() bool {
	return os.Getpid() == 1 || filepath.Base(os.Args[0]) == "init"
}
