package kvm

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// VM is a virtual machine: its memory slots, in-kernel devices and vCPUs.
type VM struct {
	h       *handle
	runSize int // KVM_GET_VCPU_MMAP_SIZE, asked of the System at CreateVM
}

func newVM(fd, runSize int) *VM {
	return &VM{
		h:       newHandle("VM", fd, func() error { return unix.Close(fd) }),
		runSize: runSize,
	}
}

// Close closes the VM's descriptor. The kernel keeps the VM alive until
// its vCPUs are closed too.
func (vm *VM) Close() error { return vm.h.close() }

// CheckExtension returns KVM_CHECK_EXTENSION asked of this VM, which can
// be more precise than the System's answer (needs CapCheckExtensionVM).
func (vm *VM) CheckExtension(c Cap) (int, error) {
	v, err := ioctlArg(vm.h, "KVM_CHECK_EXTENSION "+c.String(), kvmCheckExtension, uintptr(c))
	return int(v), err
}

// UserspaceMemoryRegion is struct kvm_userspace_memory_region: guest
// physical memory [GuestPhysAddr, GuestPhysAddr+MemorySize) backed by
// host memory at UserspaceAddr (see HostAddr) (32 bytes).
type UserspaceMemoryRegion struct {
	Slot          uint32
	Flags         uint32 // MemLogDirtyPages, MemReadonly
	GuestPhysAddr uint64
	MemorySize    uint64 // 0 deletes the slot
	UserspaceAddr uint64
}

// UserspaceMemoryRegion.Flags bits (<linux/kvm.h> KVM_MEM_*).
const (
	MemLogDirtyPages = 1 << 0
	// MemReadonly makes guest writes exit as MMIO (needs CapReadonlyMem).
	MemReadonly = 1 << 1
)

// SetUserMemoryRegion issues KVM_SET_USER_MEMORY_REGION: it creates,
// moves, resizes or (MemorySize 0) deletes a memory slot.
func (vm *VM) SetUserMemoryRegion(r UserspaceMemoryRegion) error {
	_, err := ioctlStruct(vm.h, fmt.Sprintf("KVM_SET_USER_MEMORY_REGION slot %d", r.Slot), kvmSetUserMemoryRegion, &r)
	return err
}

// SetTSSAddr issues KVM_SET_TSS_ADDR: three pages of guest physical
// address space, unused by the guest and below 4 GiB, that Intel hosts
// need for real-mode emulation.
func (vm *VM) SetTSSAddr(addr uint64) error {
	if addr >= 1<<32 {
		return fmt.Errorf("VM: KVM_SET_TSS_ADDR %#x: %w: must be below 4 GiB", addr, ErrInvalidArg)
	}
	_, err := ioctlArg(vm.h, "KVM_SET_TSS_ADDR", kvmSetTSSAddr, uintptr(addr))
	return err
}

// SetIdentityMapAddr issues KVM_SET_IDENTITY_MAP_ADDR: one page of guest
// physical address space, unused by the guest, for the identity page table
// Intel hosts use in real mode. Call it before creating vCPUs.
func (vm *VM) SetIdentityMapAddr(addr uint64) error {
	_, err := ioctlStruct(vm.h, "KVM_SET_IDENTITY_MAP_ADDR", kvmSetIdentityMapAddr, &addr)
	return err
}

// CreateIRQChip issues KVM_CREATE_IRQCHIP: an in-kernel PIC pair, IOAPIC
// and a local APIC per vCPU, with GSIs 0-15 routed to the PICs and the
// IOAPIC and 16-23 to the IOAPIC. Call it before creating vCPUs.
func (vm *VM) CreateIRQChip() error {
	_, err := ioctlArg(vm.h, "KVM_CREATE_IRQCHIP", kvmCreateIRQChip, 0)
	return err
}

// PITFlag is a kvm_pit_config flag for CreatePIT2.
type PITFlag uint32

// PITSpeakerDummy makes the in-kernel PIT emulate port 0x61 (the PC
// speaker's gate) itself instead of exiting to userspace.
const PITSpeakerDummy PITFlag = 1

// pitConfig is struct kvm_pit_config (64 bytes).
type pitConfig struct {
	Flags uint32
	_     [15]uint32
}

// CreatePIT2 issues KVM_CREATE_PIT2: an in-kernel i8254 timer on ports
// 0x40-0x43, wired to GSI 0. Needs CreateIRQChip first. With no flags,
// port 0x61 exits to userspace.
func (vm *VM) CreatePIT2(flags ...PITFlag) error {
	var c pitConfig
	for _, f := range flags {
		c.Flags |= uint32(f)
	}
	_, err := ioctlStruct(vm.h, "KVM_CREATE_PIT2", kvmCreatePIT2, &c)
	return err
}

// irqLevel is struct kvm_irq_level (8 bytes).
type irqLevel struct {
	IRQ   uint32
	Level uint32
}

