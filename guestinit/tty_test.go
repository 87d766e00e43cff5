package guestinit

import (
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The guest's pty path on the host's own /dev/ptmx: the command gets a
// controlling terminal of the host's size, its output comes back on the
// stdout port, and a winsize line on the status port resizes it.
func TestAttachTTY(t *testing.T) {
	if _, err := os.Stat("/dev/ptmx"); err != nil {
		t.Skip("no /dev/ptmx")
	}
	inR, inW, err := os.Pipe()
	require.NoError(t, err)
	outR, outW, err := os.Pipe()
	require.NoError(t, err)
	stR, stW, err := os.Pipe()
	require.NoError(t, err)
	defer inW.Close()
	defer stW.Close()

	// The script waits for a line on its stdin, after the resize.
	cmd := exec.Command("/bin/sh", "-c", `test -t 0 && echo tty; stty size; read x; stty size; echo "got $x"`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	relay, err := attachTTY(cmd, Config{TTY: true, Rows: 24, Cols: 80}, inR, outW, stR)
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(outR)
		got <- string(b)
	}()
	time.Sleep(300 * time.Millisecond)
	_, err = stW.Write(Status{Kind: StatusWinsize, Rows: 50, Cols: 132}.Encode())
	require.NoError(t, err)
	time.Sleep(300 * time.Millisecond)
	_, err = inW.Write([]byte("line\n"))
	require.NoError(t, err)
	require.NoError(t, cmd.Wait())
	require.NoError(t, relay())
	outW.Close()
	s := strings.ReplaceAll(<-got, "\r", "")
	assert.Contains(t, s, "tty\n24 80\n")
	assert.Contains(t, s, "50 132\n")
	assert.Contains(t, s, "got line\n")
}
