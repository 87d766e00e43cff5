package guestinit

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStatusRoundTrip(t *testing.T) {
	for _, s := range []Status{
		{Kind: StatusStarted},
		{Kind: StatusExit, Code: 0},
		{Kind: StatusExit, Code: 255},
		{Kind: StatusSignal, Code: 9},
		{Kind: StatusError, Text: "mount vmm-root: no virtiofs"},
		{Kind: StatusWinsize, Rows: 50, Cols: 132},
		{Kind: StatusPhase, Text: PhaseModules, Micros: 2345678},
		{Kind: StatusPhase, Text: "a-b", Micros: 0},
	} {
		line := s.Encode()
		require.True(t, strings.HasSuffix(string(line), "\n"))
		got, err := ParseStatus(line[:len(line)-1])
		require.NoError(t, err, "%q", line)
		assert.Equal(t, s, got)
	}
}

func TestParseStatusRejects(t *testing.T) {
	for _, l := range []string{"", "exit", "exit 256", "exit -1", "exit 1 2", "signal 0", "signal 128",
		"started now", "winsize 1", "winsize a b", "winsize 70000 1", "EXIT 1", "exit 0x1",
		"phase", "phase init", "phase init -1", "phase Init 1", "phase init 1 2", "phase  1", "phase in/it 1",
		"phase " + strings.Repeat("a", 33) + " 1", "phase init 99999999999999"} {
		_, err := ParseStatus([]byte(l))
		assert.ErrorIs(t, err, ErrStatus, "%q", l)
	}
}

func TestPhaseEncodeRefusesBadNames(t *testing.T) {
	assert.Nil(t, Status{Kind: StatusPhase, Text: "two words", Micros: 1}.Encode())
	assert.Nil(t, Status{Kind: StatusPhase, Text: "", Micros: 1}.Encode())
}

func TestErrorTextStaysOneLine(t *testing.T) {
	line := Status{Kind: StatusError, Text: "a\nb\rc" + strings.Repeat("x", 10000)}.Encode()
	assert.Equal(t, 1, strings.Count(string(line), "\n"))
	assert.LessOrEqual(t, len(line), MaxStatusLine)
}

func TestStatusReaderSplitsAndBounds(t *testing.T) {
	var got []Status
	var errs int
	r := &StatusReader{Handle: func(s Status, err error) {
		if err != nil {
			errs++
			return
		}
		got = append(got, s)
	}}
	for _, chunk := range []string{"sta", "rted\nexi", "t 7\n", strings.Repeat("z", MaxStatusLine+10), "\nsignal 9\n", "garbage\n"} {
		n, err := r.Write([]byte(chunk))
		require.NoError(t, err)
		require.Equal(t, len(chunk), n)
	}
	assert.Equal(t, []Status{{Kind: StatusStarted}, {Kind: StatusExit, Code: 7}, {Kind: StatusSignal, Code: 9}}, got)
	assert.Equal(t, 2, errs, "the overlong line once, the garbage once")
}

func TestConfigRoundTrip(t *testing.T) {
	c := Config{Args: []string{"sh", "-c", "echo hi"}, Env: []string{"PATH=/bin"}, Dir: "/src", UID: 1000, GID: 1000,
		Modules: []string{"/vmm/modules/virtio.ko"}, Root: &Mount{Tag: TagRoot, Target: "/", ReadOnly: true}}
	b, err := MarshalConfig(c)
	require.NoError(t, err)
	got, err := UnmarshalConfig(b)
	require.NoError(t, err)
	assert.Equal(t, c, got)
	_, err = UnmarshalConfig([]byte(`{"Args":[]}`))
	assert.Error(t, err)
}

// FuzzStatusReader: the guest writes anything to the status port; the
// host's reader never panics, never hands on more than a line's bound,
// and every status it accepts encodes back to what it parsed.
func FuzzStatusReader(f *testing.F) {
	f.Add([]byte("started\nexit 0\n"))
	f.Add([]byte("signal 9\nerror x\nwinsize 24 80\n"))
	f.Add([]byte("exit 99999999999999999999\n\n\n"))
	f.Add([]byte("phase init 1234567\nphase exited 01\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := &StatusReader{Handle: func(s Status, err error) {
			if err != nil {
				return
			}
			if s.Kind != StatusError {
				line := s.Encode()
				again, err := ParseStatus(line[:len(line)-1])
				if err != nil || again != s {
					t.Fatalf("%+v encodes to %q, which parses to %+v, %v", s, line, again, err)
				}
			} else if len(s.Text) > MaxStatusLine {
				t.Fatalf("error text of %d bytes", len(s.Text))
			}
		}}
		if _, err := r.Write(b); err != nil {
			t.Fatal(err)
		}
	})
}
