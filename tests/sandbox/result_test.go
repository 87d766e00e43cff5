package sandbox

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseMarker(t *testing.T) {
	tests := []struct {
		line   string
		ok     bool
		kind   string
		fields map[string]string
		text   string
	}{
		{line: "@@L1 ready mode=nested uptime=3.2", ok: true, kind: "L1",
			fields: map[string]string{"ready": "", "mode": "nested", "uptime": "3.2"}},
		{line: "@@RESULT name=a rc=0 ms=120 timedout=0", ok: true, kind: "RESULT",
			fields: map[string]string{"name": "a", "rc": "0", "ms": "120", "timedout": "0"}},
		{line: "@@ERROR name=a vmm: load kernel: bad magic", ok: true, kind: "ERROR",
			fields: map[string]string{"name": "a"}, text: "vmm: load kernel: bad magic"},
		{line: "@@ERROR something odd", ok: true, kind: "ERROR", fields: map[string]string{}, text: "something odd"},
		{line: "guest says @@RESULT name=a rc=0", ok: false},
		{line: "@@lowercase x=1", ok: false},
		{line: "@@", ok: false},
		{line: "plain text", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			m, ok := parseMarker(tt.line)
			require.Equal(t, tt.ok, ok)
			if !ok {
				return
			}
			assert.Equal(t, tt.kind, m.kind)
			assert.Equal(t, tt.fields, m.fields)
			assert.Equal(t, tt.text, m.text)
		})
	}
}

func TestCollectorSteps(t *testing.T) {
	c := newCollector("demo", ModeNested)
	lines := []string{
		"SeaBIOS",
		"@@L1 ready mode=nested uptime=3.10",
		"@@STEP name=boot begin",
		"[    0.000000] Linux version 6.1",
		"@@GUEST init uptime=1.50",
		"@@GUEST ready kernel=6.1.0-57-cloud-amd64 cpus=2 uptime=1.90",
		"vmm guest: init reached",
		"",
		"@@RESULT name=boot rc=0 ms=2500 timedout=0",
		"@@METRIC name=boot throughput=12MB/s",
		"@@STEP name=bad begin",
		"vmm: no such kernel",
		"@@RESULT name=bad rc=1 ms=10 timedout=0",
		"@@ERROR name=bad vmm: no such kernel",
		"@@L1 error insmod kvm.ko failed",
		"@@L1 done rc=1",
	}
	for i, l := range lines {
		c.line(time.Duration(i)*time.Second, l)
	}
	res := c.res
	assert.True(t, c.done)
	assert.Equal(t, 1, res.ScriptRC)
	assert.Equal(t, time.Second, res.L1Ready)
	assert.Equal(t, []string{"error insmod kvm.ko failed"}, res.Errors)
	require.Len(t, res.Steps, 2)

	boot := res.Step("boot")
	require.NotNil(t, boot)
	assert.True(t, boot.Finished)
	assert.Equal(t, 0, boot.RC)
	assert.Equal(t, 2500*time.Millisecond, boot.VMMTime)
	assert.Equal(t, 2*time.Second, boot.InitReached, "from begin (line 2) to @@GUEST init (line 4)")
	assert.Equal(t, "2", boot.Values["cpus"])
	assert.Equal(t, "6.1.0-57-cloud-amd64", boot.Values["kernel"])
	assert.Equal(t, "12MB/s", boot.Values["throughput"])
	assert.True(t, boot.Contains("init reached"))
	assert.False(t, boot.Contains("no such kernel"))
	assert.Len(t, boot.Console, 5)

	bad := res.Step("bad")
	require.NotNil(t, bad)
	assert.Equal(t, 1, bad.RC)
	assert.Equal(t, "vmm: no such kernel", bad.ErrorLine)
	assert.Contains(t, bad.Describe(), "vmm error: vmm: no such kernel")
	assert.Nil(t, res.Step("missing"))
}

func TestStepDescribeUnfinished(t *testing.T) {
	c := newCollector("demo", ModeDirect)
	c.line(0, "@@STEP name=hang begin")
	c.line(time.Second, "[    1.0] Booting")
	s := c.res.Step("hang")
	require.NotNil(t, s)
	assert.False(t, s.Finished)
	assert.Contains(t, s.Describe(), `step "hang" did not finish`)
	assert.Contains(t, s.Describe(), "  | [    1.0] Booting")
}

func TestEscapeSequencesAreStripped(t *testing.T) {
	raw := "\x1bc\x1b[?7l\x1b[2J@@L1 ready mode=nested"
	assert.Equal(t, "@@L1 ready mode=nested", escapeRE.ReplaceAllString(raw, ""))
}
