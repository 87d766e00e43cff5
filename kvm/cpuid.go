package kvm

import (
	"encoding/binary"
	"fmt"
)

// CPUIDEntry is struct kvm_cpuid_entry2: one CPUID leaf (and subleaf)
// and the register values the guest sees for it (40 bytes).
type CPUIDEntry struct {
	Function uint32
	Index    uint32 // subleaf, meaningful when Flags has CPUIDFlagSignificantIndex
	Flags    uint32
	EAX      uint32
	EBX      uint32
	ECX      uint32
	EDX      uint32
	_        [3]uint32
}

// CPUIDEntry.Flags bits (<asm/kvm.h> KVM_CPUID_FLAG_*).
const (
	// CPUIDFlagSignificantIndex marks a leaf whose output depends on ECX.
	CPUIDFlagSignificantIndex = 1 << 0
)

// encodeCPUID2 builds a struct kvm_cpuid2 holding entries.
func encodeCPUID2(entries []CPUIDEntry) []byte {
	buf := make([]byte, sizeofCPUID2, sizeofCPUID2+len(entries)*sizeofCPUIDEntry)
	binary.LittleEndian.PutUint32(buf, uint32(len(entries)))
	for _, e := range entries {
		buf = binary.LittleEndian.AppendUint32(buf, e.Function)
		buf = binary.LittleEndian.AppendUint32(buf, e.Index)
		buf = binary.LittleEndian.AppendUint32(buf, e.Flags)
		buf = binary.LittleEndian.AppendUint32(buf, e.EAX)
		buf = binary.LittleEndian.AppendUint32(buf, e.EBX)
		buf = binary.LittleEndian.AppendUint32(buf, e.ECX)
		buf = binary.LittleEndian.AppendUint32(buf, e.EDX)
		buf = append(buf, make([]byte, 12)...) // padding[3]
	}
	return buf
}

// decodeCPUID2 reads the entries of a struct kvm_cpuid2 the kernel
// filled, refusing an nent larger than the buffer.
func decodeCPUID2(buf []byte) ([]CPUIDEntry, error) {
	n := int(binary.LittleEndian.Uint32(buf))
	if n > (len(buf)-sizeofCPUID2)/sizeofCPUIDEntry {
		return nil, fmt.Errorf("%w: kvm_cpuid2 claims %d entries in a %d-byte buffer", ErrIoctl, n, len(buf))
	}
	entries := make([]CPUIDEntry, n)
	for i := range entries {
		b := buf[sizeofCPUID2+i*sizeofCPUIDEntry:]
		entries[i] = CPUIDEntry{
			Function: binary.LittleEndian.Uint32(b[0:]),
			Index:    binary.LittleEndian.Uint32(b[4:]),
			Flags:    binary.LittleEndian.Uint32(b[8:]),
			EAX:      binary.LittleEndian.Uint32(b[12:]),
			EBX:      binary.LittleEndian.Uint32(b[16:]),
			ECX:      binary.LittleEndian.Uint32(b[20:]),
			EDX:      binary.LittleEndian.Uint32(b[24:]),
		}
	}
	return entries, nil
}
