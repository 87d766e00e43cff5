package kvm

import (
	"encoding/binary"
	"fmt"
)

// KVM_EXIT_* reasons (<linux/kvm.h>) that Run decodes.
const (
	exitUnknown       = 0
	exitIO            = 2
	exitDebug         = 4
	exitHLT           = 5
	exitMMIO          = 6
	exitShutdown      = 8
	exitFailEntry     = 9
	exitIntr          = 10
	exitInternalError = 17
	exitSystemEvent   = 24
)

// struct kvm_run layout (<linux/kvm.h>, x86-64). The exit-specific union
// starts at offset 32; each exit's fields are offsets from the start.
const (
	sizeofRun = 2352

	runImmediateExit = 1
	runExitReason    = 8
	runExit          = 32

	// io: __u8 direction, size; __u16 port; __u32 count; __u64 data_offset.
	runIODirection  = 32
	runIOSize       = 33
	runIOPort       = 34
	runIOCount      = 36
	runIODataOffset = 40
	ioDirectionOut  = 1 // KVM_EXIT_IO_OUT

	// mmio: __u64 phys_addr; __u8 data[8]; __u32 len; __u8 is_write.
	runMMIOPhysAddr = 32
	runMMIOData     = 40
	runMMIOLen      = 48
	runMMIOIsWrite  = 52

	// hw: __u64 hardware_exit_reason.
	runHWExitReason = 32

	// fail_entry: __u64 hardware_entry_failure_reason; __u32 cpu.
	runFailEntryReason = 32
	runFailEntryCPU    = 40

	// internal and system_event: __u32 suberror/type; __u32 ndata;
	// __u64 data[16].
	runEventType  = 32
	runEventNData = 36
	runEventData  = 40
	maxEventData  = 16

	// debug.arch: __u32 exception; __u32 pad; __u64 pc, dr6, dr7.
	runDebugException = 32
	runDebugPC        = 40
	runDebugDR6       = 48
	runDebugDR7       = 56
)

// decodeExit turns the kvm_run area after a successful KVM_RUN into an
// Exit. Data slices alias run. It never panics: an exit that points
// outside run is ErrBadExit.
func decodeExit(run []byte) (Exit, error) {
	if len(run) < runExit+256 {
		return nil, fmt.Errorf("%w: kvm_run mapping is %d bytes", ErrBadExit, len(run))
	}
	le := binary.LittleEndian
	reason := le.Uint32(run[runExitReason:])
	switch reason {
	case exitIO:
		return decodeIO(run)
	case exitMMIO:
		n := le.Uint32(run[runMMIOLen:])
		if n > 8 {
			return nil, fmt.Errorf("%w: MMIO access of %d bytes", ErrBadExit, n)
		}
		addr := le.Uint64(run[runMMIOPhysAddr:])
		data := run[runMMIOData : runMMIOData+n : runMMIOData+n]
		if run[runMMIOIsWrite] != 0 {
			return MMIOWrite{Addr: addr, Data: data}, nil
		}
		return MMIORead{Addr: addr, Data: data}, nil
	case exitHLT:
		return HLT{}, nil
	case exitShutdown:
		return Shutdown{}, nil
	case exitIntr:
		return Interrupted{}, nil
	case exitFailEntry:
		return FailEntry{Reason: le.Uint64(run[runFailEntryReason:]), CPU: le.Uint32(run[runFailEntryCPU:])}, nil
	case exitInternalError:
		return InternalError{Suberror: le.Uint32(run[runEventType:]), Data: eventData(run)}, nil
	case exitSystemEvent:
		// api.rst, KVM_EXIT_SYSTEM_EVENT: data[] is valid up to ndata;
		// older kernels had a single flags word there and ndata 0.
		return SystemEvent{Type: le.Uint32(run[runEventType:]), Data: eventData(run)}, nil
	case exitDebug:
		return Debug{
			Exception: le.Uint32(run[runDebugException:]),
			PC:        le.Uint64(run[runDebugPC:]),
			DR6:       le.Uint64(run[runDebugDR6:]),
			DR7:       le.Uint64(run[runDebugDR7:]),
		}, nil
	case exitUnknown:
		return Unknown{Reason: reason, HardwareReason: le.Uint64(run[runHWExitReason:])}, nil
	default:
		return Unknown{Reason: reason}, nil
	}
}

func decodeIO(run []byte) (Exit, error) {
	le := binary.LittleEndian
	port := le.Uint16(run[runIOPort:])
	size := uint64(run[runIOSize])
	count := uint64(le.Uint32(run[runIOCount:]))
	off := le.Uint64(run[runIODataOffset:])
	n := size * count // both below 2^32: no overflow
	if off > uint64(len(run)) || n > uint64(len(run))-off {
		return nil, fmt.Errorf("%w: port %#x I/O of %d×%d bytes at offset %d of a %d-byte kvm_run",
			ErrBadExit, port, count, size, off, len(run))
	}
	data := run[off : off+n : off+n]
	if run[runIODirection] == ioDirectionOut {
		return IOOut{Port: port, Size: int(size), Count: int(count), Data: data}, nil
	}
	return IOIn{Port: port, Size: int(size), Count: int(count), Data: data}, nil
}

// eventData copies data[:ndata] of an internal-error or system-event exit.
func eventData(run []byte) []uint64 {
	n := min(binary.LittleEndian.Uint32(run[runEventNData:]), maxEventData)
	data := make([]uint64, n)
	for i := range data {
		data[i] = binary.LittleEndian.Uint64(run[runEventData+8*i:])
	}
	return data
}
