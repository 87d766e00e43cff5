package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseFirecrackerArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want map[string]string
		err  string
	}{
		{"sdk", []string{"--api-sock", "/tmp/s", "--id", "vm1", "--no-seccomp"}, map[string]string{"api-sock": "/tmp/s", "id": "vm1", "no-seccomp": ""}, ""},
		{"equals form", []string{"--api-sock=/tmp/s"}, map[string]string{"api-sock": "/tmp/s"}, ""},
		{"logging", []string{"--log-path", "/l", "--level", "Debug", "--show-level", "--show-log-origin"},
			map[string]string{"log-path": "/l", "level": "Debug", "show-level": "", "show-log-origin": ""}, ""},
		{"help wins", []string{"--bogus", "--help"}, map[string]string{"help": ""}, ""},
		{"version wins", []string{"--id", "--version"}, map[string]string{"version": ""}, ""},
		{"single dash", []string{"-api-sock", "/tmp/s"}, nil, "Found argument '-api-sock'"},
		{"positional", []string{"vmlinux"}, nil, "Found argument 'vmlinux'"},
		{"unknown", []string{"--kernel", "k"}, nil, "Found argument 'kernel'"},
		{"duplicate", []string{"--id", "a", "--id", "b"}, nil, "provided more than once"},
		{"missing value", []string{"--api-sock"}, nil, "requires a value"},
		{"value is a flag", []string{"--api-sock", "--no-seccomp"}, nil, "requires a value"},
		{"no-api alone", []string{"--no-api"}, nil, "'config-file' required"},
		{"no-api with config", []string{"--no-api", "--config-file", "c.json"}, map[string]string{"no-api": "", "config-file": "c.json"}, ""},
		{"seccomp both", []string{"--no-seccomp", "--seccomp-filter", "f"}, nil, "cannot be used together"},
		{"flag with value", []string{"--no-api=1"}, nil, "takes no value"},
		{"separator", []string{"--id", "a", "--", "--whatever"}, map[string]string{"id": "a"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFirecrackerArgs(tc.args)
			if tc.err != "" {
				require.Error(t, err)
				assert.ErrorIs(t, err, errArgs)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestValidInstanceID(t *testing.T) {
	for id, want := range map[string]bool{"anonymous-instance": true, "vm1": true, "": false,
		strings.Repeat("a", 64): true, strings.Repeat("a", 65): false, "a_b": false, "a/b": false} {
		assert.Equal(t, want, validInstanceID(id), "%q", id)
	}
}

// firecrackerBin links the built vmm as "firecracker", as the tools that
// drive Firecracker start it.
func firecrackerBin(t *testing.T) string {
	t.Helper()
	link := filepath.Join(t.TempDir(), "firecracker")
	require.NoError(t, os.Symlink(buildVMM(t), link))
	return link
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "%v", err)
	return exit.ExitCode()
}

func TestFirecrackerCommandLine(t *testing.T) {
	fc := firecrackerBin(t)
	taken := filepath.Join(t.TempDir(), "taken.sock")
	require.NoError(t, os.WriteFile(taken, nil, 0o600))
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"version", []string{"--version"}, 0, "Firecracker v" + FirecrackerVersion},
		{"help", []string{"--help"}, 0, "seccomp"},
		{"bad argument", []string{"--kernel", "x"}, exitArgParsing, "Found argument 'kernel'"},
		{"no-api needs config", []string{"--no-api"}, exitArgParsing, "config-file"},
		{"socket exists", []string{"--api-sock", taken}, exitGenericError, "already exists"},
		{"bad level", []string{"--level", "loud", "--api-sock", taken}, exitBadConfiguration, "logger level"},
		{"bad id", []string{"--id", "a/b"}, exitGenericError, "Invalid instance ID"},
		{"missing config", []string{"--no-api", "--config-file", "/nonexistent/c.json"}, exitGenericError, "configuration file"},
		{"mmds", []string{"--metadata", "m.json"}, exitGenericError, "MMDS is not supported yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(fc, tc.args...).CombinedOutput()
			assert.Equal(t, tc.code, exitCode(t, err), "%s", out)
			assert.Contains(t, string(out), tc.want)
		})
	}
	// `vmm firecracker` is the same command line.
	out, err := exec.Command(buildVMM(t), "firecracker", "--version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "Firecracker v"+FirecrackerVersion)
}

// A configuration file boots the VM at once; a guest power-off ends the
// process with status 0, with the API socket and with --no-api.
func TestFirecrackerConfigFileBoots(t *testing.T) {
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm")
	}
	fc := firecrackerBin(t)
	// mov dx, 0x600; mov al, S5<<2|SLP_EN; out dx, al; hlt
	kernel := codeELF(t, []byte{0x66, 0xba, 0x00, 0x06, 0xb0, 0x34, 0xee, 0xf4})
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vm.json")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`{
		"boot-source": {"kernel_image_path": %q, "boot_args": "console=ttyS0"},
		"machine-config": {"vcpu_count": 1, "mem_size_mib": 32}
	}`, kernel)), 0o644))

	run := func(args ...string) (int, string) {
		cmd := exec.Command(fc, args...)
		cmd.Env = append(os.Environ(), allowEmulatedEnv+"=1")
		out, err := cmd.CombinedOutput()
		return exitCode(t, err), string(out)
	}
	code, out := run("--no-api", "--config-file", cfg)
	assert.Equal(t, 0, code, out)
	sock := filepath.Join(dir, "fc.sock")
	code, out = run("--api-sock", sock, "--config-file", cfg)
	assert.Equal(t, 0, code, out)
	_, err := os.Stat(sock)
	assert.True(t, os.IsNotExist(err), "the socket is removed at exit")

	// Without the escape hatch, this host's emulated KVM is refused.
	cmd := exec.Command(fc, "--no-api", "--config-file", cfg)
	cmd.Env = append(os.Environ(), allowEmulatedEnv+"=0")
	b, err := cmd.CombinedOutput()
	if virt, _ := os.ReadFile("/proc/cpuinfo"); !strings.Contains(string(virt), " vmx") && !strings.Contains(string(virt), " svm") {
		assert.Equal(t, exitGenericError, exitCode(t, err), "%s", b)
		assert.Contains(t, string(b), "hardware virtualization")
	}

	// vmm run --config-file is the same path.
	vmm := buildVMM(t)
	b, err = exec.Command(vmm, "run", "--allow-emulated", "--console", "none", "--config-file", cfg).CombinedOutput()
	assert.NoError(t, err, "%s", b)
	b, err = exec.Command(vmm, "run", "--config-file", cfg, "--cpus", "2").CombinedOutput()
	assert.Error(t, err)
	assert.Contains(t, string(b), "the file describes the VM")
	b, err = exec.Command(vmm, "run").CombinedOutput()
	assert.Error(t, err)
	assert.Contains(t, string(b), "kernel")
}

// A signal stops the API process with the shell's status for it, before
// and after InstanceStart.
func TestFirecrackerSignal(t *testing.T) {
	fc := firecrackerBin(t)
	sock := filepath.Join(t.TempDir(), "fc.sock")
	cmd := exec.Command(fc, "--api-sock", sock)
	require.NoError(t, cmd.Start())
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Dial: func(_, _ string) (net.Conn, error) { return net.Dial("unix", sock) }}}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get("http://localhost/")
		if err == nil {
			resp.Body.Close()
			break
		}
		require.True(t, time.Now().Before(deadline), "the API never answered: %v", err)
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 128+int(syscall.SIGTERM), exitCode(t, cmd.Wait()))
	_, err := os.Stat(sock)
	assert.True(t, os.IsNotExist(err), "the socket is removed at exit")
}
