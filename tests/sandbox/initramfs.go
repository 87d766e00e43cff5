package sandbox

import (
	"bufio"
	"compress/gzip"
	"debug/elf"
	"embed"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vmm-dev/vmm/tests/internal/cpio"
)

//go:embed scripts/*.sh
var scripts embed.FS

// guestModules are the Debian modules the guest loads, in dependency order
// (see /work/shared/ENVIRONMENT.md: virtio.ko needs virtio_ring.ko's
// virtio_break_device although modinfo does not say so). pvpanic-mmio binds
// only if the VMM describes a pvpanic device ("QEMU0001") in its DSDT.
var guestModules = []string{
	"drivers/virtio/virtio_ring.ko",
	"drivers/virtio/virtio.ko",
	"drivers/virtio/virtio_mmio.ko",
	"drivers/virtio/virtio_pci_legacy_dev.ko",
	"drivers/virtio/virtio_pci_modern_dev.ko",
	"drivers/virtio/virtio_pci.ko",
	"drivers/block/virtio_blk.ko",
	"net/core/failover.ko",
	"drivers/net/net_failover.ko",
	"drivers/net/virtio_net.ko",
	"drivers/misc/pvpanic/pvpanic.ko",
	"drivers/misc/pvpanic/pvpanic-mmio.ko",
}

// l1Modules give the level-1 machine a /dev/kvm (kvm-amd: QEMU's TCG
// emulates AMD-V) and TAP devices.
var l1Modules = []string{
	"virt/lib/irqbypass.ko",
	"arch/x86/kvm/kvm.ko",
	"arch/x86/kvm/kvm-amd.ko",
	"drivers/net/tun.ko",
}

// File is a file to put into a sandbox. Name is its path relative to the
// destination (the guest's root, or $DATA in level 1). The content comes
// from HostPath or else Data. Mode 0 means the host file's mode, or 0644.
type File struct {
	Name     string
	HostPath string
	Data     []byte
	Mode     os.FileMode
}

func (f File) addTo(tree *cpio.Tree, name string) error {
	if f.HostPath != "" {
		return tree.HostFile(name, f.HostPath, uint32(f.Mode.Perm()))
	}
	mode := f.Mode.Perm()
	if mode == 0 {
		mode = 0o644
	}
	return tree.Bytes(name, uint32(mode), f.Data)
}

// GuestOptions describe a guest initramfs beyond the standard content
// (busybox, virtio modules, /init).
type GuestOptions struct {
	// Scripts become /scenarios/NAME.sh; "vmmtest=NAME" on the guest's
	// command line runs one of them instead of the default script.
	Scripts map[string]string
	// Script becomes /scenario.sh, run when no vmmtest= is given.
	Script string
	// Files are added with their Name as path in the guest.
	Files []File
}

// BuildGuestInitramfs writes a gzip-compressed initramfs for a guest of
// kernel k to out.
func BuildGuestInitramfs(k *KernelFiles, opts GuestOptions, out string) error {
	tree, err := busyboxTree()
	if err != nil {
		return fmt.Errorf("guest initramfs: %w", err)
	}
	if err := addModules(tree, k, guestModules); err != nil {
		return fmt.Errorf("guest initramfs: %w", err)
	}
	if err := addScript(tree, "/init", "scripts/guest-init.sh"); err != nil {
		return fmt.Errorf("guest initramfs: %w", err)
	}
	for name, body := range opts.Scripts {
		if strings.ContainsAny(name, "/ \t\n") || name == "" {
			return fmt.Errorf("guest initramfs: script name %q must be one word", name)
		}
		if err := tree.Bytes("/scenarios/"+name+".sh", 0o755, []byte(body)); err != nil {
			return fmt.Errorf("guest initramfs: %w", err)
		}
	}
	if opts.Script != "" {
		if err := tree.Bytes("/scenario.sh", 0o755, []byte(opts.Script)); err != nil {
			return fmt.Errorf("guest initramfs: %w", err)
		}
	}
	for _, f := range opts.Files {
		if err := f.addTo(tree, f.Name); err != nil {
			return fmt.Errorf("guest initramfs: %w", err)
		}
	}
	return writeTree(tree, out, true)
}

