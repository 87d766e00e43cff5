package sandbox

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeKernel lays out the files Run needs from a kernel package: the
// scenarios below never boot it.
func fakeKernel(t *testing.T) *KernelFiles {
	t.Helper()
	dir := t.TempDir()
	k := &KernelFiles{
		Package:    "linux-image-0.0.0-1-cloud-amd64-unsigned",
		Version:    "0.0.0-1",
		Release:    "0.0.0-1-cloud-amd64",
		Dir:        dir,
		BzImage:    filepath.Join(dir, "boot", "vmlinuz-0.0.0-1-cloud-amd64"),
		Vmlinux:    filepath.Join(dir, "vmlinux"),
		ModulesDir: filepath.Join(dir, "lib", "modules", "0.0.0-1-cloud-amd64"),
	}
	files := []string{k.BzImage, k.Vmlinux}
	for _, m := range append(append([]string{}, guestModules...), l1Modules...) {
		files = append(files, filepath.Join(k.ModulesDir, "kernel", m))
	}
	for _, f := range files {
		require.NoError(t, os.MkdirAll(filepath.Dir(f), 0o755))
		require.NoError(t, os.WriteFile(f, []byte("fake "+filepath.Base(f)), 0o644))
	}
	return k
}

// fakeVMM is a shell script standing in for the vmm: it prints what a
// guest console would and exits as told by its first argument.
const fakeVMMScript = `#!/bin/sh
case "$1" in
boot)
	echo "[    0.000000] Linux version fake"
	echo "@@GUEST init uptime=0.42"
	echo "@@GUEST ready kernel=fake cpus=$2 uptime=0.50"
	echo "vmm guest: init reached"
	exit 0 ;;
fail)
	echo "vmm: starting" >&2
	echo "vmm: load kernel: boom" >&2
	exit 2 ;;
hang)
	sleep 30 ;;
flaky)
	# Triple-faults until it has run $3 times, counting in file $2.
	n=$(($(cat "$2" 2>/dev/null || echo 0) + 1))
	echo $n > "$2"
	if [ $n -lt "$3" ]; then
		echo "vmm: vCPU 0: guest triple fault at RIP 0xfff0" >&2
		exit 1
	fi
	echo "@@GUEST init uptime=0.42"
	exit 0 ;;
esac
`

func fakeVMM(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vmm")
	require.NoError(t, os.WriteFile(p, []byte(fakeVMMScript), 0o755))
	return p
}

// syncBuffer is a Console writer safe to read after the run.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func TestRunDirectSteps(t *testing.T) {
	var console syncBuffer
	res, err := Run(t.Context(), Scenario{
		Name:   "direct-steps",
		VMM:    fakeVMM(t),
		Mode:   ModeDirect,
		Kernel: fakeKernel(t),
		Args:   []string{"arg with space", "it's"},
		Env:    map[string]string{"EXTRA": "x y"},
		Files:  []File{{Name: "disks/a.img", Data: []byte("disk")}},
		Script: `
echo "args: $1|$2 extra: $EXTRA"
echo "data: $(cat "$DATA/disks/a.img")"
[ -s "$GUEST_INITRD" ] && echo "guest initrd present"
[ -f "$GUEST_VMLINUX" ] && echo "vmlinux present"
run_vmm ok boot 3
metric ok answer=42
run_vmm bad fail
STEP_TIMEOUT=1 run_vmm slow hang
exit 7
`,
		Console: &console,
	})
	require.NoError(t, err)
	assert.Equal(t, ModeDirect, res.Mode)
	assert.Equal(t, 7, res.ScriptRC)
	text := res.ConsoleText()
	assert.Contains(t, text, "args: arg with space|it's extra: x y")
	assert.Contains(t, text, "data: disk")
	assert.Contains(t, text, "guest initrd present")
	assert.Contains(t, text, "vmlinux present")

	ok := res.Step("ok")
	require.NotNil(t, ok)
	assert.True(t, ok.Finished)
	assert.Equal(t, 0, ok.RC)
	assert.Equal(t, "3", ok.Values["cpus"])
	assert.Equal(t, "42", ok.Values["answer"])
	assert.NotZero(t, ok.InitReached)
	assert.True(t, ok.Contains("vmm guest: init reached"))

	bad := res.Step("bad")
	require.NotNil(t, bad)
	assert.Equal(t, 2, bad.RC)
	assert.Equal(t, "vmm: load kernel: boom", bad.ErrorLine)
	assert.False(t, bad.TimedOut)

	slow := res.Step("slow")
	require.NotNil(t, slow)
	assert.True(t, slow.TimedOut, slow.Describe())
	assert.NotEqual(t, 0, slow.RC)

	console.mu.Lock()
	defer console.mu.Unlock()
	assert.Contains(t, console.buf.String(), "vmm guest: init reached\n", "console streams the lines")
}

