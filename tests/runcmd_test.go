package tests

import (
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/initramfs"
	"github.com/vmm-dev/vmm/tests/sandbox"
)

// The command workflow (`vmm run -k K --modules DIR -- CMD`), level 1
// playing the kernel developer's host, with Debian's cloud kernel, whose
// virtio drivers are modules. The modules go to level 1 as a module tree
// ($DATA/modules/kernel/...) without modules.dep, as in the kernel's
// package, so vmm orders them from their symbols; the guest kernel judges
// the order when it loads them.
//
// Most steps use --rootfs initramfs with busybox added as the command's
// shell, so they test the channels and statuses whatever level 1's own
// root holds; TestRunCommandHostRoot runs with the default root, level
// 1's / over virtio-fs with the current directory writable, and reads
// and writes level-1 files through it (it skips, saying why, on a
// branch without the share devices).

// runCmdModules are the drivers the guest's init needs from Debian's
// kernel; the dependencies come with them.
var runCmdModules = []string{"virtio_mmio", "virtio_console", "virtiofs", "overlay"}

// runvmm is a run_vmm line of a command run with busybox as the shell.
func runvmm(step string, extra string, cmd string) string {
	return `run_vmm ` + step + ` run -k "$GUEST_BZIMAGE" --modules "$DATA/modules" --rootfs initramfs ` +
		`--add /bin/busybox:/bin/sh --add /bin/busybox:/bin/sleep --add /bin/busybox:/bin/cat ` + extra + ` -- ` + cmd + `
dump ` + step
}

// dumpScript defines dump, which records a step's stdout and stderr in
// hex, so the Go test compares them byte for byte (outputs).
const dumpScript = `dump() {
	metric "$1" out=$(od -An -v -tx1 "$WORK/$1.out" | tr -d ' \n') err=$(od -An -v -tx1 "$WORK/$1.err" | tr -d ' \n')
}
`

// The level-1 script.
var runCmdScript = dumpScript + strings.Join([]string{
	runvmm("stdio", "", `sh -c 'printf "out\000\377bin\n"; printf "err line\n" >&2; printf "more out"'`),
	// The workflow's overhead: vmm run -- CMD against a plain boot of the
	// same kernel to an init that loads its virtio modules and powers off,
	// alternating, three each.
	`for i in 1 2 3; do`,
	`run_vmm plain$i run --kernel "$GUEST_BZIMAGE" --initrd "$GUEST_INITRD" --console none --cmdline "console=ttyS0 panic=-1 quiet"`,
	runvmm("true$i", "", `sh -c true`),
	`done`,
	// Where that overhead goes: --stats prints the guest init's phases.
	runvmm("phases", "--stats", `sh -c true`),
	runvmm("exit1", "", `sh -c 'exit 1'`),
	runvmm("exit7", "", `sh -c 'echo seven >&2; exit 7'`),
	runvmm("notfound", "", `/no/such/command arg`),
	runvmm("kill9", "", `sh -c 'kill -9 $$'`),
	// stdin from a pipe: run_vmm gives the vmm /dev/null, so a shell
	// between them pipes the bytes in.
	`REAL_VMM="$VMM" VMM=/bin/sh run_vmm stdin -c 'printf "in\000put\n" | "$REAL_VMM" run -k "$GUEST_BZIMAGE" --modules "$DATA/modules" --rootfs initramfs --add /bin/busybox:/bin/sh --add /bin/busybox:/bin/cat -- /bin/cat'
dump stdin`,
	`cd "$WORK"`,
	runvmm("env", "--env VMM_TEST=hello", `sh -c 'echo "$VMM_TEST $PWD"'`),
	`metric env wd="$WORK"; cd /`,
	runvmm("timeout", "--timeout 15s", `sleep 600`),
	runvmm("panic", "", `sh -c 'echo c > /proc/sysrq-trigger; sleep 30'`),
	// A module tree without virtio_console: the ports never appear, and
	// the guest's init says so on the kernel console.
	`run_vmm noconsole run -k "$GUEST_BZIMAGE" --modules "$DATA/modules-noconsole" --rootfs initramfs --add /bin/busybox:/bin/sh -- sh -c true
dump noconsole`,
	// The default root: the host's / over virtio-fs or 9p (needs the fs branch).
	`mkdir -p "$WORK/cwd" && cd "$WORK/cwd" && run_vmm hostroot run -k "$GUEST_BZIMAGE" --modules "$DATA/modules" -- sh -c "cat '$DATA/hello.txt'; echo written > out.txt"
dump hostroot; metric hostroot written=$(cat "$WORK/cwd/out.txt" 2>/dev/null); cd /`,
}, "\n")

