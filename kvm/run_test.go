package kvm

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeRun builds a kvm_run area the size KVM maps on x86 (3 pages), with
// the exit reason set and fields written by fill.
func fakeRun(reason uint32, fill func(b []byte)) []byte {
	b := make([]byte, 3*4096)
	binary.LittleEndian.PutUint32(b[runExitReason:], reason)
	if fill != nil {
		fill(b)
	}
	return b
}

func TestDecodeExit(t *testing.T) {
	le := binary.LittleEndian
	tests := []struct {
		name string
		run  []byte
		want Exit
	}{
		{"io out", fakeRun(exitIO, func(b []byte) {
			b[runIODirection] = ioDirectionOut
			b[runIOSize] = 2
			le.PutUint16(b[runIOPort:], 0x3f8)
			le.PutUint32(b[runIOCount:], 1)
			le.PutUint64(b[runIODataOffset:], 4096)
			b[4096], b[4097] = 0x34, 0x12
		}), IOOut{Port: 0x3f8, Size: 2, Count: 1, Data: []byte{0x34, 0x12}}},
		{"io in string", fakeRun(exitIO, func(b []byte) {
			b[runIOSize] = 1
			le.PutUint16(b[runIOPort:], 0x60)
			le.PutUint32(b[runIOCount:], 3)
			le.PutUint64(b[runIODataOffset:], 4096)
		}), IOIn{Port: 0x60, Size: 1, Count: 3, Data: []byte{0, 0, 0}}},
		{"mmio write", fakeRun(exitMMIO, func(b []byte) {
			le.PutUint64(b[runMMIOPhysAddr:], 0xd000_0000)
			le.PutUint32(b[runMMIOLen:], 4)
			b[runMMIOIsWrite] = 1
			copy(b[runMMIOData:], []byte{1, 2, 3, 4, 5})
		}), MMIOWrite{Addr: 0xd000_0000, Data: []byte{1, 2, 3, 4}}},
		{"mmio read", fakeRun(exitMMIO, func(b []byte) {
			le.PutUint64(b[runMMIOPhysAddr:], 0xfee0_0020)
			le.PutUint32(b[runMMIOLen:], 8)
		}), MMIORead{Addr: 0xfee0_0020, Data: make([]byte, 8)}},
		{"hlt", fakeRun(exitHLT, nil), HLT{}},
		{"shutdown", fakeRun(exitShutdown, nil), Shutdown{}},
		{"intr", fakeRun(exitIntr, nil), Interrupted{}},
		{"fail entry", fakeRun(exitFailEntry, func(b []byte) {
			le.PutUint64(b[runFailEntryReason:], 0x80000021)
			le.PutUint32(b[runFailEntryCPU:], 3)
		}), FailEntry{Reason: 0x80000021, CPU: 3}},
		{"internal error", fakeRun(exitInternalError, func(b []byte) {
			le.PutUint32(b[runEventType:], SuberrorEmulation)
			le.PutUint32(b[runEventNData:], 2)
			le.PutUint64(b[runEventData:], 0xaa)
			le.PutUint64(b[runEventData+8:], 0xbb)
		}), InternalError{Suberror: SuberrorEmulation, Data: []uint64{0xaa, 0xbb}}},
		{"system event, ndata clamped", fakeRun(exitSystemEvent, func(b []byte) {
			le.PutUint32(b[runEventType:], SystemEventReset)
			le.PutUint32(b[runEventNData:], 1000)
		}), SystemEvent{Type: SystemEventReset, Data: make([]uint64, maxEventData)}},
		{"debug", fakeRun(exitDebug, func(b []byte) {
			le.PutUint32(b[runDebugException:], 1)
			le.PutUint64(b[runDebugPC:], 0x1000)
			le.PutUint64(b[runDebugDR6:], 0xffff0ff0)
			le.PutUint64(b[runDebugDR7:], 0x400)
		}), Debug{Exception: 1, PC: 0x1000, DR6: 0xffff0ff0, DR7: 0x400}},
		{"unknown 0", fakeRun(exitUnknown, func(b []byte) {
			le.PutUint64(b[runHWExitReason:], 0x7b)
		}), Unknown{Reason: 0, HardwareReason: 0x7b}},
		{"unhandled", fakeRun(29, nil), Unknown{Reason: 29}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeExit(tt.run)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.NotEmpty(t, got.String())
		})
	}
}

func TestDecodeExitDataAliasesRun(t *testing.T) {
	run := fakeRun(exitIO, func(b []byte) {
		b[runIOSize] = 1
		binary.LittleEndian.PutUint32(b[runIOCount:], 1)
		binary.LittleEndian.PutUint64(b[runIODataOffset:], 4096)
	})
	e, err := decodeExit(run)
	require.NoError(t, err)
	in, ok := e.(IOIn)
	require.True(t, ok)
	in.Data[0] = 0x5a // how a caller answers an IN
	assert.Equal(t, byte(0x5a), run[4096])
	assert.Len(t, in.Data, 1)
	assert.Equal(t, 1, cap(in.Data), "Data must not reach past the access")
}

func TestDecodeExitMalformed(t *testing.T) {
	tests := []struct {
		name string
		run  []byte
	}{
		{"short mapping", make([]byte, 100)},
		{"io past the mapping", fakeRun(exitIO, func(b []byte) {
			b[runIOSize] = 4
			binary.LittleEndian.PutUint32(b[runIOCount:], 4096)
			binary.LittleEndian.PutUint64(b[runIODataOffset:], 4096)
		})},
		{"io offset wraps", fakeRun(exitIO, func(b []byte) {
			b[runIOSize] = 1
			binary.LittleEndian.PutUint32(b[runIOCount:], 1)
			binary.LittleEndian.PutUint64(b[runIODataOffset:], ^uint64(0))
		})},
		{"mmio too long", fakeRun(exitMMIO, func(b []byte) {
			binary.LittleEndian.PutUint32(b[runMMIOLen:], 9)
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeExit(tt.run)
			require.ErrorIs(t, err, ErrBadExit)
		})
	}
}

// FuzzDecodeExit feeds arbitrary kvm_run contents (the exit fields carry
// guest-chosen ports, sizes and addresses) to the decoder: it must return
// an exit or ErrBadExit, never panic, and never alias memory past the run
// area.
func FuzzDecodeExit(f *testing.F) {
	f.Add(uint32(exitIO), []byte{1, 2, 0xf8, 3, 1, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0})
	f.Add(uint32(exitMMIO), []byte{0, 0, 0, 0xd0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 4, 0, 0, 0, 1})
	f.Add(uint32(exitSystemEvent), []byte{2, 0, 0, 0, 200, 0, 0, 0})
	f.Add(uint32(exitInternalError), []byte{1, 0, 0, 0, 3, 0, 0, 0})
	f.Fuzz(func(t *testing.T, reason uint32, exit []byte) {
		run := make([]byte, 3*4096)
		binary.LittleEndian.PutUint32(run[runExitReason:], reason)
		copy(run[runExit:runExit+256], exit)
		e, err := decodeExit(run)
		if err != nil {
			require.ErrorIs(t, err, ErrBadExit)
			return
		}
		require.NotEmpty(t, e.String())
		switch e := e.(type) {
		case IOIn:
			require.Equal(t, e.Size*e.Count, len(e.Data))
		case IOOut:
			require.Equal(t, e.Size*e.Count, len(e.Data))
		case SystemEvent:
			require.LessOrEqual(t, len(e.Data), maxEventData)
		case InternalError:
			require.LessOrEqual(t, len(e.Data), maxEventData)
		}
	})
}
