package sandbox

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// RepoRoot returns the directory of the module's go.mod.
func RepoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("sandbox: go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("sandbox: not inside the vmm module")
	}
	return filepath.Dir(gomod), nil
}

// BuildVMM builds ./cmd/vmm of the module at repoRoot as a static binary
// (CGO_ENABLED=0: level 1 has no C library) and returns its path in outDir.
func BuildVMM(ctx context.Context, repoRoot, outDir string) (string, error) {
	out := filepath.Join(outDir, "vmm")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/vmm")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("sandbox: build ./cmd/vmm: %w\n%s", err, strings.TrimSpace(string(msg)))
	}
	return out, nil
}
