package machine

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/vmm-dev/vmm/devices/pvpanic"
)

// panicBanner is what Linux's panic() prints before it reboots (panic=N)
// or halts. A guest's reset after it is a crash, not a reboot: the exit
// status must tell a CI script the difference, and the reset register
// looks the same either way.
var panicBanner = []byte("Kernel panic - not syncing")

// maxPanicLine bounds the banner line kept for the error message.
const maxPanicLine = 200

// panicGrace is how long vmm waits, once the console showed the panic
// banner and then went quiet, for the guest to reset (panic=N) or report
// through pvpanic before it ends the run itself: with panic=0 the kernel
// halts for good, and without pvpanic nothing else would tell. The wait
// counts from the console's last output, not from the banner: panic()
// prints its stack dump between the banner and the pvpanic notifier, and
// on a slow console (the nested sandbox) that alone took more than 2 s.
// panicMaxWait bounds it for a guest that never stops printing.
const (
	panicGrace   = 2 * time.Second
	panicMaxWait = 30 * time.Second
)

// panicWatch passes console output through and remembers whether the
// banner went by, and the line it starts. Before the banner it keeps the
// banner's length minus one of history, so a banner split across writes
// is still seen. onBanner, if set, runs once, when the banner is seen.
type panicWatch struct {
	out      io.Writer
	onBanner func()
	// onOutput, if set, runs on every write after the banner's.
	onOutput func()

	mu       sync.Mutex
	tail     []byte
	hit      bool
	line     []byte // from the banner to the end of its line
	lineDone bool
}

func newPanicWatch(out io.Writer) *panicWatch { return &panicWatch{out: out} }

func (p *panicWatch) Write(b []byte) (int, error) {
	p.mu.Lock()
	first, after := false, p.hit
	switch {
	case !p.hit:
		p.tail = append(p.tail, b...)
		if i := bytes.Index(p.tail, panicBanner); i >= 0 {
			p.hit, first = true, true
			p.collect(p.tail[i:])
		} else if keep := len(panicBanner) - 1; len(p.tail) > keep {
			p.tail = append(p.tail[:0], p.tail[len(p.tail)-keep:]...)
		}
	case !p.lineDone:
		p.collect(b)
	}
	p.mu.Unlock()
	if first && p.onBanner != nil {
		p.onBanner()
	}
	if after && p.onOutput != nil {
		p.onOutput()
	}
	return p.out.Write(b)
}

// collect adds b to the banner line, up to its end.
func (p *panicWatch) collect(b []byte) {
	if i := bytes.IndexAny(b, "\r\n"); i >= 0 {
		b, p.lineDone = b[:i], true
	}
	room := maxPanicLine - len(p.line)
	p.line = append(p.line, b[:min(len(b), max(room, 0))]...)
}

func (p *panicWatch) seen() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hit
}

// bannerLine returns the panic line as the console showed it, "" if none.
func (p *panicWatch) bannerLine() string {
	if p == nil {
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.ToValidUTF8(strings.TrimSpace(string(p.line)), "?")
}

// panicState is how the machine learns of a guest panic: the pvpanic
// device, at once, or the console's banner.
type panicState struct {
	mu          sync.Mutex
	timer       *time.Timer // armed by the console's banner
	bannerAt    time.Time   // when the console showed it
	crashLoaded bool        // pvpanic CrashLoaded: a kdump kernel runs
}

// onPVPanic handles the guest's pvpanic write: a panic ends the run at
// once. A crash-kernel event lets the kdump kernel run; the run still ends
// as a panic.
func (m *Machine) onPVPanic(ev pvpanic.Event) {
	if ev&pvpanic.Panicked != 0 {
		m.finish(0, m.panicError("pvpanic: the guest reported a panic"))
		return
	}
	m.panicked.mu.Lock()
	m.panicked.crashLoaded = true
	m.panicked.mu.Unlock()
}

// onConsolePanic runs when the console shows the banner: a guest that
// neither resets nor reports through pvpanic within panicGrace of its
// console going quiet (panic=0 and no pvpanic driver) ends the run as a
// panic. A kdump kernel announced through pvpanic is let run.
func (m *Machine) onConsolePanic() {
	m.panicked.mu.Lock()
	defer m.panicked.mu.Unlock()
	if m.panicked.timer != nil {
		return
	}
	m.panicked.bannerAt = time.Now()
	m.panicked.timer = time.AfterFunc(panicGrace, func() {
		if m.crashKernelLoaded() {
			return
		}
		m.finish(0, m.panicError(fmt.Sprintf("its console showed a panic and it did not reset within %v of its last output", panicGrace)))
	})
}

// onConsoleAfterPanic moves the panic deadline to panicGrace after this
// output, but never past panicMaxWait after the banner.
func (m *Machine) onConsoleAfterPanic() {
	m.panicked.mu.Lock()
	defer m.panicked.mu.Unlock()
	if m.panicked.timer == nil {
		return
	}
	// Reset on a timer that already fired arms it again; that run finds
	// the machine finished and does nothing.
	m.panicked.timer.Reset(panicWait(time.Now(), m.panicked.bannerAt))
}

// panicWait is how long after output at now the run waits for the
// guest: panicGrace, cut short at panicMaxWait after the banner.
func panicWait(now, bannerAt time.Time) time.Duration {
	return max(0, min(panicGrace, bannerAt.Add(panicMaxWait).Sub(now)))
}

func (m *Machine) crashKernelLoaded() bool {
	m.panicked.mu.Lock()
	defer m.panicked.mu.Unlock()
	return m.panicked.crashLoaded
}

// stopPanicTimer is undone by Close.
func (m *Machine) stopPanicTimer() error {
	m.panicked.mu.Lock()
	defer m.panicked.mu.Unlock()
	if m.panicked.timer != nil {
		m.panicked.timer.Stop()
	}
	return nil
}

// panicAfter turns the end of a run the guest chose (a reset or power-off)
// into a panic error when the guest had panicked first; nil otherwise.
func (m *Machine) panicAfter(action string) error {
	switch {
	case m.crashKernelLoaded():
		return m.panicError("pvpanic: it panicked and ran its crash kernel, then asked to " + action)
	case m.panics.seen():
		return m.panicError("its console showed a panic, then it asked to " + action)
	}
	return nil
}

// panicError is ErrGuestPanic with how vmm learned of it and the kernel's
// panic line: one line, for stderr.
func (m *Machine) panicError(how string) error {
	line := m.panics.bannerLine()
	if line == "" {
		line = "no panic message on the console"
	}
	return fmt.Errorf("%w (%s): %s", ErrGuestPanic, how, line)
}
