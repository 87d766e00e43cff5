package kvm

import "fmt"

// Exit is why KVM_RUN returned: one of the types below. Run returns them
// as values, so a run loop is a type switch.
type Exit interface {
	fmt.Stringer
	exit()
}

// IOIn is a guest IN (KVM_EXIT_IO, direction in): fill Data, Size*Count
// bytes that alias the kvm_run page, before the next Run. Count > 1 for
// a string instruction (INS with REP).
type IOIn struct {
	Port        uint16
	Size, Count int
	Data        []byte
}

// IOOut is a guest OUT (KVM_EXIT_IO, direction out); Data aliases the
// kvm_run page and is valid until the next Run.
type IOOut struct {
	Port        uint16
	Size, Count int
	Data        []byte
}

// MMIORead is a guest load from an address no memory slot covers
// (KVM_EXIT_MMIO): fill Data (1 to 8 bytes, aliasing kvm_run) before the
// next Run.
type MMIORead struct {
	Addr uint64
	Data []byte
}

// MMIOWrite is a guest store to an address no memory slot covers; Data
// aliases kvm_run and is valid until the next Run.
type MMIOWrite struct {
	Addr uint64
	Data []byte
}

// HLT is a guest HLT with no in-kernel local APIC to wait in
// (KVM_EXIT_HLT).
type HLT struct{}

// Shutdown is a triple fault, or a shutdown the CPU entered otherwise
// (KVM_EXIT_SHUTDOWN). A PC resets on it.
type Shutdown struct{}

// SystemEvent is KVM_EXIT_SYSTEM_EVENT: the guest asked for a power
// transition through a mechanism KVM handles (e.g. PSCI, SEV).
type SystemEvent struct {
	Type uint32 // SystemEvent*
	Data []uint64
}

// SystemEvent.Type values (<linux/kvm.h> KVM_SYSTEM_EVENT_*).
const (
	SystemEventShutdown = 1
	SystemEventReset    = 2
	SystemEventCrash    = 3
	SystemEventWakeup   = 4
	SystemEventSuspend  = 5
	SystemEventSEVTerm  = 6
)

// InternalError is KVM_EXIT_INTERNAL_ERROR: KVM could not go on, most
// often because its instruction emulator met an instruction it does not
// handle (SuberrorEmulation).
type InternalError struct {
	Suberror uint32
	Data     []uint64
}

// InternalError.Suberror values (<linux/kvm.h> KVM_INTERNAL_ERROR_*).
const (
	SuberrorEmulation            = 1
	SuberrorSimulEx              = 2 // exception while delivering an exception
	SuberrorDeliveryEv           = 3 // exit while delivering an event
	SuberrorUnexpectedExitReason = 4
)

// FailEntry is KVM_EXIT_FAIL_ENTRY: the hardware refused to enter the
// guest, usually because of an inconsistent vCPU state.
type FailEntry struct {
	Reason uint64 // hardware_entry_failure_reason (VMX basic exit reason or SVM code)
	CPU    uint32 // host CPU
}

// Interrupted means KVM_RUN returned before the guest exited: a signal
// arrived (EINTR), immediate_exit was set, the vCPU was not ready yet
// (EAGAIN) or KVM_EXIT_INTR. Check the stop flag, then Run again.
type Interrupted struct{}

// Debug is KVM_EXIT_DEBUG: a debug exception with guest debugging on.
type Debug struct {
	Exception uint32
	PC        uint64
	DR6, DR7  uint64
}

// Unknown is any other exit reason; HardwareReason is set for
// KVM_EXIT_UNKNOWN (reason 0).
type Unknown struct {
	Reason         uint32
	HardwareReason uint64
}

func (IOIn) exit()          {}
func (IOOut) exit()         {}
func (MMIORead) exit()      {}
func (MMIOWrite) exit()     {}
func (HLT) exit()           {}
func (Shutdown) exit()      {}
func (SystemEvent) exit()   {}
func (InternalError) exit() {}
func (FailEntry) exit()     {}
func (Interrupted) exit()   {}
func (Debug) exit()         {}
func (Unknown) exit()       {}

func (e IOIn) String() string {
	return fmt.Sprintf("IO in port %#x size %d count %d", e.Port, e.Size, e.Count)
}

func (e IOOut) String() string {
	return fmt.Sprintf("IO out port %#x size %d count %d data % x", e.Port, e.Size, e.Count, e.Data)
}

func (e MMIORead) String() string { return fmt.Sprintf("MMIO read %#x len %d", e.Addr, len(e.Data)) }

func (e MMIOWrite) String() string {
	return fmt.Sprintf("MMIO write %#x len %d data % x", e.Addr, len(e.Data), e.Data)
}

func (HLT) String() string      { return "HLT" }
func (Shutdown) String() string { return "shutdown (triple fault)" }

var systemEventNames = map[uint32]string{
	SystemEventShutdown: "shutdown",
	SystemEventReset:    "reset",
	SystemEventCrash:    "crash",
	SystemEventWakeup:   "wakeup",
	SystemEventSuspend:  "suspend",
	SystemEventSEVTerm:  "SEV termination",
}

func (e SystemEvent) String() string {
	name, ok := systemEventNames[e.Type]
	if !ok {
		name = fmt.Sprintf("type %d", e.Type)
	}
	return fmt.Sprintf("system event %s data %#x", name, e.Data)
}

var suberrorNames = map[uint32]string{
	SuberrorEmulation:            "emulation failure",
	SuberrorSimulEx:              "exception during exception delivery",
	SuberrorDeliveryEv:           "exit during event delivery",
	SuberrorUnexpectedExitReason: "unexpected exit reason",
}

func (e InternalError) String() string {
	name, ok := suberrorNames[e.Suberror]
	if !ok {
		name = fmt.Sprintf("suberror %d", e.Suberror)
	}
	return fmt.Sprintf("internal error: %s data %#x", name, e.Data)
}

func (e FailEntry) String() string {
	return fmt.Sprintf("entry failed: hardware reason %#x on host CPU %d", e.Reason, e.CPU)
}

func (Interrupted) String() string { return "interrupted" }

func (e Debug) String() string {
	return fmt.Sprintf("debug exception %d at %#x dr6 %#x dr7 %#x", e.Exception, e.PC, e.DR6, e.DR7)
}

func (e Unknown) String() string {
	if e.Reason == exitUnknown {
		return fmt.Sprintf("unknown exit (hardware reason %#x)", e.HardwareReason)
	}
	return fmt.Sprintf("unhandled exit reason %d", e.Reason)
}
