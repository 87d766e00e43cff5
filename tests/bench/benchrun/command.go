package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vmm-dev/vmm/tests/bench/internal/results"
)

// busybox is level 1's, which the workflow's guests get as their tools.
const busybox = "/bin/busybox"

// commandBench runs the kernel-developer workflow once with kernel ck:
// a plain boot and `vmm run -- true`, timed from outside, then a run
// whose command reads and walks the share, timed inside the guest, and
// the same read and walk in level 1.
func (r *runner) commandBench(ck results.CommandKernel, round int) *results.Sample {
	s := &results.Sample{Kernel: ck.Name, VMM: results.VMM, Kind: results.KindCommand, Round: round}
	spec := r.cfg.Command
	timeout := time.Duration(spec.TimeoutSeconds * float64(time.Second))

	plain := []string{r.cfg.VMM, "run", "--kernel", ck.BzImage, "--initrd", r.cfg.Initrd, "--console", "none",
		"--transport", ck.Transport, "--cmdline", "console=ttyS0 panic=-1 quiet bench.idle=0"}
	wall, out, err := timedRun(plain, timeout)
	if err != nil {
		return failed(s, "plain boot", err, out)
	}
	s.SetMetric(results.CmdPlain, ms(wall))

	trueRun := append(r.commandArgs(ck), "--", "true")
	wall2, out, err := timedRun(trueRun, timeout)
	if err != nil {
		return failed(s, "vmm run -- true", err, out)
	}
	s.SetMetric(results.CmdTrue, ms(wall2))
	s.SetMetric(results.CmdOverhead, ms(wall2-wall))

	// The share: the guest's own clock times its cat and its find.
	script := `read t0 x < /proc/uptime; cat "$1/big" > /dev/null; read t1 x < /proc/uptime; ` +
		`n=$(find "$1/tree" | wc -l); read t2 x < /proc/uptime; echo "` + results.SharePrefix + `t0=$t0 t1=$t1 t2=$t2 files=$n"`
	shareRun := append(r.commandArgs(ck), "--rootfs", "initramfs", "--share", spec.Dir+",ro,proto="+ck.Proto)
	for _, tool := range []string{"sh", "cat", "find", "wc"} {
		shareRun = append(shareRun, "--add", busybox+":/bin/"+tool)
	}
	shareRun = append(shareRun, "--", "/bin/sh", "-c", script, "sh", spec.Dir)
	_, out, err = timedRun(shareRun, timeout)
	if err != nil {
		return failed(s, "the share run", err, out)
	}
	var st results.ShareTimes
	found := false
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if st, found = results.ParseShareTimes(sc.Text()); found {
			break
		}
	}
	if !found {
		return failed(s, "the share run", fmt.Errorf("no %q line", strings.TrimSpace(results.SharePrefix)), out)
	}
	if want := 1 + results.ShareDirs + results.ShareDirs*(spec.ShareFiles/results.ShareDirs); st.Files != want {
		s.Notef("the guest's find printed %d names, want %d", st.Files, want)
	}
	if st.Read > 0 {
		s.SetMetric(results.ShareRead, float64(spec.ShareMiB)/st.Read.Seconds())
	}
	s.SetMetric(results.ShareFind, ms(st.Find))

	// The same in level 1, with the same tools.
	start := time.Now()
	if _, err := exec.Command(busybox, "cat", filepath.Join(spec.Dir, "big")).Output(); err != nil {
		return failed(s, "level 1's read", err, nil)
	}
	s.SetMetric(results.ShareReadL1, float64(spec.ShareMiB)/time.Since(start).Seconds())
	start = time.Now()
	if _, err := exec.Command(busybox, "find", filepath.Join(spec.Dir, "tree")).Output(); err != nil {
		return failed(s, "level 1's find", err, nil)
	}
	s.SetMetric(results.ShareFindL1, ms(time.Since(start)))
	return s
}

// commandArgs is `vmm run` of a command with kernel ck, before its own
// flags and the command.
func (r *runner) commandArgs(ck results.CommandKernel) []string {
	args := []string{r.cfg.VMM, "run", "-k", ck.BzImage, "--transport", ck.Transport}
	if ck.Modules != "" {
		args = append(args, "--modules", ck.Modules)
	}
	return args
}

// timedRun runs argv to its end, at most timeout, and returns its wall
// time and its stdout; a status other than 0 is an error.
func timedRun(argv []string, timeout time.Duration) (time.Duration, []byte, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = cmd.Process.Kill() // gone already is fine: Wait below reports it
		<-done
		err = fmt.Errorf("timed out after %v", timeout)
	}
	wall := time.Since(start)
	if err != nil {
		return wall, append(stdout.Bytes(), stderr.Bytes()...), err
	}
	return wall, stdout.Bytes(), nil
}

func failed(s *results.Sample, what string, err error, out []byte) *results.Sample {
	s.Error = fmt.Sprintf("%s: %v", what, err)
	if len(out) > 0 {
		s.ConsoleTail = strings.Split(tailText(string(out), 20), "\n")
	}
	return s
}
