package vcpu

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/kvm"
)

func find(t *testing.T, entries []kvm.CPUIDEntry, fn, index uint32) kvm.CPUIDEntry {
	t.Helper()
	for _, e := range entries {
		if e.Function == fn && e.Index == index {
			return e
		}
	}
	require.FailNow(t, "leaf missing", "%#x.%d", fn, index)
	return kvm.CPUIDEntry{}
}

func TestCPUIDTopology(t *testing.T) {
	supported := []kvm.CPUIDEntry{
		{Function: leafFeatures, EBX: 0xff00_1234, EDX: 0},
		{Function: leafCacheParams, Index: 0, EAX: 0xfc00_4121},
		{Function: leafTopology, Index: 0}, {Function: leafTopology, Index: 1}, {Function: leafTopology, Index: 2},
		{Function: leafAMDSizes, ECX: 0xffff},
		{Function: leafAMDTopology, EAX: 9, EBX: 0xffff},
		{Function: leafHypervisor, EBX: 0x4b4d564b},
	}
	for _, tc := range []struct {
		cpus, apicID, coreBits int
	}{{1, 0, 0}, {2, 1, 1}, {4, 3, 2}, {5, 4, 3}, {64, 63, 6}} {
		got := CPUIDFor(supported, tc.apicID, tc.cpus)
		require.Len(t, got, len(supported))

		f := find(t, got, leafFeatures, 0)
		assert.Equal(t, uint32(tc.apicID), f.EBX>>24, "leaf 1 initial APIC ID")
		assert.Equal(t, uint32(tc.cpus), f.EBX>>16&0xff, "leaf 1 logical CPU count")
		assert.Equal(t, uint32(0x1234), f.EBX&0xffff, "leaf 1 low EBX untouched")
		assert.NotZero(t, f.ECX&ecxHypervisor)
		assert.Equal(t, tc.cpus > 1, f.EDX&edxHTT != 0)

		smt, core, end := find(t, got, leafTopology, 0), find(t, got, leafTopology, 1), find(t, got, leafTopology, 2)
		assert.Equal(t, uint32(1), smt.EBX)
		assert.Equal(t, uint32(tc.cpus), core.EBX)
		assert.Equal(t, uint32(tc.coreBits), core.EAX)
		assert.Equal(t, uint32(tc.apicID), core.EDX)
		assert.Equal(t, uint32(0), end.ECX>>8&0xff, "level type 0 ends enumeration")

		cache := find(t, got, leafCacheParams, 0)
		assert.Equal(t, uint32(tc.cpus-1), cache.EAX>>26)

		amd := find(t, got, leafAMDSizes, 0)
		assert.Equal(t, uint32(tc.cpus-1), amd.ECX&0xff)
		assert.Equal(t, uint32(tc.apicID), find(t, got, leafAMDTopology, 0).EAX)
		assert.Equal(t, uint32(0x4b4d564b), find(t, got, leafHypervisor, 0).EBX, "KVM leaves pass through")
	}
}

func TestCPUIDDoesNotModifyInput(t *testing.T) {
	in := []kvm.CPUIDEntry{{Function: leafFeatures, EBX: 7}}
	_ = CPUIDFor(in, 3, 4)
	assert.Equal(t, uint32(7), in[0].EBX)
}

func TestSanitizeXSaveDropsAVXStateWithoutAVX(t *testing.T) {
	supported := []kvm.CPUIDEntry{
		{Function: leafFeatures, ECX: 1 << 26}, // XSAVE, no AVX
		{Function: leafExtFeatures},
		{Function: leafXSave, Index: 0, EAX: 7, EBX: 0x240, ECX: 0x340},
		{Function: leafXSave, Index: 1, EAX: 5},
		{Function: leafXSave, Index: 2, EAX: 0x100, EBX: 0x240},
	}
	got := CPUIDFor(supported, 0, 1)
	root := find(t, got, leafXSave, 0)
	assert.Equal(t, uint32(3), root.EAX)
	assert.Equal(t, uint32(0x240), root.ECX)
	for _, e := range got {
		assert.False(t, e.Function == leafXSave && e.Index == 2, "AVX subleaf must go")
	}

	supported[0].ECX |= 1 << 28 // with AVX, everything stays
	got = CPUIDFor(supported, 0, 1)
	root = find(t, got, leafXSave, 0)
	assert.Equal(t, uint32(7), root.EAX)
	assert.Equal(t, uint32(0x340), root.ECX)
	find(t, got, leafXSave, 2)
}
