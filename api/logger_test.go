package api

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Firecracker's log line (src/vmm/src/logger/logging.rs):
// "<%Y-%m-%dT%H:%M:%S.%f> [<id>:<thread>[:<LEVEL>][:<file>:<line>]] <message>".
func TestLogLineFormat(t *testing.T) {
	stamp := `\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}`
	tests := []struct {
		name               string
		showLevel, showOrg bool
		level              Level
		want               string
	}{
		{"plain", false, false, LevelInfo, `^` + stamp + ` \[vm1:main\] hello 7$`},
		{"level", true, false, LevelWarning, `^` + stamp + ` \[vm1:main:WARN\] hello 7$`},
		{"error level", true, false, LevelError, `^` + stamp + ` \[vm1:main:ERROR\] hello 7$`},
		{"origin", false, true, LevelInfo, `^` + stamp + ` \[vm1:main:logger_test\.go:\d+\] hello 7$`},
		{"both", true, true, LevelDebug, `^` + stamp + ` \[vm1:main:DEBUG:logger_test\.go:` + logfLine + `\] hello 7$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			l := NewLog("vm1", &b, LevelTrace)
			l.showLevel, l.showOrigin = tt.showLevel, tt.showOrg
			logAt(l, tt.level)
			assert.Regexp(t, regexp.MustCompile(tt.want), strings.TrimSuffix(b.String(), "\n"))
		})
	}
}

// logfLine is the line of the Logf call in logAt.
const logfLine = "51"

// logAt calls the level's helper, as vmm's code does.
func logAt(l *Log, level Level) {
	switch level {
	case LevelError:
		l.Errorf("hello %d", 7)
	case LevelWarning:
		l.Warnf("hello %d", 7)
	case LevelInfo:
		l.Infof("hello %d", 7)
	default:
		l.Logf(level, "hello %d", 7) // the line the origin must name
	}
}

func TestLogLevelFilter(t *testing.T) {
	var b strings.Builder
	l := NewLog("vm1", &b, LevelWarning)
	l.Infof("dropped")
	l.Warnf("kept")
	l.Errorf("kept too")
	assert.Equal(t, 2, strings.Count(b.String(), "\n"))
	assert.NotContains(t, b.String(), "dropped")
}
