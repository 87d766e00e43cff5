package acpi

import "encoding/binary"

// Identity written into every table header (ACPI 6.4 §5.2.6).
const (
	oemID           = "VMMDEV" // 6 bytes
	oemRevision     = 1
	creatorID       = "VMMD" // 4 bytes: the "compiler" that made the tables
	creatorRevision = 1
)

// headerLen is the size of the System Description Table Header.
const headerLen = 36

// Offsets in the System Description Table Header, ACPI 6.4 Table 5.4.
const (
	hdrSignature   = 0
	hdrLength      = 4
	hdrRevision    = 8
	hdrChecksum    = 9
	hdrOEMID       = 10
	hdrOEMTableID  = 16
	hdrOEMRevision = 24
	hdrCreatorID   = 28
	hdrCreatorRev  = 32
)

// newTable returns a zeroed table of length bytes whose header is filled
// in, except for the checksum: sealTable sets it once the body is done.
// The OEM table ID is "VMM" followed by the signature, so each table's is
// unique as the spec asks.
func newTable(signature string, revision byte, length int) []byte {
	t := make([]byte, length)
	copy(t[hdrSignature:], signature)
	binary.LittleEndian.PutUint32(t[hdrLength:], uint32(length))
	t[hdrRevision] = revision
	copy(t[hdrOEMID:hdrOEMID+6], oemID)
	copy(t[hdrOEMTableID:hdrOEMTableID+8], "VMM "+signature)
	binary.LittleEndian.PutUint32(t[hdrOEMRevision:], oemRevision)
	copy(t[hdrCreatorID:hdrCreatorID+4], creatorID)
	binary.LittleEndian.PutUint32(t[hdrCreatorRev:], creatorRevision)
	return t
}

// sealTable sets the checksum so that all bytes of the table sum to zero.
func sealTable(t []byte) []byte {
	t[hdrChecksum] = 0
	t[hdrChecksum] = -checksum(t)
	return t
}

// checksum returns the 8-bit sum of b.
func checksum(b []byte) byte {
	var sum byte
	for _, c := range b {
		sum += c
	}
	return sum
}

// Generic Address Structure, ACPI 6.4 §5.2.3.2.
const (
	addressSpaceIO  = 1 // System I/O
	accessSizeByte  = 1
	gasSpaceID      = 0
	gasBitWidth     = 1
	gasBitOffset    = 2
	gasAccessSize   = 3
	gasAddress      = 4
	byteRegisterLen = 8 // bits
)

// putIOByteRegister writes a GAS for a byte-wide register at an I/O port.
func putIOByteRegister(b []byte, port uint16) {
	b[gasSpaceID] = addressSpaceIO
	b[gasBitWidth] = byteRegisterLen
	b[gasBitOffset] = 0
	b[gasAccessSize] = accessSizeByte
	binary.LittleEndian.PutUint64(b[gasAddress:], uint64(port))
}
