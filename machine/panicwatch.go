package machine

import (
	"bytes"
	"io"
	"sync/atomic"
)

// panicBanner is what Linux's panic() prints before it reboots (panic=N)
// or halts. A guest's reset after it is a crash, not a reboot: the exit
// status must tell a CI script the difference, and the reset register
// looks the same either way.
var panicBanner = []byte("Kernel panic - not syncing")

// panicWatch passes console output through and remembers whether the
// banner went by. It keeps the banner's length minus one of history so a
// banner split across writes is still seen.
type panicWatch struct {
	out  io.Writer
	tail []byte
	hit  atomic.Bool
}

func newPanicWatch(out io.Writer) *panicWatch { return &panicWatch{out: out} }

func (p *panicWatch) Write(b []byte) (int, error) {
	if !p.hit.Load() {
		p.tail = append(p.tail, b...)
		if bytes.Contains(p.tail, panicBanner) {
			p.hit.Store(true)
		}
		if keep := len(panicBanner) - 1; len(p.tail) > keep {
			p.tail = append(p.tail[:0], p.tail[len(p.tail)-keep:]...)
		}
	}
	return p.out.Write(b)
}

func (p *panicWatch) seen() bool { return p != nil && p.hit.Load() }
