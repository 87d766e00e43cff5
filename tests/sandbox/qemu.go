package sandbox

import (
	"bytes"
	"context"
	"embed"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Level 1's QEMU. Debian 12's own is 7.2, and every QEMU's TCG needs
// two fixes for level 1 (tests/README.md, "Faults of the nested
// sandbox"): every vCPU thread's FXRSTOR or XRSTOR rewrites CPU 0's
// hflags2 without a lock and so can undo the nested-paging and GIF bits
// that CPU 0's VMRUN and #VMEXIT have just changed (level-2 triple
// faults, hangs with level 1's registers in a vCPU, level 1 dying or
// freezing), and VMRUN writes interrupt_request without the big lock and
// so can lose an interrupt that another thread raised. So on Debian 12
// the sandbox runs Debian 13's QEMU built with the patches in qemu/ by
// qemu/build.sh, once, into the artifact cache; the system's apt
// configuration and packages stay as they are. Elsewhere it runs the
// system's QEMU.
const (
	qemuBinary = "qemu-system-x86_64"
	// patchedQEMUDir holds qemu/build.sh's builds in the cache, one
	// directory per QEMU version and hash of the patches and the script.
	patchedQEMUDir = "qemu-src"
	// patchedQEMUComplete marks a finished build (build.sh writes it).
	patchedQEMUComplete = "complete"
)

// qemuBuild holds qemu/build.sh and its patches, so that the build runs
// the same from a test binary, go run, or a copy of the repository.
//
//go:embed qemu/build.sh qemu/*.patch
var qemuBuild embed.FS

var (
	qemuMu     sync.Mutex
	qemuCached string
)

// Level1QEMU returns the QEMU binary that runs level 1: $VMM_QEMU, else
// on Debian 12 the patched build of qemu/build.sh (built on first use,
// about 5 minutes on 2 cores; offline, $VMM_OFFLINE, the newest cached
// one), else the system's qemu-system-x86_64.
func Level1QEMU(ctx context.Context) (string, error) {
	if q := os.Getenv(QEMUEnv); q != "" {
		return q, nil
	}
	qemuMu.Lock()
	defer qemuMu.Unlock()
	if qemuCached != "" {
		return qemuCached, nil
	}
	q, err := level1QEMU(ctx)
	if err != nil {
		return "", err
	}
	qemuCached = q
	return q, nil
}

func level1QEMU(ctx context.Context) (string, error) {
	if !isDebian12() {
		return qemuBinary, nil
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, patchedQEMUDir)
	if os.Getenv(OfflineEnv) != "" {
		q, err := newestPatchedQEMU(dir)
		if err != nil {
			return "", fmt.Errorf("sandbox: level 1's QEMU: %w: %w; set %s to a QEMU binary", ErrOffline, err, QEMUEnv)
		}
		return q, nil
	}
	return buildPatchedQEMU(ctx, cache, dir)
}

// buildPatchedQEMU runs qemu/build.sh under the cache's lock and returns
// the binary it prints: at once when its build is cached, else after
// building it. The script's output goes to build.log in dir.
func buildPatchedQEMU(ctx context.Context, cache, dir string) (string, error) {
	var bin string
	err := withLock(filepath.Join(dir, ".lock"), func() error {
		tmp, err := os.MkdirTemp("", "vmm-qemu-build-")
		if err != nil {
			return fmt.Errorf("sandbox: level 1's QEMU: %w", err)
		}
		defer os.RemoveAll(tmp)
		if err := writeQEMUBuild(tmp); err != nil {
			return err
		}
		logPath := filepath.Join(dir, "build.log")
		log, err := os.Create(logPath)
		if err != nil {
			return fmt.Errorf("sandbox: level 1's QEMU: %w", err)
		}
		defer log.Close()
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(tmp, "build.sh"))
		cmd.Env = append(os.Environ(), "VMM_CACHE="+cache)
		cmd.Stdout, cmd.Stderr = &out, log
		fmt.Fprintf(os.Stderr, "sandbox: level 1's QEMU: tests/sandbox/qemu/build.sh (cached after its first build of about 5 minutes; log %s)\n", logPath)
		if err := cmd.Run(); err != nil {
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("sandbox: level 1's QEMU: tests/sandbox/qemu/build.sh: %w:\n%s\n(whole log: %s; %s=PATH runs another QEMU)", err, tail(string(b), 15), logPath, QEMUEnv)
		}
		bin = strings.TrimSpace(lastLine(out.String()))
		if _, err := qemuMajor(ctx, bin); err != nil {
			return fmt.Errorf("sandbox: level 1's QEMU: tests/sandbox/qemu/build.sh printed %q: %w", bin, err)
		}
		return nil
	})
	return bin, err
}

// writeQEMUBuild writes the embedded build script and patches into dir.
func writeQEMUBuild(dir string) error {
	entries, err := fs.ReadDir(qemuBuild, "qemu")
	if err != nil {
		return fmt.Errorf("sandbox: level 1's QEMU build files: %w", err)
	}
	for _, e := range entries {
		b, err := qemuBuild.ReadFile("qemu/" + e.Name())
		if err != nil {
			return fmt.Errorf("sandbox: level 1's QEMU build files: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o755); err != nil {
			return fmt.Errorf("sandbox: level 1's QEMU build files: %w", err)
		}
	}
	return nil
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// newestPatchedQEMU returns the binary of the complete build in dir that
// finished last.
func newestPatchedQEMU(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	best, bestTime := "", time.Time{}
	for _, e := range entries {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		fi, err := os.Stat(filepath.Join(dir, e.Name(), patchedQEMUComplete))
		if err != nil {
			continue
		}
		if best == "" || fi.ModTime().After(bestTime) {
			best, bestTime = e.Name(), fi.ModTime()
		}
	}
	if best == "" {
		return "", fmt.Errorf("no complete QEMU build in %s", dir)
	}
	return filepath.Join(dir, best, "usr", "bin", qemuBinary), nil
}

var qemuVersionRE = regexp.MustCompile(`QEMU emulator version ([0-9]+)\.`)

// qemuMajor runs binary --version and returns its major version.
func qemuMajor(ctx context.Context, binary string) (int, error) {
	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("sandbox: %s --version: %w", binary, err)
	}
	return parseQEMUMajor(string(out))
}

func parseQEMUMajor(out string) (int, error) {
	m := qemuVersionRE.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("sandbox: no QEMU version in %q", firstLine(out))
	}
	return strconv.Atoi(m[1])
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func isDebian12() bool {
	b, err := os.ReadFile("/etc/os-release")
	return err == nil && isBookworm(string(b))
}

func isBookworm(osRelease string) bool {
	for _, line := range strings.Split(osRelease, "\n") {
		if v, ok := strings.CutPrefix(line, "VERSION_CODENAME="); ok {
			return strings.Trim(strings.TrimSpace(v), `"`) == "bookworm"
		}
	}
	return false
}
