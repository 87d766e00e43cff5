package kvm

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A 64-bit guest: the test builds the GDT, identity page tables and the
// long-mode sregs itself, as a loader would.

const (
	lmGDT  = 0x0500
	lmPML4 = 0x9000
	lmPDPT = 0xa000
	lmPD   = 0xb000

	pteP  = 1 << 0 // present
	pteRW = 1 << 1
	ptePS = 1 << 7 // 2 MiB page in a PD entry

	cr0PE   = 1 << 0
	cr0ET   = 1 << 4
	cr0PG   = 1 << 31
	cr4PAE  = 1 << 5
	eferLME = 1 << 8
	eferLMA = 1 << 10
)

// setupLongMode writes page tables mapping virtual [0, 2 MiB) to physical
// [0, 2 MiB) and, as an alias, [2 MiB, 4 MiB) to physical [0, 2 MiB) too;
// it writes a GDT and puts the vCPU in 64-bit mode at rip.
func setupLongMode(t *testing.T, ram []byte, c *VCPU, rip uint64) {
	t.Helper()
	le := binary.LittleEndian
	le.PutUint64(ram[lmPML4:], lmPDPT|pteP|pteRW)
	le.PutUint64(ram[lmPDPT:], lmPD|pteP|pteRW)
	le.PutUint64(ram[lmPD:], 0|pteP|pteRW|ptePS)
	le.PutUint64(ram[lmPD+8:], 0|pteP|pteRW|ptePS) // the alias

	// GDT: null, 64-bit code (selector 0x08), data (0x10). Intel SDM
	// vol. 3 §3.4.5: P, DPL 0, S, type; L for the code segment.
	le.PutUint64(ram[lmGDT:], 0)
	le.PutUint64(ram[lmGDT+8:], 0x00af_9a00_0000_ffff)
	le.PutUint64(ram[lmGDT+16:], 0x00cf_9200_0000_ffff)

	s, err := c.Sregs()
	require.NoError(t, err)
	code := Segment{Base: 0, Limit: 0xffff_ffff, Selector: 0x08, Type: 0xb, Present: 1, S: 1, L: 1, G: 1}
	data := Segment{Base: 0, Limit: 0xffff_ffff, Selector: 0x10, Type: 0x3, Present: 1, S: 1, DB: 1, G: 1}
	s.CS = code
	s.DS, s.ES, s.FS, s.GS, s.SS = data, data, data, data, data
	s.GDT = DTable{Base: lmGDT, Limit: 3*8 - 1}
	s.CR3 = lmPML4
	s.CR4 = cr4PAE
	s.CR0 = cr0PE | cr0ET | cr0PG
	s.EFER = eferLME | eferLMA
	require.NoError(t, c.SetSregs(s))
	require.NoError(t, c.SetRegs(Regs{RIP: rip, RSP: 0x8000, RFLAGS: 0x2}))
}

func TestGuestLongMode(t *testing.T) {
	lockThread(t)
	vm := testVM(t)
	ram := addRAM(t, vm, 0, 0, ramSize)
	copy(ram[codeAddr:], []byte{
		0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // mov rax, 0x1122334455667788
		0x66, 0xba, 0x50, 0x00, // mov dx, 0x50
		0xef,                   // out dx, eax
		0x48, 0xc1, 0xe8, 0x20, // shr rax, 32
		0xef, // out dx, eax
		0xf4, // hlt
	})
	c, err := vm.CreateVCPU(0)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Close()) })
	setupLongMode(t, ram, c, codeAddr)

	assert.Equal(t, IOOut{Port: 0x50, Size: 4, Count: 1, Data: []byte{0x88, 0x77, 0x66, 0x55}}, nextExit(t, c))
	assert.Equal(t, IOOut{Port: 0x50, Size: 4, Count: 1, Data: []byte{0x44, 0x33, 0x22, 0x11}}, nextExit(t, c))
	assert.Equal(t, HLT{}, nextExit(t, c))

	r, err := c.Regs()
	require.NoError(t, err)
	assert.Equal(t, uint64(0x11223344), r.RAX, "the 64-bit shift ran")
	s, err := c.Sregs()
	require.NoError(t, err)
	assert.NotZero(t, s.EFER&eferLMA, "still in long mode")

	// KVM_TRANSLATE walks the guest's page tables.
	tests := []struct {
		linear, phys uint64
		valid        bool
	}{
		{0x1000, 0x1000, true},
		{0x20_1234, 0x1234, true}, // through the alias PD entry
		{0x4000_0000, 0, false},   // PDPT entry 1 is not present
	}
	for _, tt := range tests {
		phys, valid, err := c.Translate(tt.linear)
		require.NoError(t, err)
		assert.Equal(t, tt.valid, valid, "%#x", tt.linear)
		if tt.valid {
			assert.Equal(t, tt.phys, phys, "%#x", tt.linear)
		}
	}
}
