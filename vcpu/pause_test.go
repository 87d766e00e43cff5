package vcpu

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/bus"
	"github.com/vmm-dev/vmm/kvm"
)

// A guest counting in memory stops while paused, hands out its state
// then, and counts on after Resume.
func TestPauseSaveResume(t *testing.T) {
	buses := Buses{PIO: &bus.Bus{}, MMIO: &bus.Bus{}}
	// inc word [0x5000]; jmp $-4 (the inc)
	v := newRealModeVCPU(t, []byte{0xff, 0x06, 0x00, 0x50, 0xeb, 0xfa}, buses)
	counter := func() uint16 {
		b, err := v.mem.Slice(0x5000, 2)
		require.NoError(t, err)
		return binary.LittleEndian.Uint16(b)
	}

	// Paused before Run: the loop parks before entering the guest, and
	// state operations work meanwhile.
	v.Pause()
	assert.True(t, v.Paused())
	done := make(chan error, 1)
	go func() { _, err := v.Run(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	assert.Zero(t, counter(), "a vCPU paused before Run never entered the guest")
	st, err := v.Save(nil, 4096)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x1000), st.Regs.RIP)

	v.Resume()
	require.Eventually(t, func() bool { return counter() > 10 }, 5*time.Second, time.Millisecond)
	_, err = v.Save(nil, 4096)
	assert.ErrorIs(t, err, ErrNotPaused, "a running vCPU refuses")

	v.Pause()
	require.True(t, v.Paused())
	c1 := counter()
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, c1, counter(), "the counter stops while paused")
	st, err = v.Save([]uint32{0x10}, 4096)
	require.NoError(t, err)
	assert.Contains(t, []uint64{0x1000, 0x1004}, st.Regs.RIP, "RIP is inside the loop")
	require.Len(t, st.MSRs, 1)
	assert.Equal(t, kvm.MPStateRunnable, st.MPState)
	require.NoError(t, v.Restore(st), "a state restores into its own vCPU")

	v.Resume()
	require.Eventually(t, func() bool { return counter() != c1 }, 5*time.Second, time.Millisecond)
	v.Pause()
	v.Kick()
	require.NoError(t, <-done, "Kick ends a paused loop")
}

// blockingPort answers reads with 0x5a, but only once the test lets it.
type blockingPort struct {
	entered chan struct{}
	release chan struct{}
}

func (p *blockingPort) Read(_ uint64, d []byte) {
	p.entered <- struct{}{}
	<-p.release
	d[0] = 0x5a
}
func (p *blockingPort) Write(uint64, []byte) {}

// A pause asked while vmm serves a port read parks the vCPU only after
// KVM has completed the read: the saved registers hold the value read
// and point past the IN, so a restore does not read the port again.
func TestPauseCompletesPendingIO(t *testing.T) {
	port := &blockingPort{entered: make(chan struct{}, 1), release: make(chan struct{})}
	buses := Buses{PIO: &bus.Bus{}, MMIO: &bus.Bus{}}
	require.NoError(t, buses.PIO.Register("blocking", 0x10, 1, port))
	// in al, 0x10; jmp $
	v := newRealModeVCPU(t, []byte{0xe4, 0x10, 0xeb, 0xfe}, buses)
	done := make(chan error, 1)
	go func() { _, err := v.Run(); done <- err }()
	<-port.entered

	paused := make(chan struct{})
	go func() { v.Pause(); close(paused) }()
	require.Eventually(t, func() bool {
		v.pmu.Lock()
		defer v.pmu.Unlock()
		return v.park.wanted
	}, 5*time.Second, time.Millisecond, "Pause was asked")
	close(port.release)
	<-paused
	require.True(t, v.Paused())

	st, err := v.Save(nil, 4096)
	require.NoError(t, err)
	assert.Equal(t, uint64(0x5a), st.Regs.RAX&0xff, "the read's value is in AL")
	assert.Equal(t, uint64(0x1002), st.Regs.RIP, "RIP is past the IN, at the jmp")

	v.Kick()
	require.NoError(t, <-done)
}
