package sandbox

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeMonitor answers the commands the freeze watch sends as QEMU's human
// monitor does, with a banner, a prompt and escape sequences around the
// lines; the HPET counter advances between reads.
func fakeMonitor(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	answers := map[string]string{
		"info registers -a": "\r\nCPU#0\r\n" +
			"RAX=0000000000000000 RBX=ffff888003a0c000\r\nRIP=ffffffff81a0b2c4 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0\r\n" +
			"CS =0010 0000000000000000 ffffffff 00af9b00 DPL=0 CS64 [-RA]\r\nCR0=80050033 CR2=00007f0000000000 CR3=0000000003c10000 CR4=00350ef0\r\n",
		"info status":  "VM status: running\r\n",
		"info lapic 0": "dumping local APIC state for CPU 0\r\n\r\nLVT0\t 0x00010700 active-hi edge  masked                      ExtINT (vec 0)\r\nLVTT\t 0x000000ec active-hi edge                 one-shot     Fixed  (vec 236)\r\nTimer\t DCR=0x3 (divide 16) initial_count = 61942 current_count = 0\r\nSPIV\t 0x000001ff APIC enabled, focus=off, spurious vec 255\r\n",
	}
	var hpet atomic.Uint64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte("QEMU 10.0.2 monitor - type 'help' for more information\r\n(qemu) "))
				cmd, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				cmd = strings.TrimSpace(cmd)
				answer := answers[cmd]
				if strings.HasPrefix(cmd, "xp ") {
					answer = fmt.Sprintf("00000000fed000f0: 0x%016x\r\n", 0x4a817c800+hpet.Add(0x5f5e100))
				}
				_, _ = c.Write([]byte(cmd + "\r\n" + answer + "\x1b[K(qemu) "))
				time.Sleep(3 * time.Second)
			}()
		}
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
	fw.pid = os.Getpid() // any process with threads
	fakeMonitor(t, fw.monitor)
	assert.Equal(t, []string{"-serial", "file:" + filepath.Join(dir, "heartbeat"), "-monitor", "unix:" + fw.monitor + ",server=on,wait=off"}, fw.qemuArgs()[:4])

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
	assert.Contains(t, report, "VM status: running")
	assert.Regexp(t, "HPET counter 0x[0-9a-f]+, a second later 0x[0-9a-f]+: level 1's clock advancing", report)
	assert.Contains(t, report, "CPU 0 APIC LVTT")
	assert.Contains(t, report, "CPU 0 APIC Timer\t DCR=0x3 (divide 16) initial_count = 61942 current_count = 0")
	assert.Contains(t, report, "QEMU's threads over that second: ")
	assert.NotContains(t, report, "LVT0")
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

func TestThreadDeltaAndHPETValue(t *testing.T) {
	before := map[string]hostThread{"1": {comm: "qemu-system-x86", state: "S", ticks: 10}, "2": {comm: "CPU 0/TCG", state: "R", ticks: 50}}
	after := map[string]hostThread{"1": {comm: "qemu-system-x86", state: "S", wchan: "do_sys_poll", ticks: 10}, "2": {comm: "CPU 0/TCG", state: "R", ticks: 150}, "3": {comm: "new", ticks: 1}}
	assert.Equal(t, "  QEMU's threads over that second: qemu-system-x86 S in do_sys_poll 0 ticks, CPU 0/TCG R 100 ticks\n", threadDelta(before, after))
	assert.Contains(t, threadDelta(before, nil), "not readable")
	assert.Equal(t, uint64(0x4a817c800), hpetValue([]string{"xp /1gx 0xfed000f0", "00000000fed000f0: 0x00000004a817c800"}))
	assert.Zero(t, hpetValue([]string{"Cannot access memory"}))
	assert.Zero(t, hpetValue([]string{"00000000fed000f0: 0x"}), "no digits: no value, no panic")
	self := hostThreads(os.Getpid())
	require.NotEmpty(t, self)
	assert.Nil(t, hostThreads(0))
}

func TestResetReport(t *testing.T) {
	startup, err := os.ReadFile("testdata/qemu-reset-startup.log")
	require.NoError(t, err)
	fw := newFreezeWatch(t.TempDir())
	assert.Equal(t, []string{"-d", "cpu_reset", "-D", fw.resetLog}, fw.qemuArgs()[4:])
	assert.Contains(t, fw.resetReport(), "QEMU's reset log", "no log: said so")
	require.NoError(t, os.WriteFile(fw.resetLog, startup, 0o644))
	assert.Equal(t, "QEMU's log: no triple fault; level 1 reset or powered off by itself", fw.resetReport())
	require.NoError(t, os.WriteFile(fw.resetLog, append(startup, "Triple fault\n"...), 0o644))
	assert.Equal(t, "QEMU's log: level 1's CPU triple-faulted", fw.resetReport())
}
