package portinit

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestELFRejectsInvalidPrograms(t *testing.T) {
	for name, p := range map[string]Program{
		"no argv":      {Port: 0x80},
		"empty path":   {Port: 0x80, Argv: []string{""}},
		"NUL in arg":   {Port: 0x80, Argv: []string{"/bin/sh", "a\x00b"}},
		"port too big": {Port: 0x3f8, Argv: []string{"/bin/sh"}},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ELF(p)
			require.ErrorIs(t, err, ErrInvalid)
		})
	}
}

func TestELFHeaders(t *testing.T) {
	image, err := ELF(Program{Port: 0x80, Value: 0x42, Message: "m\n", FailMessage: "f\n", Argv: []string{"/bin/sh", "/x"}})
	require.NoError(t, err)
	f, err := elf.NewFile(bytes.NewReader(image))
	require.NoError(t, err)
	assert.Equal(t, elf.ET_EXEC, f.Type)
	assert.Equal(t, elf.EM_X86_64, f.Machine)
	require.Len(t, f.Progs, 1)
	assert.Equal(t, elf.PT_LOAD, f.Progs[0].Type)
	assert.Equal(t, uint64(len(image)), f.Progs[0].Filesz)
	assert.Equal(t, uint64(loadAddr+codeOffset), f.Entry)
}

// The program runs on the host too: ioperm succeeds for root (and the
// write to port 0x80, the POST-code port, is harmless) or fails without
// CAP_SYS_RAWIO; either way it prints one of its lines and execs argv with
// the environment it got.
func TestELFRunsAndExecs(t *testing.T) {
	skipUnlessLinuxAMD64(t)
	echo, err := exec.LookPath("sh")
	require.NoError(t, err)
	image, err := ELF(Program{
		Port: 0x80, Value: 0x42,
		Message: "@@marker ok\n", FailMessage: "@@marker no-ioperm\n",
		Argv: []string{echo, "-c", `echo "next $0 $PORTINIT_TEST"`, "arg0"},
	})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "init")
	require.NoError(t, os.WriteFile(path, image, 0o755))

	cmd := exec.Command(path, "ignored")
	cmd.Env = []string{"PORTINIT_TEST=env-passed"}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, 2, "%s", out)
	assert.Contains(t, []string{"@@marker ok", "@@marker no-ioperm"}, lines[0])
	assert.Equal(t, "next arg0 env-passed", lines[1])
}

func TestELFExitsWhenExecFails(t *testing.T) {
	skipUnlessLinuxAMD64(t)
	image, err := ELF(Program{Port: 0x80, Value: 0x42, Message: "m\n", FailMessage: "f\n", Argv: []string{"/nonexistent/init"}})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "init")
	require.NoError(t, os.WriteFile(path, image, 0o755))
	err = exec.Command(path).Run()
	var exitErr *exec.ExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, 127, exitErr.ExitCode())
}

func skipUnlessLinuxAMD64(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the generated program is x86-64 Linux code")
	}
}
