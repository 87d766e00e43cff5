// Package vcpu runs a VM's virtual CPUs: one goroutine per vCPU, locked to
// its OS thread, in a KVM_RUN loop that hands port I/O and MMIO exits to
// the machine's buses.
package vcpu

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/boot"
	"github.com/vmm-dev/vmm/bus"
	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/memory"
)

// Sentinel errors for the ways a guest can end its run abnormally.
var (
	// ErrTripleFault: the guest hit a triple fault (KVM_EXIT_SHUTDOWN).
	ErrTripleFault = errors.New("guest triple fault")
	// ErrEmulationFailure: KVM's instruction emulator could not execute a
	// guest instruction.
	ErrEmulationFailure = errors.New("KVM instruction emulation failed")
	// ErrInternal: KVM reported an internal error other than emulation.
	ErrInternal = errors.New("KVM internal error")
	// ErrEntryFailed: hardware refused to enter the guest.
	ErrEntryFailed = errors.New("VM entry failed")
	// ErrGuestCrash: the guest reported a crash (KVM_SYSTEM_EVENT_CRASH).
	ErrGuestCrash = errors.New("guest crashed")
	// ErrUnhandledExit: an exit this VMM does not expect.
	ErrUnhandledExit = errors.New("unhandled vCPU exit")
)

// Event is why a vCPU loop asked the machine to stop.
type Event int

const (
	// EventNone: the loop returned because it was stopped.
	EventNone Event = iota
	// EventPowerOff: KVM reported a system shutdown request.
	EventPowerOff
	// EventReset: KVM reported a system reset request.
	EventReset
)

// Buses are where exits go.
type Buses struct {
	PIO  *bus.Bus
	MMIO *bus.Bus
}

// Config is what a vCPU is built from.
type Config struct {
	Buses  Buses
	CPUID  []kvm.CPUIDEntry // this vCPU's table, from CPUIDFor
	Memory *memory.Memory   // read to show the faulting instruction
}

// VCPU is one virtual CPU and the goroutine that runs it.
type VCPU struct {
	fd    *kvm.VCPU
	buses Buses
	mem   *memory.Memory
	stats *Stats
	// last is the latest exit other than an interruption, for the
	// diagnosis of the next: only the run loop's goroutine touches it.
	last kvm.Exit

	firstRun atomic.Int64  // unix nanoseconds of the first KVM_RUN, 0 before
	started  chan struct{} // closed when firstRun is set

	stopping atomic.Bool
	tid      atomic.Int32 // OS thread of the run loop, 0 while not running
	kickMu   sync.Mutex   // orders Kick against the loop's thread handoff

	// Written by the run loop's thread only; read after Run returned.
	lastAt time.Time  // when last happened, for StopState
	stop   *StopState // where a stop found the vCPU

	pmu          sync.Mutex
	pcond        *sync.Cond // on pmu
	park         parking
	cpuid        []kvm.CPUIDEntry // as set, for a snapshot
	clockCtrlErr error            // the last KVM_KVMCLOCK_CTRL failure, for diagnosis
}

// New configures a created KVM vCPU for its first run.
func New(fd *kvm.VCPU, cfg Config) (*VCPU, error) {
	if err := configureCommon(fd, cfg.CPUID); err != nil {
		return nil, fmt.Errorf("configure vCPU %d: %w", fd.ID(), err)
	}
	v := &VCPU{fd: fd, buses: cfg.Buses, mem: cfg.Memory, stats: newStats(), cpuid: cfg.CPUID, started: make(chan struct{})}
	v.pcond = sync.NewCond(&v.pmu)
	v.park.work = make(chan func(), 1)
	return v, nil
}

// ID returns the vCPU's index, which is also its APIC ID.
func (v *VCPU) ID() int { return v.fd.ID() }

// SetBootState places the vCPU at the kernel entry point. Only the boot
// processor gets it; the others wait for the guest's INIT/SIPI.
func (v *VCPU) SetBootState(st *boot.CPUState) error {
	if err := configureBoot(v.fd, st); err != nil {
		return fmt.Errorf("configure boot vCPU %d: %w", v.ID(), err)
	}
	return nil
}

