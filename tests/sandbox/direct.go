package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// runDirect runs the level-1 script on the host: the same run.sh and
// helpers, with busybox's applets first in $PATH so that scripts behave as
// in level 1.
func runDirect(ctx context.Context, p prepared) (*Result, error) {
	sc := p.sc
	work := filepath.Join(p.tmp, "work")
	data := filepath.Join(p.tmp, "data")
	sandboxDir := filepath.Join(p.tmp, "sandbox")
	binDir := filepath.Join(sandboxDir, "bin")
	for _, dir := range []string{work, data, binDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	if err := materialize(sc.Files, data); err != nil {
		return nil, fmt.Errorf("sandbox: scenario %q: files: %w", sc.Name, err)
	}
	bb, err := linkBusybox(binDir)
	if err != nil {
		return nil, fmt.Errorf("sandbox: scenario %q: %w", sc.Name, err)
	}
	for name, embedded := range map[string]string{"run.sh": "scripts/run.sh", "lib.sh": "scripts/lib.sh"} {
		body, err := scripts.ReadFile(embedded)
		if err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
		if err := os.WriteFile(filepath.Join(sandboxDir, name), body, 0o755); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(sandboxDir, "scenario.sh"), p.scenarioScript(), 0o755); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}

	vmlinux := p.kernel.Vmlinux
	if sc.WithoutVmlinux {
		vmlinux = ""
	}
	env := p.env(ModeDirect, sc.VMM, p.kernel.BzImage, vmlinux, p.guestInitrd, work, data, sandboxDir)
	cmd := exec.CommandContext(ctx, bb, append([]string{"sh", filepath.Join(sandboxDir, "run.sh")}, sc.Args...)...)
	cmd.Dir = work
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, "PATH="+binDir+":"+os.Getenv("PATH"))
	return supervise(ctx, cmd, sc, ModeDirect, "sh", nil)
}

// linkBusybox fills dir with a symlink per busybox applet and returns the
// busybox binary.
func linkBusybox(dir string) (string, error) {
	bb, err := staticBusybox()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return "", fmt.Errorf("%s --list: %w", bb, err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := os.Symlink(bb, filepath.Join(dir, applet)); err != nil {
			return "", err
		}
	}
	return bb, nil
}