var runCmdGroup = &group{
	name:        "runcmd",
	timeout:     12 * time.Minute,
	stepTimeout: 90 * time.Second,
	script:      runCmdScript,
}

var runCmdFiles struct {
	once sync.Once
	err  error
}

func runCmdStep(t *testing.T, name string) *sandbox.Step {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end scenario: skipped with -short")
	}
	runCmdFiles.once.Do(func() { runCmdFiles.err = prepareRunCmd() })
	require.NoError(t, runCmdFiles.err, "files of the runcmd group")
	return runCmdGroup.step(t, name)
}

// prepareRunCmd puts the modules that the guest needs, with their
// dependencies, in two module trees in $DATA: the whole set, and the set
// without virtio_console.
func prepareRunCmd() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	k, err := sandbox.Kernel(ctx)
	if err != nil {
		return err
	}
	tree, err := initramfs.OpenTree(k.ModulesDir)
	if err != nil {
		return err
	}
	runCmdGroup.files = []sandbox.File{{Name: "hello.txt", Data: []byte("hello from level 1\n")}}
	mods, missing := tree.Resolve(runCmdModules)
	if len(missing) > 0 {
		return &os.PathError{Op: "resolve modules", Path: k.ModulesDir, Err: os.ErrNotExist}
	}
	for _, m := range mods {
		rel, err := filepath.Rel(k.ModulesDir, m.Path)
		if err != nil {
			return err
		}
		runCmdGroup.files = append(runCmdGroup.files, sandbox.File{Name: "modules/" + rel, HostPath: m.Path})
		if m.Name != "virtio_console" {
			runCmdGroup.files = append(runCmdGroup.files, sandbox.File{Name: "modules-noconsole/" + rel, HostPath: m.Path})
		}
	}
	return nil
}

// outputs returns the step's stdout and stderr as recorded by dump.
func outputs(t *testing.T, s *sandbox.Step) (stdout, stderr string) {
	t.Helper()
	o, err := hex.DecodeString(s.Values["out"])
	require.NoError(t, err)
	e, err := hex.DecodeString(s.Values["err"])
	require.NoError(t, err)
	return string(o), string(e)
}

func TestRunCommandStdoutStderrSeparate(t *testing.T) {
	s := runCmdStep(t, "stdio")
	require.Equal(t, 0, s.RC, s.Describe())
	out, errOut := outputs(t, s)
	assert.Equal(t, "out\x00\xffbin\nmore out", out, "stdout byte for byte, binary and without console noise")
	assert.Equal(t, "err line\n", errOut, "stderr byte for byte, on its own channel")
}

// TestRunCommandTrue runs `sh -c true` three times, against three plain
// boots, and logs the wall times (as measured in level 1).
func TestRunCommandTrue(t *testing.T) {
	var cmd, plain []time.Duration
	for _, i := range []string{"1", "2", "3"} {
		s := runCmdStep(t, "true"+i)
		require.Equal(t, 0, s.RC, s.Describe())
		out, errOut := outputs(t, s)
		assert.Empty(t, out)
		assert.Empty(t, errOut)
		cmd = append(cmd, s.VMMTime)
		p := runCmdStep(t, "plain"+i)
		require.Equal(t, 0, p.RC, p.Describe())
		plain = append(plain, p.VMMTime)
	}
	t.Logf("wall time in level 1: vmm run -- sh -c true %v; plain boot to an init that powers off %v", cmd, plain)

	// The same command with --stats: the guest init's phases, each once.
	s := runCmdStep(t, "phases")
	require.Equal(t, 0, s.RC, s.Describe())
	_, errOut := outputs(t, s)
	for _, p := range []string{"init", "modules", "ports", "root", "exited"} {
		assert.Contains(t, errOut, "vmm: guest phase "+p+":", "--stats shows the %s phase", p)
	}
	for _, l := range strings.Split(errOut, "\n") {
		if strings.HasPrefix(l, "vmm: guest phase") || strings.HasPrefix(l, "vmm: startup: first KVM_RUN") || strings.HasPrefix(l, "vmm: ran for") {
			t.Log(l)
		}
	}
}