func TestRunTimeoutShowsConsoleTail(t *testing.T) {
	res, err := Run(t.Context(), Scenario{
		Name:    "direct-timeout",
		VMM:     fakeVMM(t),
		Mode:    ModeDirect,
		Kernel:  fakeKernel(t),
		Timeout: 2 * time.Second,
		Script: `echo "last words before the hang"
run_vmm stuck hang`,
	})
	require.ErrorIs(t, err, ErrTimeout)
	require.NotNil(t, res)
	msg := err.Error()
	assert.Contains(t, msg, "last words before the hang")
	assert.Contains(t, msg, `step "stuck" was running`)
	assert.Less(t, res.Wall, 20*time.Second, "the process group was killed")
}

func TestRunIncompleteWhenScriptDies(t *testing.T) {
	_, err := Run(t.Context(), Scenario{
		Name:   "direct-killed",
		VMM:    fakeVMM(t),
		Mode:   ModeDirect,
		Kernel: fakeKernel(t),
		// Killing the shell that runs run.sh: "@@L1 done" never comes.
		Script: `echo "about to die"; kill -9 $PPID`,
	})
	require.ErrorIs(t, err, ErrIncomplete)
	assert.Contains(t, err.Error(), "about to die")
}

func TestRunDoesNotWaitForBackgroundProcesses(t *testing.T) {
	defer func(d time.Duration) { afterDoneGrace = d }(afterDoneGrace)
	afterDoneGrace = 500 * time.Millisecond
	res, err := Run(t.Context(), Scenario{
		Name:    "direct-background",
		VMM:     fakeVMM(t),
		Mode:    ModeDirect,
		Kernel:  fakeKernel(t),
		Timeout: time.Minute,
		Script:  `sleep 300 &`,
	})
	require.NoError(t, err)
	assert.Less(t, res.Wall, 30*time.Second)
}

func TestRunRejectsBadInput(t *testing.T) {
	_, err := Run(context.Background(), Scenario{Name: "no-vmm"})
	require.Error(t, err)
	_, err = Run(context.Background(), Scenario{Name: "bad-env", VMM: "/bin/true", Env: map[string]string{"A-B": "1"}})
	require.Error(t, err)
}

func TestDetectModeOverride(t *testing.T) {
	t.Setenv(ModeEnv, "direct")
	m, why, err := DetectMode()
	require.NoError(t, err)
	assert.Equal(t, ModeDirect, m)
	assert.Contains(t, why, ModeEnv)

	t.Setenv(ModeEnv, "sideways")
	_, _, err = DetectMode()
	require.Error(t, err)
}

func TestHasVirtFlag(t *testing.T) {
	assert.True(t, hasVirtFlag("processor\t: 0\nflags\t\t: fpu vme svm lm\n"))
	assert.True(t, hasVirtFlag("flags : vmx"))
	assert.False(t, hasVirtFlag("flags\t\t: fpu vme lm\nmodel name : svm-less\n"))
}

func TestEnvFileQuotes(t *testing.T) {
	got := string(envFile(map[string]string{"B": "it's", "A": "x y"}, []string{"--cpus", "a'b"}))
	assert.Equal(t, "export A='x y'\nexport B='it'\\''s'\nset -- '--cpus' 'a'\\''b'\n", got)
	assert.True(t, strings.HasSuffix(got, "\n"))
}

// run_vmm runs the vmm once, in either mode: a boot that triple-faulted
// or hung fails its step, and nothing repeats it behind the test's back.
func TestRunVMMNeverRepeats(t *testing.T) {
	res, err := Run(t.Context(), Scenario{
		Name:   "no-retry",
		VMM:    fakeVMM(t),
		Mode:   ModeDirect,
		Kernel: fakeKernel(t),
		Script: `
run_vmm direct flaky "$WORK/direct" 2
SANDBOX_MODE=nested
run_vmm nested flaky "$WORK/nested" 2
STEP_TIMEOUT=1 run_vmm stalls hang
echo "@@METRIC name=nested runs=$(cat "$WORK/nested")"
`,
	})
	require.NoError(t, err)
	for _, name := range []string{"direct", "nested"} {
		s := res.Step(name)
		require.NotNil(t, s, name)
		assert.Equal(t, 1, s.RC, "%s: the triple fault fails the step", name)
		assert.Contains(t, s.ErrorLine, "guest triple fault", name)
	}
	assert.Equal(t, "1", res.Step("nested").Values["runs"], "the vmm ran once")
	stalls := res.Step("stalls")
	require.NotNil(t, stalls)
	assert.True(t, stalls.TimedOut)
}
