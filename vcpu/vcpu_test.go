package vcpu

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/bus"
	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/memory"
)

// portLog records port writes, as a device on the bus.
type portLog struct {
	mu     sync.Mutex
	writes []byte
	seen   chan struct{}
}

func (p *portLog) Read(_ uint64, d []byte) { d[0] = 0x5a }
func (p *portLog) Write(_ uint64, d []byte) {
	p.mu.Lock()
	p.writes = append(p.writes, d...)
	p.mu.Unlock()
	select {
	case p.seen <- struct{}{}:
	default:
	}
}

// newRealModeVCPU builds a one-vCPU VM running code at 0x1000 in real mode.
func newRealModeVCPU(t *testing.T, code []byte, buses Buses) *VCPU {
	t.Helper()
	if _, err := os.Stat("/dev/kvm"); err != nil {
		t.Skip("no /dev/kvm on this host: KVM tests skipped")
	}
	sys, err := kvm.Open()
	require.NoError(t, err)
	t.Cleanup(func() { sys.Close() })
	vm, err := sys.CreateVM()
	require.NoError(t, err)
	t.Cleanup(func() { vm.Close() })
	require.NoError(t, vm.SetTSSAddr(0xfffbd000))
	require.NoError(t, vm.CreateIRQChip())
	mem, err := memory.New(memory.MinSize)
	require.NoError(t, err)
	t.Cleanup(func() { mem.Close() })
	require.NoError(t, mem.WriteAt(code, 0x1000))
	// Only the first 512 KiB are RAM to KVM, so real-mode code can reach
	// MMIO at 0xd0000.
	r := mem.Regions()[0]
	require.NoError(t, vm.SetUserMemoryRegion(kvm.UserspaceMemoryRegion{
		MemorySize: 512 << 10, UserspaceAddr: kvm.HostAddr(r.Host)}))
	fd, err := vm.CreateVCPU(0)
	require.NoError(t, err)
	t.Cleanup(func() { fd.Close() })
	supported, err := sys.SupportedCPUID()
	require.NoError(t, err)
	v, err := New(fd, Config{Buses: buses, CPUID: CPUIDFor(supported, 0, 1), Memory: mem})
	require.NoError(t, err)

	sregs, err := fd.Sregs()
	require.NoError(t, err)
	sregs.CS.Base, sregs.CS.Selector = 0, 0
	require.NoError(t, fd.SetSregs(sregs))
	require.NoError(t, fd.SetRegs(kvm.Regs{RIP: 0x1000, RFLAGS: 2}))
	return v
}

func TestRunRoutesPortIOAndStopsOnKick(t *testing.T) {
	log := &portLog{seen: make(chan struct{}, 1)}
	buses := Buses{PIO: &bus.Bus{}, MMIO: &bus.Bus{}}
	require.NoError(t, buses.PIO.Register("log", 0x80, 1, log))
	code := []byte{
		0xe4, 0x80, // in al, 0x80      (device answers 0x5a)
		0xfe, 0xc0, // inc al
		0xe6, 0x80, // out 0x80, al     (0x5b)
		0xe4, 0x81, // in al, 0x81      (unclaimed: 0xff)
		0xe6, 0x80, // out 0x80, al
		0xeb, 0xfe, // jmp $
	}
	v := newRealModeVCPU(t, code, buses)
	type result struct {
		ev  Event
		err error
	}
	done := make(chan result, 1)
	go func() {
		ev, err := v.Run()
		done <- result{ev, err}
	}()
	deadline := time.After(30 * time.Second)
	for {
		log.mu.Lock()
		n := len(log.writes)
		log.mu.Unlock()
		if n == 2 {
			break
		}
		select {
		case <-log.seen:
		case <-deadline:
			t.Fatal("guest did not write the port twice")
		}
	}
	v.Kick()
	select {
	case r := <-done:
		require.NoError(t, r.err)
		assert.Equal(t, EventNone, r.ev)
	case <-time.After(30 * time.Second):
		t.Fatal("Kick did not stop the vCPU")
	}
	assert.Equal(t, []byte{0x5b, 0xff}, log.writes)
	assert.Equal(t, uint64(3), v.Stats().Ports[0x80], "in, out, out")
	assert.Equal(t, uint64(1), v.Stats().Ports[0x81])
}

func TestKickBeforeRunReturnsAtOnce(t *testing.T) {
	v := newRealModeVCPU(t, []byte{0xeb, 0xfe}, Buses{PIO: &bus.Bus{}, MMIO: &bus.Bus{}})
	v.Kick()
	ev, err := v.Run()
	require.NoError(t, err)
	assert.Equal(t, EventNone, ev)
}

// mmioReg is one byte of MMIO that remembers writes and reads back 0x77.
type mmioReg struct {
	mu     sync.Mutex
	writes []byte
}

func (m *mmioReg) Read(_ uint64, d []byte) { d[0] = 0x77 }
func (m *mmioReg) Write(off uint64, d []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes = append(m.writes, byte(off), d[0])
}

func TestRunRoutesMMIO(t *testing.T) {
	log := &portLog{seen: make(chan struct{}, 1)}
	reg := &mmioReg{}
	buses := Buses{PIO: &bus.Bus{}, MMIO: &bus.Bus{}}
	require.NoError(t, buses.PIO.Register("log", 0x80, 1, log))
	require.NoError(t, buses.MMIO.Register("reg", 0xd0000, 0x100, reg))
	code := []byte{
		0xb8, 0x00, 0xd0, // mov ax, 0xd000
		0x8e, 0xd8, // mov ds, ax
		0xc6, 0x06, 0x10, 0x00, 0x42, // mov byte [0x10], 0x42   (MMIO write at 0xd0010)
		0xa0, 0x10, 0x00, // mov al, [0x10]                       (MMIO read: 0x77)
		0xe6, 0x80, // out 0x80, al
		0xeb, 0xfe, // jmp $
	}
	v := newRealModeVCPU(t, code, buses)
	done := make(chan error, 1)
	go func() {
		_, err := v.Run()
		done <- err
	}()
	select {
	case <-log.seen:
	case <-time.After(30 * time.Second):
		t.Fatal("guest did not report the MMIO read")
	}
	v.Kick()
	require.NoError(t, <-done)
	assert.Equal(t, []byte{0x77}, log.writes)
	assert.Equal(t, []byte{0x10, 0x42}, reg.writes)
	assert.Equal(t, uint64(1), v.Stats().Exits["mmio-write"])
	assert.Equal(t, uint64(1), v.Stats().Exits["mmio-read"])
}

func TestFillAllOnes(t *testing.T) {
	d := []byte{1, 2, 3, 4}
	fill(d, 0xff)
	assert.Equal(t, []byte{0xff, 0xff, 0xff, 0xff}, d)
}