// busyboxTree returns a tree with the static busybox, a symlink per applet
// and the mount points both inits use.
func busyboxTree() (*cpio.Tree, error) {
	bb, err := staticBusybox()
	if err != nil {
		return nil, err
	}
	applets, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", bb, err)
	}
	tree := cpio.NewTree()
	if err := tree.HostFile("/bin/busybox", bb, 0o755); err != nil {
		return nil, err
	}
	for _, applet := range strings.Fields(string(applets)) {
		// A "busybox" link would replace the binary itself: every applet
		// would then fail with ELOOP.
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := tree.Symlink("/bin/"+applet, "busybox"); err != nil {
			return nil, err
		}
	}
	if err := tree.Symlink("/sbin", "bin"); err != nil {
		return nil, err
	}
	for _, dir := range []string{"/proc", "/sys", "/dev", "/tmp", "/run", "/etc", "/root", "/mnt"} {
		if err := tree.Dir(dir, 0o755); err != nil {
			return nil, err
		}
	}
	return tree, nil
}

// busyboxPath is where Debian's busybox-static installs the binary.
const busyboxPath = "/usr/bin/busybox"

// staticBusybox finds busybox and checks that it is statically linked: the
// initramfs carries no shared libraries.
func staticBusybox() (string, error) {
	candidates := []string{busyboxPath, "/bin/busybox"}
	if p, err := exec.LookPath("busybox"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range candidates {
		f, err := elf.Open(p)
		if err != nil {
			continue
		}
		dynamic := false
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				dynamic = true
			}
		}
		if err := f.Close(); err != nil {
			return "", fmt.Errorf("read %s: %w", p, err)
		}
		if !dynamic {
			return p, nil
		}
	}
	return "", fmt.Errorf("no static busybox found (install Debian's busybox-static)")
}

// addModules copies modules flat into /lib/modules and lists their names,
// in load order, in /etc/modules.
func addModules(tree *cpio.Tree, k *KernelFiles, modules []string) error {
	return addModulesWith(tree, k, modules, nil)
}

// addModulesWith is addModules with module parameters, by module file
// name, written after the name on its /etc/modules line.
func addModulesWith(tree *cpio.Tree, k *KernelFiles, modules []string, params map[string]string) error {
	var order strings.Builder
	for _, rel := range modules {
		p, err := k.Module(rel)
		if err != nil {
			return err
		}
		name := path.Base(rel)
		if err := tree.HostFile("/lib/modules/"+name, p, 0o644); err != nil {
			return err
		}
		order.WriteString(strings.TrimSpace(name+" "+params[name]) + "\n")
	}
	return tree.Bytes("/etc/modules", 0o644, []byte(order.String()))
}

func addScript(tree *cpio.Tree, name, embedded string) error {
	body, err := scripts.ReadFile(embedded)
	if err != nil {
		return err
	}
	return tree.Bytes(name, 0o755, body)
}

// writeTree writes the archive to out, gzip-compressed or plain.
func writeTree(tree *cpio.Tree, out string, compress bool) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	buf := bufio.NewWriterSize(f, 1<<20)
	var w io.Writer = buf
	var zw *gzip.Writer
	if compress {
		// Level 1 carries ~70 MB: the fastest level keeps the host's
		// share of a run short, and the kernel inflates either as fast.
		zw, err = gzip.NewWriterLevel(buf, gzip.BestSpeed)
		if err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", out, err)
		}
		w = zw
	}
	_, err = tree.WriteTo(w)
	if err == nil && zw != nil {
		err = zw.Close()
	}
	if err == nil {
		err = buf.Flush()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	return nil
}