// FirstRun returns when the vCPU first entered KVM_RUN (zero if never):
// the end of VMM start-up.
func (v *VCPU) FirstRun() time.Time {
	if ns := v.firstRun.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Started is closed when the vCPU first enters KVM_RUN (FirstRun is then
// set): for a restored vCPU, when the guest runs again after Resume.
func (v *VCPU) Started() <-chan struct{} { return v.started }

// Stats returns the exit counters. Read them after Run has returned.
func (v *VCPU) Stats() *Stats { return v.stats }

// Run executes the guest on the calling goroutine until the guest asks to
// power off or reset, an error ends it, or Kick stops it. It locks the
// goroutine to its OS thread for its whole life: KVM's vCPU state is
// loaded per thread, and Kick signals that thread.
func (v *VCPU) Run() (Event, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	v.kickMu.Lock()
	v.tid.Store(int32(unix.Gettid()))
	v.kickMu.Unlock()
	v.enterRun()
	defer func() {
		v.kickMu.Lock()
		v.tid.Store(0)
		v.kickMu.Unlock()
		v.leaveRun()
	}()

	var entered time.Time // start of the run a kick interrupted
	// pending is set while the last exit left work for KVM_RUN to finish:
	// an I/O or MMIO access whose result KVM writes into the guest, and
	// whose instruction it retires, only on the next KVM_RUN (the KVM API
	// document, "KVM_RUN"). A pause then waits for one more KVM_RUN,
	// which Pause's immediate_exit makes return at once with the access
	// completed; parked before it, the vCPU's saved registers would miss
	// the access and replay it on restore.
	pending := false
	for {
		if !pending {
			v.parkIfAsked()
		}
		if v.firstRun.CompareAndSwap(0, time.Now().UnixNano()) {
			close(v.started)
		}
		if v.stopping.Load() {
			v.takeStopState(entered, time.Now())
			return EventNone, nil
		}
		start := time.Now()
		exit, err := v.fd.Run()
		if err != nil {
			return EventNone, fmt.Errorf("vCPU %d: %w", v.ID(), err)
		}
		_, interrupted := exit.(kvm.Interrupted)
		pending = needsCompletion(exit)
		if !interrupted {
			entered = time.Time{}
		} else if entered.IsZero() {
			// A kick, or a Go runtime signal: the guest had been
			// running since the last real exit's re-entry.
			entered = start
		}
		v.stats.count(exit)
		ev, done, err := v.handle(exit)
		if err != nil {
			return EventNone, fmt.Errorf("vCPU %d: %w", v.ID(), err)
		}
		if done {
			return ev, nil
		}
		if !interrupted {
			v.last, v.lastAt = exit, time.Now()
		}
	}
}

// handle dispatches one exit. It reports done when the loop must end.
func (v *VCPU) handle(exit kvm.Exit) (Event, bool, error) {
	switch e := exit.(type) {
	case kvm.IOOut:
		for i := 0; i < e.Count; i++ {
			v.buses.PIO.Write(uint64(e.Port), e.Data[i*e.Size:(i+1)*e.Size])
		}
	case kvm.IOIn:
		for i := 0; i < e.Count; i++ {
			d := e.Data[i*e.Size : (i+1)*e.Size]
			// An unclaimed port floats high on a PC bus; drivers that
			// probe for absent hardware expect all ones.
			if !v.buses.PIO.Read(uint64(e.Port), d) {
				fill(d, 0xff)
			}
		}
	case kvm.MMIOWrite:
		v.buses.MMIO.Write(e.Addr, e.Data)
	case kvm.MMIORead:
		if !v.buses.MMIO.Read(e.Addr, e.Data) {
			fill(e.Data, 0xff)
		}
	case kvm.Interrupted:
		// EINTR: a signal (Go's preemption, or our own Kick) interrupted
		// KVM_RUN. The loop head decides whether to go on.
		v.settleImmediateExit()
	case kvm.HLT:
		// With the in-kernel LAPIC, KVM handles HLT itself; this exit
		// means the vCPU halted with interrupts it can never receive.
		return EventNone, true, fmt.Errorf("%w: HLT exit", ErrUnhandledExit)
	case kvm.Shutdown:
		return EventNone, true, v.describe(ErrTripleFault)
	case kvm.SystemEvent:
		switch e.Type {
		case kvm.SystemEventShutdown:
			return EventPowerOff, true, nil
		case kvm.SystemEventReset:
			return EventReset, true, nil
		case kvm.SystemEventCrash:
			return EventNone, true, ErrGuestCrash
		}
		return EventNone, true, fmt.Errorf("%w: %v", ErrUnhandledExit, e)
	case kvm.InternalError:
		if e.Suberror == kvm.SuberrorEmulation {
			return EventNone, true, v.describe(ErrEmulationFailure)
		}
		return EventNone, true, v.describe(fmt.Errorf("%w: %v", ErrInternal, e))
	case kvm.FailEntry:
		return EventNone, true, fmt.Errorf("%w: hardware reason %#x", ErrEntryFailed, e.Reason)
	case kvm.Debug:
		// Nothing sets guest debug; ignore a stray exit.
	default:
		return EventNone, true, fmt.Errorf("%w: %v", ErrUnhandledExit, exit)
	}
	return EventNone, false, nil
}

// needsCompletion reports whether KVM finishes exit's instruction only on
// the next KVM_RUN.
func needsCompletion(exit kvm.Exit) bool {
	switch exit.(type) {
	case kvm.IOIn, kvm.IOOut, kvm.MMIORead, kvm.MMIOWrite:
		return true
	}
	return false
}

// Kick makes Run return as soon as possible: it sets immediate_exit so a
// vCPU about to enter the guest returns at once, then signals the vCPU's
// thread so a vCPU inside the guest exits. Either way the loop sees
// stopping and returns; no stop request is lost to an EINTR race.
func (v *VCPU) Kick() {
	v.stopping.Store(true)
	v.fd.SetImmediateExit(true)
	v.pmu.Lock()
	v.pcond.Broadcast() // a parked loop wakes and sees stopping
	v.pmu.Unlock()
	v.signal()
}

// signal interrupts KVM_RUN on the loop's thread, if it runs.
func (v *VCPU) signal() {
	v.kickMu.Lock()
	defer v.kickMu.Unlock()
	if tid := v.tid.Load(); tid != 0 {
		// SIGURG is Go's own preemption signal: the runtime already
		// handles it on every thread, and KVM_RUN returns EINTR for it.
		_ = unix.Tgkill(unix.Getpid(), int(tid), unix.SIGURG) // the thread may have just exited; immediate_exit covers it
	}
}

func fill(b []byte, v byte) {
	for i := range b {
		b[i] = v
	}
}
