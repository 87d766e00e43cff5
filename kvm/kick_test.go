package kvm

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

var spinForever = []byte{0xeb, 0xfe} // jmp $

func TestImmediateExit(t *testing.T) {
	_, _, c := realModeGuest(t, []byte{0xf4}) // hlt
	c.SetImmediateExit(true)
	assert.True(t, c.ImmediateExit())
	e, err := c.Run()
	require.NoError(t, err)
	assert.Equal(t, Interrupted{}, e, "KVM_RUN returns at once")
	r, err := c.Regs()
	require.NoError(t, err)
	assert.Equal(t, uint64(codeAddr), r.RIP, "the guest did not run")

	c.SetImmediateExit(false)
	assert.False(t, c.ImmediateExit())
	assert.Equal(t, HLT{}, nextExit(t, c))
}

// runUntilStopped runs c on a locked goroutine until Run returns
// Interrupted with stop set, reporting its thread id first and its last
// error at the end.
func runUntilStopped(c *VCPU, stop *atomic.Bool, tid chan<- int, done chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid <- unix.Gettid()
	for {
		e, err := c.Run()
		if errors.Is(err, ErrClosed) && stop.Load() {
			done <- nil // closed between two Runs: stopped all the same
			return
		}
		if err != nil {
			done <- err
			return
		}
		if _, ok := e.(Interrupted); !ok {
			done <- fmt.Errorf("unexpected exit %v", e)
			return
		}
		if stop.Load() {
			done <- nil
			return
		}
	}
}

// kick is how a VMM stops a vCPU that is inside KVM_RUN: immediate_exit
// catches a vCPU about to enter, the signal one already in the guest.
func kick(t *testing.T, c *VCPU, tid int) {
	t.Helper()
	c.SetImmediateExit(true)
	require.NoError(t, unix.Tgkill(unix.Getpid(), tid, unix.SIGURG)) // the Go runtime ignores SIGURG
}

func TestKickSpinningGuest(t *testing.T) {
	_, _, c := realModeGuest(t, spinForever)
	var stop atomic.Bool
	tid, done := make(chan int, 1), make(chan error, 1)
	go runUntilStopped(c, &stop, tid, done)
	id := <-tid
	time.Sleep(50 * time.Millisecond) // let the guest spin inside KVM_RUN

	stop.Store(true)
	kick(t, c, id)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("vCPU did not leave KVM_RUN after the kick")
	}
	r, err := c.Regs()
	require.NoError(t, err)
	assert.Equal(t, uint64(codeAddr), r.RIP, "still at the jmp $")
}

func TestCloseWhileRunning(t *testing.T) {
	lockThread(t)
	vm := testVM(t)
	ram := addRAM(t, vm, 0, 0, ramSize)
	copy(ram[codeAddr:], spinForever)
	c, err := vm.CreateVCPU(0)
	require.NoError(t, err)
	s, err := c.Sregs()
	require.NoError(t, err)
	s.CS.Base, s.CS.Selector = 0, 0
	require.NoError(t, c.SetSregs(s))
	require.NoError(t, c.SetRegs(Regs{RIP: codeAddr, RFLAGS: 2}))

	var stop atomic.Bool
	tid, done := make(chan int, 1), make(chan error, 1)
	go runUntilStopped(c, &stop, tid, done)
	id := <-tid
	time.Sleep(20 * time.Millisecond)

	// Close while KVM_RUN is in flight: the kvm_run mapping must survive
	// until Run returns, and later calls see ErrClosed.
	stop.Store(true)
	c.SetImmediateExit(true)
	require.NoError(t, c.Close())
	require.NoError(t, unix.Tgkill(unix.Getpid(), id, unix.SIGURG))
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("vCPU did not leave KVM_RUN after the kick")
	}
	_, err = c.Run()
	require.ErrorIs(t, err, ErrClosed)
}
