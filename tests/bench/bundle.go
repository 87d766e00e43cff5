package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	"github.com/vmm-dev/vmm/tests/bench/internal/results"
	"github.com/vmm-dev/vmm/tests/sandbox"
)

// bundleDir is where dynamically linked host programs go in $DATA: bin/,
// lib/ (their shared libraries and the dynamic loader) and share/.
const bundleDir = "dyn"

// bundle collects host programs with their shared libraries as sandbox
// files: level 1 has no C library, so a program runs there as
// `$DATA/dyn/lib/LOADER --library-path $DATA/dyn/lib $DATA/dyn/bin/PROG`.
type bundle struct {
	files  []sandbox.File
	libs   map[string]bool
	loader string // file name of the dynamic loader in lib/
}

func newBundle() *bundle { return &bundle{libs: map[string]bool{}} }

// add carries the program at hostPath and its libraries (from ldd).
func (b *bundle) add(ctx context.Context, hostPath string) (results.Dynamic, error) {
	real, err := filepath.EvalSymlinks(hostPath)
	if err != nil {
		return results.Dynamic{}, fmt.Errorf("bundle %s: %w", hostPath, err)
	}
	out, err := exec.CommandContext(ctx, "ldd", real).Output()
	if err != nil {
		return results.Dynamic{}, fmt.Errorf("ldd %s: %w", real, err)
	}
	libs, loader, err := parseLdd(string(out))
	if err != nil {
		return results.Dynamic{}, fmt.Errorf("ldd %s: %w", real, err)
	}
	for name, p := range libs {
		if !b.libs[name] {
			b.libs[name] = true
			b.files = append(b.files, sandbox.File{Name: path.Join(bundleDir, "lib", name), HostPath: p, Mode: 0o755})
		}
	}
	if loader != "" {
		b.loader = path.Base(loader)
		if !b.libs[b.loader] {
			b.libs[b.loader] = true
			b.files = append(b.files, sandbox.File{Name: path.Join(bundleDir, "lib", b.loader), HostPath: loader, Mode: 0o755})
		}
	}
	bin := path.Join(bundleDir, "bin", filepath.Base(hostPath))
	b.files = append(b.files, sandbox.File{Name: bin, HostPath: real, Mode: 0o755})
	d := results.Dynamic{Binary: "$DATA/" + bin}
	if loader != "" {
		d.Loader = "$DATA/" + path.Join(bundleDir, "lib", b.loader)
		d.LibDir = "$DATA/" + path.Join(bundleDir, "lib")
	}
	return d, nil
}

// addData carries a data file to dyn/share/NAME.
func (b *bundle) addData(hostPath, name string) {
	b.files = append(b.files, sandbox.File{Name: path.Join(bundleDir, "share", name), HostPath: hostPath})
}

// parseLdd returns the libraries (soname -> host path) and the loader.
func parseLdd(out string) (map[string]string, string, error) {
	libs := map[string]string{}
	loader := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && f[1] == "=>":
			if f[2] == "not" {
				return nil, "", fmt.Errorf("library %s not found", f[0])
			}
			if strings.HasPrefix(f[2], "/") {
				libs[f[0]] = f[2]
			}
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			loader = f[0]
		}
	}
	if loader == "" && len(libs) > 0 {
		return nil, "", fmt.Errorf("no dynamic loader in ldd output")
	}
	return libs, loader, nil
}

// hostQEMU finds QEMU: $VMM_QEMU or qemu-system-x86_64 in $PATH, with
// bios-microvm.bin (qboot) from its data directory.
func hostQEMU() (binary, bios string, err error) {
	binary = os.Getenv(sandbox.QEMUEnv)
	if binary == "" {
		binary = "qemu-system-x86_64"
	}
	if binary, err = exec.LookPath(binary); err != nil {
		return "", "", fmt.Errorf("QEMU: %w (Debian: apt-get install --no-install-recommends qemu-system-x86)", err)
	}
	for _, dir := range []string{"/usr/share/qemu", "/usr/share/seabios", "/usr/local/share/qemu"} {
		p := filepath.Join(dir, "bios-microvm.bin")
		if _, err := os.Stat(p); err == nil {
			return binary, p, nil
		}
	}
	return "", "", fmt.Errorf("QEMU: bios-microvm.bin (qboot) not found in /usr/share/qemu")
}
