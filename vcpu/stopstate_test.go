package vcpu

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/vmm-dev/vmm/kvm"
	"github.com/vmm-dev/vmm/memory"
)

func TestKernelTextWords(t *testing.T) {
	words := func(ws ...uint64) []byte {
		b := make([]byte, 8*len(ws))
		for i, w := range ws {
			binary.LittleEndian.PutUint64(b[8*i:], w)
		}
		return b
	}
	tests := []struct {
		name string
		b    []byte
		max  int
		want []uint64
	}{
		{"empty", nil, 4, nil},
		{"user and direct-map words skipped", words(0x401000, 0xffff888000001000, 0xffffffff81000010), 4, []uint64{0xffffffff81000010}},
		{"modules kept, all-ones skipped", words(0xffffffffc0681dcc, ^uint64(0), 0xffffffff80000000), 4, []uint64{0xffffffffc0681dcc, 0xffffffff80000000}},
		{"bounded", words(0xffffffff81000000, 0xffffffff81000001, 0xffffffff81000002), 2, []uint64{0xffffffff81000000, 0xffffffff81000001}},
		{"trailing partial word ignored", append(words(0xffffffff81000000), 0xff, 0xff), 4, []uint64{0xffffffff81000000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, kernelTextWords(tt.b, tt.max))
		})
	}
}

func TestStopStateString(t *testing.T) {
	s := StopState{ID: 0, InGuest: 2 * time.Second, LastExit: "MMIO write to 0xd0000064 (4 bytes)", SinceLastExit: time.Second,
		Regs: kvm.Regs{RIP: 0xffffffffc0681dcc, RSP: 0xffffcfb7c05a3d20, RFLAGS: 0x246},
		Code: []byte{0xf3, 0x90}, StackText: []uint64{0xffffffffc0680000, 0xffffffff81000000}}
	got := s.String()
	for _, want := range []string{"in the guest for 2s without an exit", "RIP 0xffffffffc0681dcc", "(interrupts on)",
		"code f3 90", "stack text 0xffffffffc0680000 0xffffffff81000000"} {
		assert.True(t, strings.Contains(got, want), "%q lacks %q", got, want)
	}
	s.Code, s.StackText = nil, nil
	assert.NotContains(t, s.String(), "code")
	assert.NotContains(t, s.String(), "stack text")
}

func TestForeignCR3(t *testing.T) {
	mem := memory.FromSlices(memory.Region{Base: 0, Host: make([]byte, 1<<20)})
	assert.False(t, foreignCR3(mem, 0x80050033, 0x2000), "a table in RAM")
	assert.False(t, foreignCR3(mem, 0x80050033, 0x2000|0x18), "flag bits are not the address")
	assert.False(t, foreignCR3(mem, 0x11, 0x104e9c000), "paging off: CR3 means nothing")
	assert.True(t, foreignCR3(mem, 0x80050033, 0x104e9c000), "level 1's CR3 in a 1 MiB guest")
	assert.False(t, foreignCR3(mem, 0x80050033, 0xff000), "a table in RAM's last page")
	assert.True(t, foreignCR3(mem, 0x80050033, 0x100000), "a table just past RAM's end")
}
