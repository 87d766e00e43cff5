package results

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// vmm run --stats output (cmd/vmm/run.go printStats).
const vmmStderr = `vmm: startup: first KVM_RUN 3.456ms after main, at unix-ns=1700000000123456789
vmm: ran for 7.2s
vCPU exits to userspace: 1396
  io-out         409
  mmio-write     353
  io-in          272
port I/O exits by port:
  0x03f8 224
  0x0080 1
boot-progress port 0x80 <- 0x01 at 1.5ms
boot-progress port 0x80 <- 0x0042 at 6.9123s
boot-progress port 0x80 <- 0x07 at 7.1s unix-ns=1700000007000000000
`

func TestParseVMMStats(t *testing.T) {
	st := ParseVMMStats(vmmStderr)
	assert.Equal(t, int64(1700000000123456789), st.FirstRunUnixNano)
	assert.Equal(t, 3456*time.Microsecond, st.FirstRunAfterMain)
	assert.Equal(t, map[string]uint64{"io-out": 409, "mmio-write": 353, "io-in": 272}, st.Exits)
	assert.Equal(t, map[string]uint64{"0x03f8": 224, "0x0080": 1}, st.Ports)
	require.Len(t, st.Progress, 3)
	w, ok := st.LastWrite(0x42)
	require.True(t, ok)
	assert.Equal(t, 6912300*time.Microsecond, w.Since)
	assert.Zero(t, w.UnixNano)
	w, ok = st.LastWrite(0x07)
	require.True(t, ok)
	assert.Equal(t, int64(1700000007000000000), w.UnixNano)
	_, ok = st.LastWrite(0x99)
	assert.False(t, ok)
}

func TestParseVMMStatsToleratesGarbage(t *testing.T) {
	st := ParseVMMStats("vmm: error: something\n  weird 12x\nboot-progress port 0x80 <- 0xzz at 1s\n")
	assert.Empty(t, st.Exits)
	assert.Empty(t, st.Progress)
	assert.Zero(t, st.FirstRunUnixNano)
}

const smaps = `55d0c0000000-55d0c0400000 r-xp 00000000 08:01 1234 /usr/bin/qemu
Size:               4096 kB
Rss:                2048 kB
7f0000000000-7f0010000000 rw-p 00000000 00:00 0
Size:             262144 kB
Rss:              100000 kB
7f0010000000-7f0010001000 ---p 00000000 00:00 0
Size:                  4 kB
Rss:                   0 kB
7f1000000000-7f1010000000 r--s 00000000 00:1f 77 /work/disk.img
Size:             262144 kB
Rss:                 512 kB
7f2000000000-7f2000200000 rw-p 00000000 00:00 0
Size:               2048 kB
Rss:                1024 kB
VmFlags: rd wr mr mw me ac
`

func TestParseSmaps(t *testing.T) {
	mem, err := ParseSmaps(strings.NewReader(smaps), 256<<20, 8<<20)
	require.NoError(t, err)
	assert.Equal(t, Memory{TotalRSS: 2048 + 100000 + 512 + 1024, GuestRSS: 100000, GuestMaps: 1, OverheadRSS: 2048 + 512 + 1024}, mem)
}

func TestParseSmapsRejectsBadRange(t *testing.T) {
	_, err := ParseSmaps(strings.NewReader("zz-10 rw-p 0 00:00 0\nRss: 4 kB\n"), 1, 0)
	require.Error(t, err)
	_, err = ParseSmaps(strings.NewReader("20-10 rw-p 0 00:00 0\n"), 1, 0)
	require.Error(t, err)
}

// Real strace -f output: the first KVM_RUN's line is interrupted by
// another thread's message and completed only when the call returns.
const straceOut = `1795903572.554616 execve("/vmm", ["/vmm", "run"], 0x7ffe /* 35 vars */) = 0
strace: Process 17594 attached
[pid 17593] 1795903572.557103 ioctl(5, KVM_GET_API_VERSION, 0) = 12
[pid 17593] 1795903572.557259 ioctl(5, KVM_CREATE_VM, 0) = 6
[pid 17596] 1795903572.662859 ioctl(14, KVM_RUNstrace: Process 17601 attached
, 0) = 0
[pid 17596] 1795903644.495803 ioctl(14, KVM_RUN, 0) = 0
`

