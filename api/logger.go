package api

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Level is a log level, Firecracker's names (src/vmm/src/logger).
type Level int

const (
	LevelOff Level = iota
	LevelError
	LevelWarning
	LevelInfo
	LevelDebug
	LevelTrace
)

var levelNames = []string{"Off", "Error", "Warning", "Info", "Debug", "Trace"}

func (l Level) String() string {
	if l < 0 || int(l) >= len(levelNames) {
		return fmt.Sprintf("Level(%d)", int(l))
	}
	return levelNames[l]
}

// tag is the level as a log line shows it: Firecracker prints the Rust
// log crate's Level names (ERROR, WARN, INFO, DEBUG, TRACE).
func (l Level) tag() string {
	if l == LevelWarning {
		return "WARN"
	}
	return strings.ToUpper(l.String())
}

// parseLevel accepts Firecracker's level names in any case ("warn" too,
// which its LevelFilter::from_str takes).
func parseLevel(s string) (Level, error) {
	for i, n := range levelNames {
		if strings.EqualFold(s, n) {
			return Level(i), nil
		}
	}
	if strings.EqualFold(s, "warn") {
		return LevelWarning, nil
	}
	return 0, fault("Invalid value for logger level: %s. Possible values: [Error, Warning, Info, Debug, Trace, Off]", s)
}

// ParseLevel reads a --level value.
func ParseLevel(s string) (Level, error) { return parseLevel(s) }

// Log writes Firecracker-style log lines:
//
//	2024-05-01T10:00:00.123456789 [ID:THREAD:LEVEL:FILE:LINE] message
//
// where LEVEL appears with show_level and FILE:LINE with show_log_origin.
type Log struct {
	mu         sync.Mutex
	w          io.Writer
	closer     io.Closer
	id         string
	level      Level
	showLevel  bool
	showOrigin bool
}

// NewLog logs to w (nil: nowhere) at level.
func NewLog(id string, w io.Writer, level Level) *Log {
	if w == nil {
		w = io.Discard
	}
	return &Log{w: w, id: id, level: level}
}

// LogSettings are the logger's parameters from --log-path/--level or
// PUT /logger; nil fields keep their value.
type LogSettings struct {
	Path          *string
	Level         *Level
	ShowLevel     *bool
	ShowLogOrigin *bool
}

// Configure applies s; a log path is opened like Firecracker opens it
// (O_NONBLOCK, so a FIFO with no reader yet does not block), and created
// when missing.
func (l *Log) Configure(s LogSettings) error {
	var f *os.File
	if s.Path != nil {
		var err error
		f, err = openOutput(*s.Path)
		if err != nil {
			return fault("Failed to open the log file: %v", err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if f != nil {
		if l.closer != nil {
			_ = l.closer.Close() // the old log; nothing more goes there
		}
		l.w, l.closer = f, f
	}
	if s.Level != nil {
		l.level = *s.Level
	}
	if s.ShowLevel != nil {
		l.showLevel = *s.ShowLevel
	}
	if s.ShowLogOrigin != nil {
		l.showOrigin = *s.ShowLogOrigin
	}
	return nil
}

// openOutput opens a log or metrics path for appending. O_RDWR keeps
// the open of a FIFO from failing or blocking before its reader comes.
func openOutput(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|syscall.O_NONBLOCK, 0o644)
}

// Logf writes one line at level.
func (l *Log) Logf(level Level, format string, args ...any) { l.write(level, format, args...) }

// write formats the line; called only from Logf and the level helpers,
// so the caller two frames up is where the log call was made.
func (l *Log) write(level Level, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if level == LevelOff || level > l.level {
		return
	}
	var b strings.Builder
	b.WriteString(time.Now().Format("2006-01-02T15:04:05.000000000"))
	b.WriteString(" [")
	b.WriteString(l.id)
	b.WriteString(":main")
	if l.showLevel {
		b.WriteString(":" + level.tag())
	}
	if l.showOrigin {
		if _, file, line, ok := runtime.Caller(2); ok {
			fmt.Fprintf(&b, ":%s:%d", filepath.Base(file), line)
		}
	}
	b.WriteString("] ")
	fmt.Fprintf(&b, format, args...)
	b.WriteByte('\n')
	_, _ = io.WriteString(l.w, b.String()) // a log that cannot be written is not an error to report
}

func (l *Log) Errorf(format string, args ...any) { l.write(LevelError, format, args...) }
func (l *Log) Warnf(format string, args ...any)  { l.write(LevelWarning, format, args...) }
func (l *Log) Infof(format string, args ...any)  { l.write(LevelInfo, format, args...) }

// Close closes the log file, if one was opened.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closer == nil {
		return nil
	}
	err := l.closer.Close()
	l.closer, l.w = nil, io.Discard
	return err
}
