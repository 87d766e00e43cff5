package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Errors of Run; the error text adds the console tail.
var (
	ErrTimeout    = errors.New("sandbox: timed out")
	ErrIncomplete = errors.New("sandbox: level 1 ended before its script finished")
	ErrLevel1     = errors.New("sandbox: level 1 is not usable")
	// ErrFrozen: level 1's heartbeat stopped; its CPUs' registers, read
	// through QEMU's monitor, are in the result's console.
	ErrFrozen = errors.New("sandbox: level 1 froze")
)

// DefaultGuestCmdline is $GUEST_CMDLINE: what a user types for the
// reference guest (vmm's own default, machine.DefaultCmdline). No reboot=
// option: the guest reboots the way Linux picks on this machine.
const DefaultGuestCmdline = "console=ttyS0 panic=1"

// NestedQuiet is what nested mode adds to every guest command line of the
// suite ($GUEST_QUIET): "quiet", so the kernel logs only errors on the
// console. A full boot log is ~60,000 port-I/O exits, most of a boot's,
// and in the nested sandbox each costs about a third of a millisecond: a
// boot to init takes 22 s with it and 6.5 s without (tests/README.md).
// It was first turned on because the sandbox's own faults came in
// proportion to the exits; since level 1's QEMU has the hflags2 fix,
// verbose boots no longer fail (0 of 36). Direct mode, on hardware KVM,
// boots with the full log.
const NestedQuiet = "quiet"

// guestQuiet is $GUEST_QUIET in mode.
func guestQuiet(mode Mode) string {
	if mode == ModeNested {
		return NestedQuiet
	}
	return ""
}

// Scenario describes one sandbox run: a level-1 script (busybox sh) that
// drives the vmm, usually through run_vmm (see scripts/lib.sh).
type Scenario struct {
	Name string
	// VMM is the static vmm binary (see BuildVMM); $VMM in the script.
	VMM string
	// Script is the level-1 script. It sees $VMM, $GUEST_BZIMAGE,
	// $GUEST_VMLINUX, $GUEST_INITRD, $GUEST_CMDLINE, $WORK, $DATA,
	// $SANDBOX_MODE, $STEP_TIMEOUT and Env, with Args as "$@".
	Script string
	Args   []string
	Env    map[string]string
	// Guest configures the guest initramfs ($GUEST_INITRD).
	Guest GuestOptions
	// Files are copied to $DATA/<Name> (disk images, configuration).
	Files []File
	// WithoutVmlinux leaves the 50 MB ELF kernel out of level 1.
	WithoutVmlinux bool
	// StepTimeout bounds each run_vmm; default 120 s.
	StepTimeout time.Duration
	// Timeout bounds the whole run; default 10 minutes. A context deadline
	// that comes earlier wins.
	Timeout time.Duration
	// Console, if set, receives every console line as it arrives.
	Console io.Writer
	// Mode forces nested or direct; empty means DetectMode.
	Mode Mode
	// Kernel is the level-1 and guest kernel; nil means Kernel(ctx).
	Kernel *KernelFiles
}

// Run prepares the artifacts and runs the scenario. Failures of the harness
// (timeout, level 1 not ready, script not finished) are errors that include
// the console tail; the vmm's own results are in Result.Steps. The Result
// is non-nil whenever the run started.
func Run(ctx context.Context, sc Scenario) (*Result, error) {
	if sc.VMM == "" {
		return nil, fmt.Errorf("sandbox: scenario %q: no vmm binary", sc.Name)
	}
	if sc.Timeout == 0 {
		sc.Timeout = 10 * time.Minute
	}
	if sc.StepTimeout == 0 {
		sc.StepTimeout = 120 * time.Second
	}
	for k := range sc.Env {
		if !envNameRE.MatchString(k) {
			return nil, fmt.Errorf("sandbox: scenario %q: invalid variable name %q", sc.Name, k)
		}
	}
	mode := sc.Mode
	if mode == "" {
		var err error
		if mode, _, err = DetectMode(); err != nil {
			return nil, err
		}
	}
	k := sc.Kernel
	if k == nil {
		var err error
		if k, err = Kernel(ctx); err != nil {
			return nil, err
		}
	}
	tmp, err := os.MkdirTemp("", "vmm-sandbox-")
	if err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	defer os.RemoveAll(tmp)
	guestInitrd := filepath.Join(tmp, "guest-initrd.gz")
	if err := BuildGuestInitramfs(k, sc.Guest, guestInitrd); err != nil {
		return nil, fmt.Errorf("sandbox: scenario %q: %w", sc.Name, err)
	}

	ctx, cancel := context.WithTimeout(ctx, sc.Timeout)
	defer cancel()
	p := prepared{sc: sc, kernel: k, tmp: tmp, guestInitrd: guestInitrd}
	switch mode {
	case ModeNested:
		return runNested(ctx, p)
	case ModeDirect:
		return runDirect(ctx, p)
	default:
		return nil, fmt.Errorf("sandbox: unknown mode %q", mode)
	}
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// escapeRE matches terminal escape sequences (ECMA-48 CSI sequences and
// two-byte escapes such as ESC c), which SeaBIOS prints before the first
// line of level 1's console.
var escapeRE = regexp.MustCompile(`\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_c]`)

// prepared is a scenario with its artifacts in place.
type prepared struct {
	sc          Scenario
	kernel      *KernelFiles
	tmp         string
	guestInitrd string
}

// env returns the scenario's environment given the paths of one mode.
func (p prepared) env(mode Mode, vmm, bzImage, vmlinux, initrd, work, data, sandboxDir string) map[string]string {
	env := map[string]string{
		"VMM":           vmm,
		"GUEST_BZIMAGE": bzImage,
		"GUEST_VMLINUX": vmlinux,
		"GUEST_INITRD":  initrd,
		"GUEST_CMDLINE": strings.TrimSpace(DefaultGuestCmdline + " " + guestQuiet(mode)),
		"GUEST_QUIET":   guestQuiet(mode),
		"WORK":          work,
		"DATA":          data,
		"SANDBOX_MODE":  string(mode),
		"SANDBOX_DIR":   sandboxDir,
		"STEP_TIMEOUT":  fmt.Sprint(int(p.sc.StepTimeout.Seconds())),
	}
	for k, v := range p.sc.Env {
		env[k] = v
	}
	return env
}

// scenarioScript is the script run.sh starts: the helpers, then the
// scenario's own text.
func (p prepared) scenarioScript() []byte {
	return []byte(fmt.Sprintf(". \"$SANDBOX_DIR/lib.sh\"\n# scenario %s\n%s\n", p.sc.Name, p.sc.Script))
}

// stream reads console output line by line into the collector and the
// scenario's Console writer until r ends. A line longer than 64 KiB is cut
// into pieces: a guest must not make the harness buffer without bound.
func stream(r io.Reader, start time.Time, c *collector, mu *sync.Mutex, console io.Writer) {
	br := bufio.NewReaderSize(r, 64<<10)
	emit := func(raw []byte) {
		text := strings.TrimRight(string(raw), "\r\n")
		text = escapeRE.ReplaceAllString(strings.ReplaceAll(text, "\r", ""), "")
		mu.Lock()
		c.line(time.Since(start), text)
		mu.Unlock()
		if console != nil {
			// A broken console writer must not stop the run.
			_, _ = fmt.Fprintln(console, text)
		}
	}
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil, errors.Is(err, bufio.ErrBufferFull):
			emit(chunk)
		default: // EOF or a read error: the producer is gone
			if len(chunk) > 0 {
				emit(chunk)
			}
			return
		}
	}
}

// outcome turns the collected result and the way the run ended into Run's
// return values.
func outcome(ctx context.Context, c *collector, start time.Time, exitErr error, stderr *tailBuffer, what string) (*Result, error) {
	res := c.res
	res.Wall = time.Since(start)
	var cause error
	switch {
	case c.frozen != "":
		cause = fmt.Errorf("%w: %s", ErrFrozen, c.frozen)
	case ctx.Err() != nil:
		cause = fmt.Errorf("%w after %v", ErrTimeout, res.Wall.Round(time.Second))
	case !c.done && len(res.Errors) > 0:
		cause = fmt.Errorf("%w: %s", ErrLevel1, strings.Join(res.Errors, "; "))
	case !c.done:
		cause = fmt.Errorf("%w (%s: %v)", ErrIncomplete, what, exitErr)
	default:
		return res, nil
	}
	var b strings.Builder
	if res.L1Ready == 0 && res.Mode == ModeNested {
		b.WriteString("\nlevel 1 never printed \"@@L1 ready\"")
	}
	for _, s := range res.Steps {
		if !s.Finished {
			fmt.Fprintf(&b, "\nstep %q was running for %v", s.Name, (res.Wall - s.Begin).Round(time.Millisecond))
		}
		if s.ErrorLine != "" {
			fmt.Fprintf(&b, "\nstep %q vmm error: %s", s.Name, s.ErrorLine)
		}
	}
	if c.reset != "" {
		b.WriteString("\n" + strings.TrimRight(c.reset, "\n"))
	}
	if e := strings.TrimSpace(stderr.String()); e != "" && ctx.Err() == nil {
		fmt.Fprintf(&b, "\n%s stderr:\n%s", what, indent(e))
	}
	fmt.Fprintf(&b, "\nconsole tail:\n%s", indent(res.Tail(tailLines)))
	return res, fmt.Errorf("scenario %q (%s): %w%s", res.Scenario, res.Mode, cause, b.String())
}

// tailBuffer keeps the last bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.ToValidUTF8(t.buf, nil))
}
