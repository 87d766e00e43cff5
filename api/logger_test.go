package api

import (
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/vmm-dev/vmm/machine"
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
		{"both", true, true, LevelDebug, `^` + stamp + ` \[vm1:main:DEBUG:logger_test\.go:LOGFLINE\] hello 7$`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			l := NewLog("vm1", &b, LevelTrace)
			l.showLevel, l.showOrigin = tt.showLevel, tt.showOrg
			logAt(l, tt.level)
			want := strings.ReplaceAll(tt.want, "LOGFLINE", logfLine)
			assert.Regexp(t, regexp.MustCompile(want), strings.TrimSuffix(b.String(), "\n"))
		})
	}
}

// logfLine is the line of the Logf call in logAt, once it ran.
var logfLine string

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
		_, _, line, _ := runtime.Caller(0)
		logfLine = strconv.Itoa(line + 2)
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

// The device groups count what happened since the previous flush, under
// Firecracker's names.
func TestDeviceMetricsAreDeltas(t *testing.T) {
	prev := machine.DeviceStats{Disks: []machine.DiskStats{{ReadBytes: 100, ReadCount: 1}}}
	cur := machine.DeviceStats{
		Disks: []machine.DiskStats{{ReadBytes: 612, ReadCount: 2, WriteBytes: 512, WriteCount: 1}, {FlushCount: 3}},
		NICs:  []machine.NICStats{{TXThrottled: 2}},
	}
	cur.NICs[0].RXBytes, cur.NICs[0].RXFrames = 1500, 1
	got := deviceMetrics(cur, prev, []string{"root", "data"}, []string{"eth0"})
	root := got["block_root"].(map[string]uint64)
	assert.Equal(t, uint64(512), root["read_bytes"])
	assert.Equal(t, uint64(1), root["read_count"])
	assert.Equal(t, uint64(512), root["write_bytes"])
	assert.Equal(t, uint64(3), got["block_data"].(map[string]uint64)["flush_count"])
	sum := got["block"].(map[string]uint64)
	assert.Equal(t, uint64(512), sum["read_bytes"])
	assert.Equal(t, uint64(3), sum["flush_count"])
	eth := got["net_eth0"].(map[string]uint64)
	assert.Equal(t, uint64(1500), eth["rx_bytes_count"])
	assert.Equal(t, uint64(1), eth["rx_packets_count"])
	assert.Equal(t, uint64(2), eth["tx_rate_limiter_throttled"])
	assert.Equal(t, eth, got["net"])
	assert.Empty(t, deviceMetrics(machine.DeviceStats{}, machine.DeviceStats{}, nil, nil))
}
