package console

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// collector gathers what the console hands to the guest and to the user.
type collector struct {
	mu    sync.Mutex
	guest bytes.Buffer
	msgs  bytes.Buffer
	quits int
}

func (c *collector) sink(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.guest.Write(b)
}

func (c *collector) quit() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.quits++
}

func (c *collector) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.msgs.Write(b)
}

func (c *collector) snapshot() (guest, msgs string, quits int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.guest.String(), c.msgs.String(), c.quits
}

func (c *collector) options(stdin *os.File) Options {
	return Options{Sink: c.sink, Quit: c.quit, Stdin: stdin, Messages: c}
}

const waitFor = 5 * time.Second

func TestPipedInput(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	c := &collector{}
	in, err := Open("stdio", c.options(r))
	require.NoError(t, err)
	assert.False(t, in.Raw())

	_, err = w.Write([]byte("echo hi\n\x01h\x01xafter"))
	require.NoError(t, err)
	_, err = w.Write([]byte("\x01")) // pending at EOF: delivered as data
	require.NoError(t, err)
	require.NoError(t, w.Close())

	select {
	case <-in.done:
	case <-time.After(waitFor):
		t.Fatal("reader did not stop at end of input")
	}
	require.Eventually(t, func() bool { _, _, q := c.snapshot(); return q == 1 }, waitFor, time.Millisecond)
	guest, msgs, _ := c.snapshot()
	assert.Equal(t, "echo hi\nafter\x01", guest)
	assert.Equal(t, helpText, msgs)
	require.NoError(t, in.Close())
	require.NoError(t, in.Close(), "Close is idempotent")
}

func TestCloseStopsAnIdleReader(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	c := &collector{}
	in, err := Open("stdio", c.options(r))
	require.NoError(t, err)

	start := time.Now()
	require.NoError(t, in.Close())
	assert.Less(t, time.Since(start), closeWait, "Close waited for the reader's timeout")
	select {
	case <-in.done:
	default:
		t.Fatal("reader still running after Close")
	}

	_, err = w.Write([]byte("late"))
	require.NoError(t, err)
	time.Sleep(10 * time.Millisecond)
	guest, _, _ := c.snapshot()
	assert.Empty(t, guest, "no input after Close")
}

func TestInputWithoutStdio(t *testing.T) {
	for _, spec := range []string{"none", "file=/tmp/x"} {
		in, err := Open(spec, Options{})
		require.NoError(t, err, spec)
		assert.False(t, in.Raw())
		require.NoError(t, in.Close())
	}
}

func TestOpenErrors(t *testing.T) {
	_, err := Open("tty", Options{Sink: func([]byte) {}})
	require.ErrorIs(t, err, ErrBadConsoleSpec)
	_, err = Open("stdio", Options{})
	require.ErrorIs(t, err, ErrNoSink)
}

// openPTY returns the master and slave ends of a new pseudo-terminal, or
// skips the test when the system has none.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	fd := int(m.Fd())
	require.NoError(t, unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0), "unlock pty")
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	require.NoError(t, err)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("open pty slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

func TestTerminalRawModeAndRestore(t *testing.T) {
	master, slave := openPTY(t)
	fd := int(slave.Fd())
	before, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	require.NoError(t, err)
	require.NotZero(t, before.Lflag&unix.ICANON, "a new pty starts in canonical mode")

	c := &collector{}
	in, err := Open("stdio", c.options(slave))
	require.NoError(t, err)
	require.True(t, in.Raw())

	raw, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	require.NoError(t, err)
	assert.Zero(t, raw.Lflag&(unix.ICANON|unix.ECHO|unix.ISIG|unix.IEXTEN), "no line editing, echo or key signals")
	assert.Zero(t, raw.Iflag&(unix.ICRNL|unix.IXON), "no CR translation or flow control")
	assert.Zero(t, raw.Oflag&unix.OPOST, "output passes through")
	assert.Equal(t, uint8(1), raw.Cc[unix.VMIN])

	// Ctrl-C reaches the guest as a byte; C-a x quits; no line buffering.
	_, err = master.Write([]byte("ab\x03\x01x"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		guest, _, quits := c.snapshot()
		return guest == "ab\x03" && quits == 1
	}, waitFor, time.Millisecond)

	require.NoError(t, in.Close())
	after, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	require.NoError(t, err)
	assert.Equal(t, *before, *after, "Close restores the terminal")
}
