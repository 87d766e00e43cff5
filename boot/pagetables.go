package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// Page table entry bits (SDM Vol. 3 §4.5, Tables 4-15..4-18).
const (
	ptePresent  = 1 << 0
	pteWritable = 1 << 1
	ptePageSize = 1 << 7 // in a PDE: maps a 2 MiB page

	pageDirCount = 4 // 4 PDs x 512 x 2 MiB = 4 GiB
	hugePageSize = 2 << 20
)

// writePageTables identity-maps the first 4 GiB with 2 MiB pages, which
// covers the kernel, the zero page and the command line as the 64-bit boot
// protocol requires, and the MMIO hole for early console drivers.
func writePageTables(mem *memory.Memory) error {
	var table [pageSize]byte
	binary.LittleEndian.PutUint64(table[:], uint64(PDPTAddr)|ptePresent|pteWritable)
	if err := mem.WriteAt(table[:], PML4Addr); err != nil {
		return fmt.Errorf("write PML4: %w", err)
	}

	clear(table[:])
	for i := range pageDirCount {
		pd := uint64(PDAddr) + uint64(i)*pageSize
		binary.LittleEndian.PutUint64(table[i*8:], pd|ptePresent|pteWritable)
	}
	if err := mem.WriteAt(table[:], PDPTAddr); err != nil {
		return fmt.Errorf("write PDPT: %w", err)
	}

	for i := range pageDirCount {
		for j := range 512 {
			page := (uint64(i)*512 + uint64(j)) * hugePageSize
			binary.LittleEndian.PutUint64(table[j*8:], page|ptePresent|pteWritable|ptePageSize)
		}
		pd := PDAddr + memory.GuestAddr(i*pageSize)
		if err := mem.WriteAt(table[:], pd); err != nil {
			return fmt.Errorf("write page directory %d: %w", i, err)
		}
	}
	return nil
}