// l1Content is what the level-1 initramfs carries besides busybox.
type l1Content struct {
	kernel      *KernelFiles
	vmm         string
	guestInitrd string
	withVmlinux bool
	files       []File
	envFile     []byte
	scenario    []byte
	compress    bool
}

// Paths inside the level-1 machine.
const (
	l1SandboxDir = "/sandbox"
	l1VMM        = "/vmm"
	l1BzImage    = "/guest/bzImage"
	l1Vmlinux    = "/guest/vmlinux"
	l1Initrd     = "/guest/initrd.gz"
	l1Work       = "/work"
	l1Data       = "/data"
)

func buildL1Initramfs(c l1Content, out string) error {
	tree, err := busyboxTree()
	if err != nil {
		return fmt.Errorf("level-1 initramfs: %w", err)
	}
	// $VMM_L1_KVM_AMD: kvm-amd parameters for level 1 (e.g. "vgif=0"),
	// for measuring the sandbox's fault rate under other settings.
	params := map[string]string{"kvm-amd.ko": os.Getenv(L1KVMAMDEnv)}
	if err := addModulesWith(tree, c.kernel, l1Modules, params); err != nil {
		return fmt.Errorf("level-1 initramfs: %w", err)
	}
	add := []struct{ name, host string }{
		{l1VMM, c.vmm},
		{l1BzImage, c.kernel.BzImage},
		{l1Initrd, c.guestInitrd},
	}
	if c.withVmlinux {
		add = append(add, struct{ name, host string }{l1Vmlinux, c.kernel.Vmlinux})
	}
	for _, a := range add {
		if err := tree.HostFile(a.name, a.host, 0); err != nil {
			return fmt.Errorf("level-1 initramfs: %w", err)
		}
	}
	for _, s := range []struct{ name, embedded string }{
		{"/init", "scripts/l1-init.sh"},
		{l1SandboxDir + "/run.sh", "scripts/run.sh"},
		{l1SandboxDir + "/lib.sh", "scripts/lib.sh"},
	} {
		if err := addScript(tree, s.name, s.embedded); err != nil {
			return fmt.Errorf("level-1 initramfs: %w", err)
		}
	}
	if err := tree.Bytes(l1SandboxDir+"/env", 0o644, c.envFile); err != nil {
		return fmt.Errorf("level-1 initramfs: %w", err)
	}
	if err := tree.Bytes(l1SandboxDir+"/scenario.sh", 0o755, c.scenario); err != nil {
		return fmt.Errorf("level-1 initramfs: %w", err)
	}
	for _, dir := range []string{l1Work, l1Data} {
		if err := tree.Dir(dir, 0o755); err != nil {
			return fmt.Errorf("level-1 initramfs: %w", err)
		}
	}
	for _, f := range c.files {
		if err := f.addTo(tree, l1Data+"/"+f.Name); err != nil {
			return fmt.Errorf("level-1 initramfs: %w", err)
		}
	}
	return writeTree(tree, out, c.compress)
}

// envFile renders variables and positional arguments as a script for the
// level-1 init to source.
func envFile(env map[string]string, args []string) []byte {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, shellQuote(env[k]))
	}
	b.WriteString("set --")
	for _, a := range args {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString("\n")
	return []byte(b.String())
}

// shellQuote quotes s for sh: inside single quotes only ' is special.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// materialize writes files under dir (direct mode's $DATA).
func materialize(files []File, dir string) error {
	for _, f := range files {
		name, err := cpio.CleanName(f.Name)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		mode := f.Mode.Perm()
		data := f.Data
		if f.HostPath != "" {
			// A copy, so a writable disk image never changes the original.
			if data, err = os.ReadFile(f.HostPath); err != nil {
				return err
			}
			if mode == 0 {
				info, err := os.Stat(f.HostPath)
				if err != nil {
					return err
				}
				mode = info.Mode().Perm()
			}
		}
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(dst, data, mode); err != nil {
			return err
		}
	}
	return nil
}