// IRQLine issues KVM_IRQ_LINE: it raises (high) or lowers the in-kernel
// irqchip's input irq (a GSI). An edge needs a raise and a lower.
func (vm *VM) IRQLine(irq uint32, high bool) error {
	l := irqLevel{IRQ: irq}
	if high {
		l.Level = 1
	}
	_, err := ioctlStruct(vm.h, "KVM_IRQ_LINE", kvmIRQLine, &l)
	return err
}

// irqFD is struct kvm_irqfd (32 bytes).
type irqFD struct {
	FD         uint32
	GSI        uint32
	Flags      uint32
	ResampleFD uint32
	_          [16]uint8
}

const irqFDDeassign = 1 << 0 // KVM_IRQFD_FLAG_DEASSIGN

// RegisterIRQFD issues KVM_IRQFD: a write to eventfd injects an edge on
// gsi of the in-kernel irqchip, without a trip through this process.
func (vm *VM) RegisterIRQFD(eventfd int, gsi uint32) error {
	return vm.irqFD(eventfd, gsi, 0)
}

// UnregisterIRQFD undoes RegisterIRQFD.
func (vm *VM) UnregisterIRQFD(eventfd int, gsi uint32) error {
	return vm.irqFD(eventfd, gsi, irqFDDeassign)
}

func (vm *VM) irqFD(eventfd int, gsi, flags uint32) error {
	if eventfd < 0 {
		return fmt.Errorf("VM: KVM_IRQFD gsi %d: %w: eventfd %d", gsi, ErrInvalidArg, eventfd)
	}
	a := irqFD{FD: uint32(eventfd), GSI: gsi, Flags: flags}
	_, err := ioctlStruct(vm.h, fmt.Sprintf("KVM_IRQFD gsi %d", gsi), kvmIRQFD, &a)
	return err
}

// IOEventFD describes a guest write that KVM turns into an eventfd signal
// instead of an exit.
type IOEventFD struct {
	FD   int    // the eventfd to signal
	Addr uint64 // port (PIO) or guest physical address
	Len  uint32 // access width: 1, 2, 4 or 8; 0 matches any (CapIOEventFDNoLength)
	// DataMatch, when set, limits the match to writes of this value.
	DataMatch *uint64
	PIO       bool // Addr is an I/O port rather than an MMIO address
}

// ioEventFD is struct kvm_ioeventfd (64 bytes).
type ioEventFD struct {
	DataMatch uint64
	Addr      uint64
	Len       uint32
	FD        int32
	Flags     uint32
	_         [36]uint8
}

// struct kvm_ioeventfd flags (<linux/kvm.h> KVM_IOEVENTFD_FLAG_*).
const (
	ioEventFDDataMatch = 1 << 0
	ioEventFDPIO       = 1 << 1
	ioEventFDDeassign  = 1 << 2
)

// RegisterIOEventFD issues KVM_IOEVENTFD to assign e.
func (vm *VM) RegisterIOEventFD(e IOEventFD) error { return vm.ioEventFD(e, 0) }

// UnregisterIOEventFD issues KVM_IOEVENTFD to deassign e, which must match
// the registration.
func (vm *VM) UnregisterIOEventFD(e IOEventFD) error { return vm.ioEventFD(e, ioEventFDDeassign) }

func (vm *VM) ioEventFD(e IOEventFD, flags uint32) error {
	space := "mmio"
	if e.PIO {
		space = "port"
	}
	name := fmt.Sprintf("KVM_IOEVENTFD %s %#x len %d", space, e.Addr, e.Len)
	if e.FD < 0 || e.FD > 1<<31-1 {
		return fmt.Errorf("VM: %s: %w: eventfd %d", name, ErrInvalidArg, e.FD)
	}
	a := ioEventFD{Addr: e.Addr, Len: e.Len, FD: int32(e.FD), Flags: flags}
	if e.DataMatch != nil {
		a.DataMatch = *e.DataMatch
		a.Flags |= ioEventFDDataMatch
	}
	if e.PIO {
		a.Flags |= ioEventFDPIO
	}
	_, err := ioctlStruct(vm.h, name, kvmIOEventFD, &a)
	return err
}

// CreateVCPU issues KVM_CREATE_VCPU and maps the vCPU's kvm_run area. id
// becomes the vCPU's initial APIC ID.
func (vm *VM) CreateVCPU(id int) (*VCPU, error) {
	name := fmt.Sprintf("KVM_CREATE_VCPU %d", id)
	if id < 0 || id > 1<<31-1 {
		return nil, fmt.Errorf("VM: %s: %w: negative or too large id", name, ErrInvalidArg)
	}
	fd, err := ioctlArg(vm.h, name, kvmCreateVCPU, uintptr(id))
	if err != nil {
		return nil, err
	}
	run, err := unix.Mmap(int(fd), 0, vm.runSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, errors.Join(
			fmt.Errorf("vCPU %d: mmap kvm_run (%d bytes): %w", id, vm.runSize, err),
			unix.Close(int(fd)))
	}
	return newVCPU(id, int(fd), run), nil
}