func TestStraceStartup(t *testing.T) {
	var s StraceStartup
	done := false
	for _, l := range strings.Split(straceOut, "\n") {
		if done = s.Feed(l); done {
			break
		}
	}
	require.True(t, done)
	assert.Equal(t, 108243*time.Microsecond, s.Startup())
}

func TestStraceStartupPidPrefixOfOutputFile(t *testing.T) {
	var s StraceStartup
	assert.False(t, s.Feed(`8688  1795903206.907101 execve("/usr/bin/qemu-system-x86_64", ["q"], 0x7ffe /* 35 vars */) = 0`))
	assert.False(t, s.Feed(`8694  1795903207.000000 ioctl(9, KVM_CREATE_VCPU, 0) = 9`))
	assert.True(t, s.Feed(`8694  1795903207.043829 ioctl(9, KVM_RUN, 0) = -1 EINTR (Interrupted system call)`))
	assert.Equal(t, 136728*time.Microsecond, s.Startup())
}

// blockingAfter serves data, then blocks forever (like strace while the
// first KVM_RUN runs): WatchStrace must return on the partial line.
type blockingAfter struct {
	data []byte
	done chan struct{}
}

func (b *blockingAfter) Read(p []byte) (int, error) {
	if len(b.data) == 0 {
		<-b.done
		return 0, nil
	}
	n := copy(p, b.data)
	b.data = b.data[n:]
	return n, nil
}

func TestWatchStraceReturnsOnPartialLine(t *testing.T) {
	r := &blockingAfter{data: []byte(straceOut[:strings.Index(straceOut, "KVM_RUNstrace")+len("KVM_RUN")]), done: make(chan struct{})}
	defer close(r.done)
	got := make(chan StraceStartup, 1)
	go func() {
		s, _ := WatchStrace(r)
		got <- s
	}()
	select {
	case s := <-got:
		require.True(t, s.Done())
		assert.Equal(t, 108243*time.Microsecond, s.Startup())
	case <-time.After(5 * time.Second):
		t.Fatal("WatchStrace waited for the end of the line")
	}
}

func TestWatchStraceEndsAtEOF(t *testing.T) {
	s, tail := WatchStrace(bytes.NewReader([]byte("strace: exec failed\n")))
	assert.False(t, s.Done())
	assert.Equal(t, []string{"strace: exec failed"}, tail)
}

func TestSampleLineRoundTrip(t *testing.T) {
	s := &Sample{Kernel: "debian", VMM: VMM, Kind: KindBoot, Round: 2, Where: "sandbox"}
	s.SetMetric(BootConsole, 1234.5)
	s.Notef("note %d", 1)
	line, err := s.Line()
	require.NoError(t, err)
	got, ok, err := ParseLine("garbage before " + line)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, s, got)

	_, ok, err = ParseLine("an ordinary console line")
	assert.NoError(t, err)
	assert.False(t, ok)
	_, ok, err = ParseLine(LinePrefix + "{broken")
	assert.True(t, ok)
	assert.Error(t, err)
}

func sample(vmm, kind string, metrics map[string]float64) *Sample {
	return &Sample{Kernel: "debian", VMM: vmm, Kind: kind, Where: "sandbox", Metrics: metrics}
}

