// Package console connects the guest's serial console to the host: it
// parses the --console flag, opens where guest output goes, and feeds host
// input (a raw-mode terminal or a pipe) to the UART, with a QEMU-like
// Ctrl-A escape to quit.
package console

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrBadConsoleSpec reports a --console value that is not "stdio",
// "none" or "file=PATH".
var ErrBadConsoleSpec = errors.New(`bad console spec: want "stdio", "none" or "file=PATH"`)

// Kind is where the console is connected.
type Kind int

const (
	// Stdio writes guest output to stdout and reads input from stdin.
	Stdio Kind = iota + 1
	// None discards output and reads no input.
	None
	// File writes output to a file and reads no input.
	File
)

func (k Kind) String() string {
	switch k {
	case Stdio:
		return "stdio"
	case None:
		return "none"
	case File:
		return "file"
	}
	return fmt.Sprintf("console.Kind(%d)", int(k))
}

// Spec is a parsed --console value.
type Spec struct {
	Kind Kind
	Path string // File only
}

func (s Spec) String() string {
	if s.Kind == File {
		return "file=" + s.Path
	}
	return s.Kind.String()
}

// ParseSpec parses a --console value: "stdio", "none" or "file=PATH".
func ParseSpec(s string) (Spec, error) {
	switch s {
	case "stdio":
		return Spec{Kind: Stdio}, nil
	case "none":
		return Spec{Kind: None}, nil
	}
	if path, ok := strings.CutPrefix(s, "file="); ok {
		if path == "" {
			return Spec{}, fmt.Errorf("console %q: empty path: %w", s, ErrBadConsoleSpec)
		}
		return Spec{Kind: File, Path: path}, nil
	}
	return Spec{}, fmt.Errorf("console %q: %w", s, ErrBadConsoleSpec)
}

// Output opens where guest console output goes for a --console value.
// Closing the result closes a file; it leaves stdout open.
func Output(spec string) (io.WriteCloser, error) {
	s, err := ParseSpec(spec)
	if err != nil {
		return nil, err
	}
	switch s.Kind {
	case Stdio:
		return nopCloser{os.Stdout}, nil
	case File:
		f, err := os.OpenFile(s.Path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return nil, fmt.Errorf("console output: %w", err)
		}
		return f, nil
	}
	return nopCloser{io.Discard}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }
