// Package tests holds the end-to-end scenarios: each boots real guests with
// the vmm binary inside the sandbox (see tests/sandbox) and checks what the
// guest console and the vmm's exit status say.
package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vmm-dev/vmm/tests/sandbox"
)

func TestMain(m *testing.M) {
	code := m.Run()
	printSummary(os.Stdout)
	vmmBuild.cleanup()
	os.Exit(code)
}

// vmmBuild builds ./cmd/vmm once per test process; $VMM_BIN skips the build.
var vmmBuild build

type build struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func (b *build) cleanup() {
	if b.dir != "" {
		if err := os.RemoveAll(b.dir); err != nil {
			fmt.Fprintf(os.Stderr, "remove %s: %v\n", b.dir, err)
		}
	}
}

// vmmBinary returns the static vmm binary the scenarios run.
func vmmBinary(t *testing.T) string {
	t.Helper()
	vmmBuild.once.Do(func() {
		if p := os.Getenv("VMM_BIN"); p != "" {
			vmmBuild.path, vmmBuild.err = filepath.Abs(p)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		root, err := sandbox.RepoRoot(ctx)
		if err != nil {
			vmmBuild.err = err
			return
		}
		if vmmBuild.dir, err = os.MkdirTemp("", "vmm-e2e-bin-"); err != nil {
			vmmBuild.err = err
			return
		}
		vmmBuild.path, vmmBuild.err = sandbox.BuildVMM(ctx, root, vmmBuild.dir)
	})
	if vmmBuild.err != nil {
		t.Fatalf("vmm binary: %v", vmmBuild.err)
	}
	return vmmBuild.path
}

// logDir keeps each group's whole console: $VMM_TEST_LOGS or a temp dir.
func logDir() string {
	if d := os.Getenv("VMM_TEST_LOGS"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "vmm-e2e-logs")
}

func writeConsoleLog(res *sandbox.Result, attempt int) (string, error) {
	dir := logDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := res.Scenario
	if attempt > 1 {
		name = fmt.Sprintf("%s.attempt%d", name, attempt)
	}
	path := filepath.Join(dir, name+".log")
	var text []byte
	for _, l := range res.Console {
		text = fmt.Appendf(text, "%8.3f %s\n", l.At.Seconds(), l.Text)
	}
	return path, os.WriteFile(path, text, 0o644)
}
