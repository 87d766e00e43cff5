package sandbox

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Line is one console line and when the harness received it, counted from
// the start of the run.
type Line struct {
	At   time.Duration
	Text string
}

// Step is one run_vmm invocation of a level-1 script.
type Step struct {
	Name     string
	Finished bool // "@@RESULT" seen
	RC       int  // the vmm's exit status (-1 until finished)
	TimedOut bool // run_vmm's timeout killed the vmm
	// VMMTime is the vmm's wall time from start to exit as measured inside
	// level 1 (10 ms resolution).
	VMMTime time.Duration
	// Begin and End are the harness's receive times of the step's first and
	// last marker.
	Begin, End time.Duration
	// InitReached is the time from the step's begin to the guest's
	// "@@GUEST init" line (its first line from user space); 0 if never seen.
	InitReached time.Duration
	// ErrorLine is the last line the vmm wrote to stderr when rc != 0.
	ErrorLine string
	// Values holds key=value pairs of "@@METRIC name=NAME" lines and of the
	// guest's "@@GUEST" lines ("cpus", "kernel", "uptime"...).
	Values  map[string]string
	Console []Line // the lines between the step's begin and result
}

// Contains reports whether a console line of the step contains substr.
func (s *Step) Contains(substr string) bool {
	for _, l := range s.Console {
		if strings.Contains(l.Text, substr) {
			return true
		}
	}
	return false
}

// Tail returns the last n console lines of the step.
func (s *Step) Tail(n int) string {
	return joinTail(s.Console, n)
}

// Describe summarizes the step for a failure message: status, the vmm's
// error line and the console tail.
func (s *Step) Describe() string {
	var b strings.Builder
	switch {
	case !s.Finished:
		fmt.Fprintf(&b, "step %q did not finish", s.Name)
	case s.TimedOut:
		fmt.Fprintf(&b, "step %q: the vmm did not exit within its timeout (killed after %v, rc=%d)", s.Name, s.VMMTime, s.RC)
	default:
		fmt.Fprintf(&b, "step %q: vmm exit status %d after %v", s.Name, s.RC, s.VMMTime)
	}
	if s.ErrorLine != "" {
		fmt.Fprintf(&b, "\nvmm error: %s", s.ErrorLine)
	}
	fmt.Fprintf(&b, "\nconsole tail:\n%s", indent(s.Tail(tailLines)))
	return b.String()
}

// tailLines is how much console a failure message shows.
const tailLines = 40

// Result is what one sandbox run produced.
type Result struct {
	Scenario string
	Mode     Mode
	Console  []Line
	Steps    []*Step
	// L1Ready is the time from the start until "@@L1 ready": the level-1
	// boot in nested mode, about zero in direct mode.
	L1Ready time.Duration
	Wall    time.Duration
	// ScriptRC is the level-1 script's exit status ("@@L1 done rc=N"), -1
	// if it never finished.
	ScriptRC int
	// Errors are "@@L1 error" lines: the level-1 machine is not usable.
	Errors []string
}

// Step returns the named step, or nil.
func (r *Result) Step(name string) *Step {
	for _, s := range r.Steps {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Tail returns the last n console lines.
func (r *Result) Tail(n int) string {
	return joinTail(r.Console, n)
}

// ConsoleText returns the whole console.
func (r *Result) ConsoleText() string {
	return joinTail(r.Console, len(r.Console))
}

func joinTail(lines []Line, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "  | (empty)"
	}
	return "  | " + strings.ReplaceAll(s, "\n", "\n  | ")
}

// marker is a parsed "@@KIND key=value ..." line.
type marker struct {
	kind   string
	fields map[string]string
	text   string // the rest of an @@ERROR line after name=
}

// parseMarker recognizes harness markers. Only whole lines that start with
// "@@" count, so guest output that merely mentions a marker is ignored.
func parseMarker(line string) (marker, bool) {
	rest, ok := strings.CutPrefix(line, "@@")
	if !ok {
		return marker{}, false
	}
	kind, rest, _ := strings.Cut(rest, " ")
	if kind == "" || strings.ToUpper(kind) != kind {
		return marker{}, false
	}
	m := marker{kind: kind, fields: map[string]string{}}
	if kind == "ERROR" {
		name, text, _ := strings.Cut(rest, " ")
		if v, ok := strings.CutPrefix(name, "name="); ok {
			m.fields["name"] = v
			m.text = strings.TrimSpace(text)
			return m, true
		}
		m.text = strings.TrimSpace(rest)
		return m, true
	}
	for _, tok := range strings.Fields(rest) {
		k, v, found := strings.Cut(tok, "=")
		if !found {
			k, v = tok, ""
		}
		m.fields[k] = v
	}
	return m, true
}

// collector turns console lines into a Result as they arrive.
type collector struct {
	res      *Result
	current  *Step         // the step between its begin and result markers
	done     bool          // "@@L1 done" seen
	frozen   string        // set by the freeze watch: level 1 froze
	reset    string        // QEMU's reset log, when level 1 ended early
	finished chan struct{} // closed when done becomes true
}

func newCollector(scenario string, mode Mode) *collector {
	return &collector{
		res:      &Result{Scenario: scenario, Mode: mode, ScriptRC: -1},
		finished: make(chan struct{}),
	}
}

func (c *collector) line(at time.Duration, text string) {
	c.res.Console = append(c.res.Console, Line{At: at, Text: text})
	m, isMarker := parseMarker(text)
	if c.current != nil && !(isMarker && (m.kind == "RESULT" || m.kind == "STEP")) {
		c.current.Console = append(c.current.Console, Line{At: at, Text: text})
	}
	if !isMarker {
		return
	}
	switch m.kind {
	case "L1":
		c.l1Marker(at, text, m)
	case "STEP":
		s := &Step{Name: m.fields["name"], RC: -1, Begin: at, Values: map[string]string{}}
		c.res.Steps = append(c.res.Steps, s)
		c.current = s
	case "RESULT":
		s := c.res.Step(m.fields["name"])
		if s == nil {
			return
		}
		s.Finished = true
		s.End = at
		s.RC = atoi(m.fields["rc"], -1)
		s.VMMTime = time.Duration(atoi(m.fields["ms"], 0)) * time.Millisecond
		s.TimedOut = m.fields["timedout"] == "1"
		if c.current == s {
			c.current = nil
		}
	case "ERROR":
		if s := c.res.Step(m.fields["name"]); s != nil {
			s.ErrorLine = m.text
		}
	case "METRIC":
		if s := c.res.Step(m.fields["name"]); s != nil {
			for k, v := range m.fields {
				if k != "name" {
					s.Values[k] = v
				}
			}
		}
	case "GUEST":
		if c.current == nil {
			return
		}
		if hasWord(m.fields, "init") && c.current.InitReached == 0 {
			c.current.InitReached = at - c.current.Begin
		}
		for k, v := range m.fields {
			if v != "" {
				c.current.Values[k] = v
			}
		}
	}
}

func (c *collector) l1Marker(at time.Duration, text string, m marker) {
	switch {
	case hasWord(m.fields, "ready"):
		c.res.L1Ready = at
	case hasWord(m.fields, "done"):
		if !c.done {
			c.done = true
			close(c.finished)
		}
		c.res.ScriptRC = atoi(m.fields["rc"], -1)
	case hasWord(m.fields, "error"):
		c.res.Errors = append(c.res.Errors, strings.TrimPrefix(text, "@@L1 "))
	}
}

func hasWord(fields map[string]string, word string) bool {
	v, ok := fields[word]
	return ok && v == ""
}

func atoi(s string, fallback int) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fallback
	}
	return n
}
