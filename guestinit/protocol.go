// Package guestinit is the guest side of `vmm run -- CMD`: the static
// vmm binary, started by the guest kernel as /init (PID 1) from the
// initramfs the host built, mounts the host's files, runs the command
// with its stdin, stdout and stderr on virtio-console ports, reports how
// it ended on a status port and powers the guest off.
//
// This file is the contract between the two sides: the configuration the
// host writes into the initramfs, the port names, and the status
// messages. The host reads the status port's bytes from the guest, so
// ParseStatus treats them as hostile.
package guestinit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Port names (virtio-console PORT_NAME, /sys/class/virtio-ports/*/name).
const (
	PortStdin  = "vmm.stdin"
	PortStdout = "vmm.stdout"
	PortStderr = "vmm.stderr"
	// PortStatus carries status lines from the guest and window sizes
	// to it.
	PortStatus = "vmm.status"
)

// Ports lists the ports in the order the host creates them.
var Ports = []string{PortStdin, PortStdout, PortStderr, PortStatus}

// ConfigPath is where the configuration lies in the initramfs.
const ConfigPath = "/vmm/config.json"

// ModuleDir is where the modules lie in the initramfs.
const ModuleDir = "/vmm/modules"

// Share tags the host offers by default.
const (
	TagRoot = "vmm-root" // the host's /, read-only under a tmpfs overlay
	TagCwd  = "vmm-cwd"  // the current directory, writable
)

// Mount is one host share the guest mounts by tag.
type Mount struct {
	Tag      string
	Target   string // absolute path in the guest
	ReadOnly bool
}

// Config is what the host tells the guest's init.
type Config struct {
	Args []string // the command and its arguments
	Env  []string // KEY=VALUE
	Dir  string   // working directory
	UID  uint32
	GID  uint32
	// Groups are the supplementary groups after the drop.
	Groups []uint32
	// AsRoot keeps the command root (vmm run by root, or --root).
	AsRoot bool
	// TTY gives the command a pseudo-terminal of Rows x Cols.
	TTY        bool
	Rows, Cols uint16
	// Modules are initramfs paths, in load order.
	Modules []string
	// Root, when set, is mounted read-only at / under a tmpfs overlay;
	// without it the command runs in the initramfs.
	Root *Mount
	// Mounts are mounted over the root after it, in order.
	Mounts []Mount
}

// MarshalConfig encodes c for ConfigPath.
func MarshalConfig(c Config) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("guest config: %w", err)
	}
	return b, nil
}

// UnmarshalConfig decodes ConfigPath's contents.
func UnmarshalConfig(b []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("guest config: %w", err)
	}
	if len(c.Args) == 0 {
		return c, errors.New("guest config: no command")
	}
	return c, nil
}

// StatusKind is what one status line says.
type StatusKind int

const (
	// StatusStarted: init is about to start the command; everything that
	// fails from here on is the command's.
	StatusStarted StatusKind = iota + 1
	// StatusExit: the command exited with Code.
	StatusExit
	// StatusSignal: a signal, Code, killed the command.
	StatusSignal
	// StatusError: init failed before the command (Text says why).
	StatusError
	// StatusWinsize (host to guest): the terminal is Rows x Cols.
	StatusWinsize
	// StatusPhase: init reached phase Text at Micros of the guest's
	// CLOCK_BOOTTIME, for the host's --stats (where the workflow's
	// time goes).
	StatusPhase
)

// Phases init reports, in order.
const (
	PhaseInit    = "init"    // PID 1 started: the kernel's boot is done
	PhaseModules = "modules" // the modules are loaded
	PhasePorts   = "ports"   // the console ports appeared
	PhaseRoot    = "root"    // the shares are mounted and the root entered
	PhaseExited  = "exited"  // the command exited
)

// maxPhaseName bounds a phase name; names are lower-case letters and '-'.
const maxPhaseName = 32

// Status is one line on the status port.
type Status struct {
	Kind       StatusKind
	Code       int
	Text       string
	Rows, Cols uint16
	Micros     int64
}

// MaxStatusLine bounds a status line: the host keeps no more of one.
const MaxStatusLine = 4096

// ErrStatus: a status line that is not one.
var ErrStatus = errors.New("malformed status line")

// Encode returns s as a line.
func (s Status) Encode() []byte {
	switch s.Kind {
	case StatusStarted:
		return []byte("started\n")
	case StatusExit:
		return fmt.Appendf(nil, "exit %d\n", s.Code)
	case StatusSignal:
		return fmt.Appendf(nil, "signal %d\n", s.Code)
	case StatusError:
		t := strings.Map(func(r rune) rune {
			if r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, s.Text)
		if len(t) > MaxStatusLine-16 {
			t = t[:MaxStatusLine-16]
		}
		return fmt.Appendf(nil, "error %s\n", t)
	case StatusWinsize:
		return fmt.Appendf(nil, "winsize %d %d\n", s.Rows, s.Cols)
	case StatusPhase:
		if !phaseName(s.Text) {
			return nil
		}
		return fmt.Appendf(nil, "phase %s %d\n", s.Text, s.Micros)
	}
	return nil
}

func phaseName(s string) bool {
	if s == "" || len(s) > maxPhaseName {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '-' {
			return false
		}
	}
	return true
}

// ParseStatus reads one line (without its newline).
func ParseStatus(line []byte) (Status, error) {
	word, rest, _ := bytes.Cut(line, []byte(" "))
	bad := func() (Status, error) {
		return Status{}, fmt.Errorf("%w: %q", ErrStatus, line[:min(len(line), 80)])
	}
	num := func(s []byte, lo, hi int) (int, bool) {
		n, err := strconv.Atoi(string(s))
		return n, err == nil && n >= lo && n <= hi
	}
	switch string(word) {
	case "started":
		if len(rest) != 0 {
			return bad()
		}
		return Status{Kind: StatusStarted}, nil
	case "exit":
		// An exit status is 8 bits (wait(2)).
		if n, ok := num(rest, 0, 255); ok {
			return Status{Kind: StatusExit, Code: n}, nil
		}
	case "signal":
		if n, ok := num(rest, 1, 127); ok {
			return Status{Kind: StatusSignal, Code: n}, nil
		}
	case "error":
		return Status{Kind: StatusError, Text: string(rest)}, nil
	case "winsize":
		r, c, _ := bytes.Cut(rest, []byte(" "))
		rows, ok1 := num(r, 0, 0xffff)
		cols, ok2 := num(c, 0, 0xffff)
		if ok1 && ok2 {
			return Status{Kind: StatusWinsize, Rows: uint16(rows), Cols: uint16(cols)}, nil
		}
	case "phase":
		// A day of uptime in microseconds is far inside int.
		name, us, _ := bytes.Cut(rest, []byte(" "))
		if n, ok := num(us, 0, 1<<40); ok && phaseName(string(name)) {
			return Status{Kind: StatusPhase, Text: string(name), Micros: int64(n)}, nil
		}
	}
	return bad()
}

// StatusReader splits a byte stream into status lines. It is an
// io.Writer, to be a console port's Output: each whole line goes to
// Handle; a line longer than MaxStatusLine is cut there.
type StatusReader struct {
	Handle func(Status, error)
	buf    []byte
	skip   bool // dropping the rest of an overlong line
}

// Write implements io.Writer; it never fails.
func (r *StatusReader) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		part := b
		if i >= 0 {
			part = b[:i]
		}
		if !r.skip {
			if room := MaxStatusLine - len(r.buf); len(part) > room {
				r.buf = append(r.buf, part[:room]...)
				r.skip = true
				r.Handle(Status{}, fmt.Errorf("%w: longer than %d bytes", ErrStatus, MaxStatusLine))
			} else {
				r.buf = append(r.buf, part...)
			}
		}
		if i < 0 {
			break
		}
		if !r.skip {
			r.Handle(ParseStatus(r.buf))
		}
		r.buf, r.skip = r.buf[:0], false
		b = b[i+1:]
	}
	return n, nil
}
