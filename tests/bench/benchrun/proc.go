package main

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// line is a line of a process's output and when it arrived, from the fork.
// A partial line is the start of a line whose end has not arrived yet; the
// whole line follows later.
type line struct {
	at      time.Duration
	text    string
	partial bool
}

// proc is a started VMM: its output lines arrive on lines (stdout, or
// stderr when asked), the rest is kept for the failure report.
type proc struct {
	cmd   *exec.Cmd
	fork  time.Time
	lines chan line
	// exited is closed when the process is gone; err is then set.
	exited chan struct{}
	err    error
	// streamed is closed once the watched stream reached EOF.
	streamed chan struct{}

	mu    sync.Mutex
	tail  []string // last lines of the watched stream
	other strings.Builder
}

const tailKeep = 60

// start runs argv in its own process group with stdin from /dev/null.
// watchStderr selects which stream becomes lines (strace writes its trace
// to stderr); the other one is collected whole (bounded).
func start(argv []string, watchStderr bool) (*proc, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{cmd: cmd, lines: make(chan line, 4096), exited: make(chan struct{}), streamed: make(chan struct{})}
	var watched io.ReadCloser
	var err error
	if watchStderr {
		watched, err = cmd.StderrPipe()
		cmd.Stdout = &boundedWriter{p: p}
	} else {
		watched, err = cmd.StdoutPipe()
		cmd.Stderr = &boundedWriter{p: p}
	}
	if err != nil {
		return nil, err
	}
	p.fork = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go p.read(watched)
	go func() {
		<-p.streamed
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) read(r io.Reader) {
	defer close(p.streamed)
	defer close(p.lines)
	buf := make([]byte, 64<<10)
	var pending []byte
	for {
		n, err := r.Read(buf)
		at := time.Since(p.fork)
		pending = append(pending, buf[:n]...)
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			p.add(line{at: at, text: strings.TrimRight(string(pending[:i]), "\r")}, true)
			pending = pending[i+1:]
		}
		if len(pending) > 64<<10 {
			// A line without end: cut it, so a guest cannot make us
			// buffer without bound.
			p.add(line{at: at, text: string(pending)}, true)
			pending = nil
		}
		if len(pending) > 0 && n > 0 {
			// strace prints "ioctl(14, KVM_RUN" at the call's entry
			// and the newline only at its return: show it now.
			p.add(line{at: at, text: string(pending), partial: true}, false)
		}
		if err != nil {
			if len(pending) > 0 {
				p.add(line{at: at, text: string(pending)}, true)
			}
			return
		}
	}
}

// add records a line in the tail (when keep) and passes it on.
func (p *proc) add(l line, keep bool) {
	if keep {
		p.mu.Lock()
		p.tail = append(p.tail, l.text)
		if len(p.tail) > tailKeep {
			p.tail = p.tail[len(p.tail)-tailKeep:]
		}
		p.mu.Unlock()
	}
	select {
	case p.lines <- l:
	default: // nobody reads fast enough: the line is in the tail
	}
}

// kill ends the whole process group.
func (p *proc) kill() {
	// ESRCH (already gone) is fine.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// terminate sends SIGTERM to the process group and kills it when it has
// not exited within grace.
func (p *proc) terminate(grace time.Duration) {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM) // ESRCH (already gone) is fine
	p.wait(grace)
}

// wait waits for the exit up to d, then kills; it reports whether the
// process exited by itself.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		p.kill()
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			// A process stuck in the kernel; give up waiting for it.
		}
		return false
	}
}

// exitCode is the exit status, -1 if killed or unknown.
func (p *proc) exitCode() int {
	var ee *exec.ExitError
	if p.err == nil {
		return 0
	}
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// otherOutput is the stream that was not watched.
func (p *proc) otherOutput() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.other.String()
}

func (p *proc) tailLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.tail...)
}

// boundedWriter keeps up to 256 KiB of the unwatched stream.
type boundedWriter struct{ p *proc }

func (w *boundedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if room := 256<<10 - w.p.other.Len(); room > 0 {
		if len(b) > room {
			w.p.other.Write(b[:room])
		} else {
			w.p.other.Write(b)
		}
	}
	return len(b), nil
}
