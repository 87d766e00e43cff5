package kvm

import "encoding/binary"

// MSREntry is struct kvm_msr_entry: a model-specific register and its
// value (16 bytes).
type MSREntry struct {
	Index uint32
	_     uint32
	Data  uint64
}

// encodeMSRs builds a struct kvm_msrs holding entries.
func encodeMSRs(entries []MSREntry) []byte {
	buf := make([]byte, sizeofMSRs, sizeofMSRs+len(entries)*sizeofMSREntry)
	binary.LittleEndian.PutUint32(buf, uint32(len(entries)))
	for _, e := range entries {
		buf = binary.LittleEndian.AppendUint32(buf, e.Index)
		buf = binary.LittleEndian.AppendUint32(buf, 0)
		buf = binary.LittleEndian.AppendUint64(buf, e.Data)
	}
	return buf
}

// decodeMSRs reads back the first n entries of a struct kvm_msrs.
func decodeMSRs(buf []byte, n int) []MSREntry {
	entries := make([]MSREntry, n)
	for i := range entries {
		b := buf[sizeofMSRs+i*sizeofMSREntry:]
		entries[i] = MSREntry{
			Index: binary.LittleEndian.Uint32(b[0:]),
			Data:  binary.LittleEndian.Uint64(b[8:]),
		}
	}
	return entries
}