func TestRunCommandExitStatuses(t *testing.T) {
	for _, tc := range []struct {
		step    string
		rc      int
		wantErr string
	}{
		{"exit1", 1, ""},
		{"exit7", 7, "seven\n"},
		{"notfound", 127, "vmm: /no/such/command: "},
		{"kill9", 137, ""},
	} {
		t.Run(tc.step, func(t *testing.T) {
			requireStatus(t, runCmdStep(t, tc.step), tc.rc, tc.wantErr)
		})
	}
}

// requireStatus checks a command step that prints nothing on stdout: its
// exit status, and its stderr (empty, or holding wantErr).
func requireStatus(t *testing.T, s *sandbox.Step, rc int, wantErr string) {
	t.Helper()
	require.False(t, s.TimedOut, s.Describe())
	require.Equal(t, rc, s.RC, s.Describe())
	out, errOut := outputs(t, s)
	assert.Empty(t, out)
	if wantErr == "" {
		assert.Empty(t, errOut)
	} else {
		assert.Contains(t, errOut, wantErr)
	}
}

func TestRunCommandStdin(t *testing.T) {
	s := runCmdStep(t, "stdin")
	require.Equal(t, 0, s.RC, s.Describe())
	out, _ := outputs(t, s)
	assert.Equal(t, "in\x00put\n", out, "stdin reaches the command intact, then end of file")
}

func TestRunCommandEnv(t *testing.T) {
	s := runCmdStep(t, "env")
	require.Equal(t, 0, s.RC, s.Describe())
	out, _ := outputs(t, s)
	assert.Equal(t, "hello "+s.Values["wd"]+"\n", out, "--env, and the host's working directory")
}

func TestRunCommandTimeout(t *testing.T) {
	s := runCmdStep(t, "timeout")
	require.False(t, s.TimedOut, s.Describe())
	require.Equal(t, 124, s.RC, s.Describe())
	_, errOut := outputs(t, s)
	assert.Contains(t, errOut, "--timeout expired")
	assert.Less(t, s.VMMTime, 60*time.Second)
}

func TestRunCommandPanic(t *testing.T) {
	s := runCmdStep(t, "panic")
	require.Equal(t, 122, s.RC, s.Describe())
	_, errOut := outputs(t, s)
	assert.Contains(t, errOut, "Kernel panic - not syncing", "the kernel's last lines explain the status")
}

func TestRunCommandNeverReached(t *testing.T) {
	s := runCmdStep(t, "noconsole")
	require.Equal(t, 123, s.RC, s.Describe())
	_, errOut := outputs(t, s)
	assert.Contains(t, errOut, "never reached the command")
	assert.Contains(t, errOut, "virtio-console ports", "the guest's init says what was missing")
}

// TestRunCommandHostRoot: the default root, the host's / read-only with
// the current directory writable, over virtio-fs. Without the fs branch
// there is no share device and the guest's init must say so (status
// 123); with it, the command reads a level-1 file and writes into the
// current directory.
func TestRunCommandHostRoot(t *testing.T) {
	s := runCmdStep(t, "hostroot")
	out, errOut := outputs(t, s)
	if s.RC == 123 && strings.Contains(errOut, "neither virtio-fs") {
		t.Skip("no virtio-fs or 9p device yet (the fs branch): the guest reports it and exits 123: " + strings.TrimSpace(errOut))
	}
	require.Equal(t, 0, s.RC, s.Describe())
	assert.Equal(t, "hello from level 1\n", out, "a level-1 file, read intact")
	assert.Equal(t, "written", s.Values["written"], "a file written into the current directory, read by level 1")
}
