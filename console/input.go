package console

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Options configures the input side of the console.
type Options struct {
	// Sink receives guest-bound input (the UART's Receive). It must not
	// block or keep the slice. Required for a stdio console.
	Sink func([]byte)
	// Quit is called, on a goroutine of its own, when the user types
	// C-a x. Nil ignores the command.
	Quit func()
	// Stdin is the input; nil means os.Stdin.
	Stdin *os.File
	// Messages receives the escape help; nil means os.Stderr.
	Messages io.Writer
}

// ErrNoSink reports a stdio console opened without Options.Sink.
var ErrNoSink = errors.New("console input needs a sink")

// closeWait bounds how long Close waits for the reader to notice it.
const closeWait = 2 * time.Second

// Input reads host input for the guest console. For a terminal it holds
// the terminal in raw mode until Close.
type Input struct {
	opts   Options
	fd     int
	saved  *unix.Termios // terminal state to restore; nil when not raw
	wakeFD int           // eventfd that stops the reader; -1 when none
	done   chan struct{} // closed when the reader returns

	mu     sync.Mutex
	closed bool

	closeOnce sync.Once
	closeErr  error
}

// Open starts reading input for a --console value. A stdio console reads
// stdin: in raw mode when it is a terminal, as a plain stream (a pipe, a
// file) otherwise; end of input is not an error. "none" and "file=PATH"
// read nothing. Escapes (C-a x, C-a h, C-a C-a) work in both modes. The
// reader goroutine never keeps the process alive; Close stops it and
// restores the terminal.
func Open(spec string, opts Options) (*Input, error) {
	s, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	in := &Input{opts: opts, fd: -1, wakeFD: -1, done: make(chan struct{})}
	if s.Kind != Stdio {
		close(in.done)
		return in, nil
	}
	if opts.Sink == nil {
		return nil, fmt.Errorf("open console %s: %w", s, ErrNoSink)
	}
	if in.opts.Stdin == nil {
		in.opts.Stdin = os.Stdin
	}
	if in.opts.Messages == nil {
		in.opts.Messages = os.Stderr
	}
	in.fd = int(in.opts.Stdin.Fd())

	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("open console %s: eventfd: %w", s, err)
	}
	in.wakeFD = wake

	if old, err := terminalState(in.fd); err == nil {
		if err := setTerminalState(in.fd, rawMode(old)); err != nil {
			_ = unix.Close(wake) // the set error is what matters
			return nil, fmt.Errorf("open console %s: raw mode: %w", s, err)
		}
		in.saved = old
	}
	go in.read()
	return in, nil
}

// Raw reports whether Open put a terminal in raw mode.
func (in *Input) Raw() bool { return in.saved != nil }

// Close stops reading, so the sink is not called after it returns, and
// restores the terminal. It is safe to call more than once.
func (in *Input) Close() error {
	in.closeOnce.Do(func() {
		in.mu.Lock()
		in.closed = true
		in.mu.Unlock()

		var errs []error
		if in.saved != nil {
			if err := setTerminalState(in.fd, in.saved); err != nil {
				errs = append(errs, fmt.Errorf("restore terminal: %w", err))
			}
		}
		if in.wakeFD >= 0 {
			if err := in.stopReader(); err != nil {
				errs = append(errs, err)
			}
		}
		in.closeErr = errors.Join(errs...)
	})
	return in.closeErr
}

// stopReader wakes the reader out of poll and waits for it briefly. If it
// is stuck in a read (another process drained the input between its poll
// and its read), it is left behind: it sees closed and drops what it
// reads, and the eventfd stays open so its number is not reused under it.
func (in *Input) stopReader() error {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1) // eventfd(2): a host-endian uint64
	if _, err := unix.Write(in.wakeFD, one[:]); err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("stop console reader: %w", err)
	}
	select {
	case <-in.done:
	case <-time.After(closeWait):
		return nil
	}
	if err := unix.Close(in.wakeFD); err != nil {
		return fmt.Errorf("stop console reader: close eventfd: %w", err)
	}
	return nil
}

func (in *Input) read() {
	defer close(in.done)
	var parser escapeParser
	buf := make([]byte, 4096)
	fds := []unix.PollFd{
		{Fd: int32(in.fd), Events: unix.POLLIN},
		{Fd: int32(in.wakeFD), Events: unix.POLLIN},
	}
	for {
		fds[0].Revents, fds[1].Revents = 0, 0
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			in.fail(fmt.Errorf("poll console input: %w", err))
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents&unix.POLLNVAL != 0 {
			in.fail(errors.New("console input fd is not open"))
			return
		}
		if fds[0].Revents == 0 {
			continue
		}
		n, err := unix.Read(in.fd, buf)
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			continue
		case err != nil:
			in.fail(fmt.Errorf("read console input: %w", err))
			return
		case n == 0:
			// End of input (a piped script ended): the guest keeps
			// running, it just gets no more input.
			in.deliver([]event{{kind: eventData, data: parser.flush()}})
			return
		}
		if !in.deliver(parser.feed(buf[:n])) {
			return
		}
	}
}

// deliver hands events to their consumers and reports whether Input is
// still open.
func (in *Input) deliver(events []event) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return false
	}
	for _, e := range events {
		switch e.kind {
		case eventData:
			if len(e.data) > 0 {
				in.opts.Sink(e.data)
			}
		case eventHelp:
			if _, err := io.WriteString(in.opts.Messages, helpText); err != nil {
				slog.Warn("console: writing help failed", "err", err)
			}
		case eventQuit:
			if in.opts.Quit != nil {
				go in.opts.Quit()
			}
		}
	}
	return true
}

func (in *Input) fail(err error) {
	in.mu.Lock()
	closed := in.closed
	in.mu.Unlock()
	if !closed {
		slog.Warn("console: input stopped", "err", err)
	}
}
