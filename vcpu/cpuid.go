package vcpu

import "github.com/vmm-dev/vmm/kvm"

// CPUID leaves and bits we rewrite. Intel SDM vol. 2A "CPUID", AMD APM
// vol. 3 appendix E.
const (
	leafFeatures     = 0x1
	leafCacheParams  = 0x4
	leafExtFeatures  = 0x7
	leafXSave        = 0xd
	leafTopology     = 0xb
	leafTopologyV2   = 0x1f
	leafAMDSizes     = 0x8000_0008
	leafAMDTopology  = 0x8000_001e
	leafHypervisor   = 0x4000_0000
	ecxHypervisor    = 1 << 31 // leaf 1 ECX: running under a hypervisor
	edxHTT           = 1 << 28 // leaf 1 EDX: more than one logical CPU per package
	topologyTypeSMT  = 1
	topologyTypeCore = 2
)

// CPUIDFor returns the CPUID table for the vCPU with the given APIC ID in a
// VM of cpus vCPUs: the host's KVM-supported leaves, with the topology
// rewritten so that all vCPUs are cores of one socket, one thread each.
// The guest's view must agree with the MADT (one local APIC per vCPU,
// IDs 0..cpus-1), or Linux disables CPUs it cannot place.
func CPUIDFor(supported []kvm.CPUIDEntry, apicID, cpus int) []kvm.CPUIDEntry {
	out := make([]kvm.CPUIDEntry, 0, len(supported))
	coreBits := bitsFor(cpus)
	for _, e := range supported {
		switch e.Function {
		case leafFeatures:
			e.EBX = e.EBX&0x0000_ffff | uint32(cpus&0xff)<<16 | uint32(apicID&0xff)<<24
			e.ECX |= ecxHypervisor
			if cpus > 1 {
				e.EDX |= edxHTT
			} else {
				e.EDX &^= edxHTT
			}
		case leafCacheParams:
			// EAX[31:26]: cores per package - 1; EAX[25:14]: logical
			// CPUs sharing this cache - 1 (one thread per core).
			if e.EAX&0x1f != 0 {
				e.EAX = e.EAX&0x03ff_ffff | uint32(max(cpus-1, 0)&0x3f)<<26
				e.EAX &^= 0xfff << 14
			}
		case leafTopology, leafTopologyV2:
			e.EDX = uint32(apicID)
			switch e.Index {
			case 0: // SMT level: one thread per core.
				e.EAX, e.EBX, e.ECX = 0, 1, topologyTypeSMT<<8
			case 1: // Core level: all vCPUs in one package.
				e.EAX, e.EBX, e.ECX = uint32(coreBits), uint32(cpus), 1|topologyTypeCore<<8
			default: // Invalid level terminates the enumeration.
				e.EAX, e.EBX, e.ECX = 0, 0, e.Index&0xff
			}
		case leafAMDSizes:
			// ECX[7:0]: cores per package - 1; ECX[15:12]: APIC ID bits
			// that identify the core.
			e.ECX = e.ECX&^0xf0ff | uint32(max(cpus-1, 0)&0xff) | uint32(coreBits&0xf)<<12
		case leafAMDTopology:
			// EAX: extended APIC ID; EBX[7:0]: core ID, EBX[15:8]:
			// threads per core - 1; ECX[7:0]: node ID.
			e.EAX = uint32(apicID)
			e.EBX = e.EBX&^0xffff | uint32(apicID&0xff)
			e.ECX &^= 0x7ff
		}
		out = append(out, e)
	}
	return sanitizeXSave(out)
}

// xfeature bits of XCR0 (Intel SDM vol. 1 §13.1) and the CPUID feature
// flags that must accompany them.
var xfeatureNeeds = []struct {
	mask           uint64
	leaf, reg, bit uint32 // reg: 1 = EBX, 2 = ECX
}{
	{1 << 2, leafFeatures, 2, 28},                // AVX state needs CPUID.1:ECX.AVX
	{1<<3 | 1<<4, leafExtFeatures, 1, 14},        // MPX state needs CPUID.7:EBX.MPX
	{1<<5 | 1<<6 | 1<<7, leafExtFeatures, 1, 16}, // AVX-512 state needs AVX512F
}

// sanitizeXSave drops XSAVE state components whose instruction-set flag is
// absent. Some hosts (a TCG-emulated CPU under nested KVM, for one) report
// AVX state in leaf 0xd without AVX in leaf 1; Linux then finds the
// XSAVE area sizes inconsistent and prints a warning with a stack trace.
// The maximum size in 0xd.0 ECX is recomputed from what remains.
func sanitizeXSave(entries []kvm.CPUIDEntry) []kvm.CPUIDEntry {
	reg := func(leaf, r uint32) (uint32, bool) {
		for _, e := range entries {
			if e.Function == leaf && e.Index == 0 {
				if r == 1 {
					return e.EBX, true
				}
				return e.ECX, true
			}
		}
		return 0, false
	}
	var drop uint64
	for _, n := range xfeatureNeeds {
		if v, ok := reg(n.leaf, n.reg); !ok || v&(1<<n.bit) == 0 {
			drop |= n.mask
		}
	}
	var root *kvm.CPUIDEntry
	for i := range entries {
		if entries[i].Function == leafXSave && entries[i].Index == 0 {
			root = &entries[i]
		}
	}
	if root == nil || uint64(root.EAX)&drop == 0 {
		return entries
	}
	root.EAX &^= uint32(drop)
	kept := entries[:0]
	maxEnd := uint32(0x240) // legacy region and XSAVE header
	for _, e := range entries {
		if e.Function == leafXSave && e.Index >= 2 && e.Index < 32 {
			if drop&(1<<e.Index) != 0 {
				continue
			}
			if uint64(root.EAX)&(1<<e.Index) != 0 {
				maxEnd = max(maxEnd, e.EBX+e.EAX)
			}
		}
		kept = append(kept, e)
	}
	root.ECX = maxEnd
	return kept
}

// bitsFor returns how many low APIC ID bits number n CPUs.
func bitsFor(n int) int {
	bits := 0
	for (1 << bits) < n {
		bits++
	}
	return bits
}