func TestSummarize(t *testing.T) {
	samples := []*Sample{
		sample(VMM, KindBoot, map[string]float64{BootConsole: 100, BlkSeq: 50}),
		sample(QEMU, KindBoot, map[string]float64{BootConsole: 200, BlkSeq: 40}),
		sample(VMM, KindBoot, map[string]float64{BootConsole: 300, BlkSeq: 70}),
		sample(QEMU, KindBoot, map[string]float64{BootConsole: 400}),
		sample(VMM, KindBoot, map[string]float64{BootConsole: 200}),
		sample(VMM, KindStartup, map[string]float64{StartupSelf: 20}),
		sample(QEMU, KindStartup, map[string]float64{StartupSelf: 100}),
		{Kernel: "debian", VMM: VMM, Where: "sandbox", Error: "failed", Metrics: map[string]float64{BootConsole: 1}},
	}
	rows := Summarize(samples)
	require.Len(t, rows, 4)

	boot := rows[0]
	assert.Equal(t, BootConsole, boot.Metric)
	assert.Equal(t, &Stat{N: 3, Median: 200, Min: 100, Max: 300}, boot.VMM)
	assert.Equal(t, &Stat{N: 2, Median: 300, Min: 200, Max: 400}, boot.QEMU)
	assert.InDelta(t, 200.0/300.0, boot.Ratio, 1e-9)

	assert.Equal(t, StartupSelf, rows[1].Metric)
	derived := rows[2]
	assert.Equal(t, BootAfterStartup, derived.Metric)
	assert.Equal(t, 180.0, derived.VMM.Median)
	assert.Equal(t, 200.0, derived.QEMU.Median)

	blk := rows[3]
	assert.Equal(t, BlkSeq, blk.Metric)
	assert.True(t, blk.HigherBetter)
	assert.Equal(t, 60.0, blk.VMM.Median)

	var out bytes.Buffer
	require.NoError(t, WriteTable(&out, rows))
	assert.Contains(t, out.String(), "200 [100-300] (3)")
	assert.Contains(t, out.String(), "0.67 (lower is better)")
}

func TestSummarizePCI(t *testing.T) {
	rows := Summarize([]*Sample{
		sample(VMM, KindBoot, map[string]float64{BootConsole: 100}),
		sample(VMMPCI, KindBoot, map[string]float64{BootConsole: 150}),
		sample(QEMU, KindBoot, map[string]float64{BootConsole: 200}),
	})
	require.Len(t, rows, 1)
	assert.Equal(t, 150.0, rows[0].VMMPCI.Median)
	assert.InDelta(t, 1.5, rows[0].PCIRatio, 1e-9)
	assert.InDelta(t, 0.5, rows[0].Ratio, 1e-9)
	var out bytes.Buffer
	require.NoError(t, WriteTable(&out, rows))
	assert.Contains(t, out.String(), "PCI/MMIO")
	assert.Contains(t, out.String(), "1.50 (lower is better)")

	// Without PCI samples the table keeps its two VMM columns.
	out.Reset()
	require.NoError(t, WriteTable(&out, Summarize([]*Sample{sample(VMM, KindBoot, map[string]float64{BootConsole: 100})})))
	assert.NotContains(t, out.String(), "PCI")
}

func TestSummarizeMissingVMM(t *testing.T) {
	rows := Summarize([]*Sample{sample(QEMU, KindBoot, map[string]float64{NetG2H: 900})})
	require.Len(t, rows, 1)
	assert.Nil(t, rows[0].VMM)
	assert.Zero(t, rows[0].Ratio)
	var out bytes.Buffer
	require.NoError(t, WriteTable(&out, rows))
	assert.Contains(t, out.String(), "n/a")
}

func TestDynamicCommand(t *testing.T) {
	assert.Equal(t, []string{"/p"}, Dynamic{Binary: "/p"}.Command())
	assert.Equal(t, []string{"/l/ld.so", "--library-path", "/l", "/p"}, Dynamic{Loader: "/l/ld.so", LibDir: "/l", Binary: "/p"}.Command())
}

func TestQEMUFirstRun(t *testing.T) {
	_, ok := QEMUFirstRun("10649@1795904753.000333:kvm_vcpu_ioctl cpu_index 0, type 0x4008ae9c, arg 0x55bbcdef4228")
	assert.False(t, ok)
	at, ok := QEMUFirstRun("10649@1795904753.000346:kvm_vcpu_ioctl cpu_index 0, type 0xae80, arg (nil)")
	require.True(t, ok)
	assert.Equal(t, time.Unix(1795904753, 346000), at)
	_, ok = QEMUFirstRun("qemu-system-x86_64: warning: something")
	assert.False(t, ok)
}
