package sandbox

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeMonitor answers "info registers -a" as QEMU's human monitor does,
// with a prompt and escape sequences around the lines.
func fakeMonitor(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
			return
		}
		_, _ = c.Write([]byte("QEMU 7.2 monitor\r\n(qemu) info registers -a\r\n\r\nCPU#0\r\n" +
			"RAX=0000000000000000 RBX=ffff888003a0c000\r\nRIP=ffffffff81a0b2c4 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0\r\n" +
			"CS =0010 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]\r\nCR0=80050033 CR2=00007f0000000000 CR3=0000000003c10000 CR4=00350ef0\r\n" +
			"\x1b[K(qemu) "))
		time.Sleep(3 * time.Second)
	}()
}

func TestFreezeWatchReportsAStoppedHeartbeat(t *testing.T) {
	old := freezeAfter
	freezeAfter = 240 * time.Millisecond
	defer func() { freezeAfter = old }()
	dir, err := os.MkdirTemp("/tmp", "fw") // a short path: unix socket names are limited
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	fw := newFreezeWatch(dir)
	fakeMonitor(t, fw.monitor)
	assert.Equal(t, []string{"-serial", "file:" + filepath.Join(dir, "heartbeat"), "-monitor", "unix:" + fw.monitor + ",server=on,wait=off"}, fw.qemuArgs())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Names the kernel's text address, beats for a while, then stops.
	require.NoError(t, os.WriteFile(fw.heartbeat, []byte("ktext=ffffffff80e00000\n"), 0o644))
	go func() {
		for i := 1; i <= 5; i++ {
			f, err := os.OpenFile(fw.heartbeat, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err != nil {
				return
			}
			_, _ = f.WriteString(strings.Repeat("1", i) + ".00\n")
			_ = f.Close()
			time.Sleep(50 * time.Millisecond)
		}
	}()
	start := time.Now()
	report := fw.watch(ctx)
	require.NotEmpty(t, report)
	assert.GreaterOrEqual(t, time.Since(start), freezeAfter)
	assert.Contains(t, report, "its last uptime: 11111.00 s")
	assert.Contains(t, report, "CPU#0")
	assert.Contains(t, report, "RIP=ffffffff81a0b2c4")
	assert.Contains(t, report, "RIP 0xffffffff81a0b2c4 is 0xffffffff81c0b2c4 in System.map: _text+0xc0b2c4")
	assert.Contains(t, report, "CR0=80050033")
	assert.NotContains(t, report, "RAX=")
	assert.NotContains(t, report, "\x1b")
}

func TestFreezeWatchIgnoresARunWithoutHeartbeat(t *testing.T) {
	old := freezeAfter
	freezeAfter = 100 * time.Millisecond
	defer func() { freezeAfter = old }()
	fw := newFreezeWatch(t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	assert.Empty(t, fw.watch(ctx), "no beat at all: not watched")
}

func TestSymbolize(t *testing.T) {
	assert.Contains(t, symbolize(0xffffffffbaa7141a, 0xffffffffbaa00000), "0xffffffff8107141a in System.map")
	assert.Empty(t, symbolize(0xffffffffbaa7141a, 0), "no text address")
	assert.Empty(t, symbolize(0x40d00e, 0xffffffffb9a00000), "a user-space RIP")
	assert.Equal(t, uint64(0xffffffff81a0b2c4), ripOf("RIP=ffffffff81a0b2c4 RFL=00000046 [---Z-P-]"))
	assert.Zero(t, ripOf("RSP=ffff"))
}
