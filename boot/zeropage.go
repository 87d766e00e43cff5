package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// Offsets in struct boot_params (arch/x86/include/uapi/asm/bootparam.h,
// Documentation/arch/x86/zero-page.rst) and in its setup_header, which
// starts at 0x1f1 and is laid out as in the bzImage file
// (Documentation/arch/x86/boot.rst "The Real-Mode Kernel Header").
const (
	zpAcpiRSDPAddr     = 0x070
	zpExtRamdiskImage  = 0x0c0
	zpExtRamdiskSize   = 0x0c4
	zpExtCmdLinePtr    = 0x0c8
	zpE820Entries      = 0x1e8
	zpSentinel         = 0x1ef
	zpSetupHeader      = 0x1f1 // start of struct setup_header
	zpSetupHeaderLimit = 0x290 // edd_mbr_sig_buffer follows the header's padding
	zpE820Table        = 0x2d0
	zpSize             = 0x1000

	hdrSetupSects       = 0x1f1
	hdrBootFlag         = 0x1fe
	hdrJump             = 0x200
	hdrMagic            = 0x202
	hdrVersion          = 0x206
	hdrTypeOfLoader     = 0x210
	hdrLoadflags        = 0x211
	hdrCode32Start      = 0x214
	hdrRamdiskImage     = 0x218
	hdrRamdiskSize      = 0x21c
	hdrHeapEndPtr       = 0x224
	hdrCmdLinePtr       = 0x228
	hdrInitrdAddrMax    = 0x22c
	hdrKernelAlignment  = 0x230
	hdrRelocatable      = 0x234
	hdrXloadflags       = 0x236
	hdrCmdlineSize      = 0x238
	hdrPrefAddress      = 0x258
	hdrInitSize         = 0x260
	hdrMinEnd           = 0x264 // the header must reach past init_size
	e820EntrySize       = 20
	bootFlagMagic       = 0xaa55
	headerMagic         = "HdrS"
	loaderTypeUndefined = 0xff // boot.rst: type_of_loader 0xff, no assigned ID
)

// loadflags and xloadflags bits (boot.rst).
const (
	loadflagLoadedHigh = 1 << 0
	loadflagCanUseHeap = 1 << 7

	xlfKernel64 = 1 << 0
)

// heapEndPtr is the conventional end of the real-mode setup heap, 0xfe00
// bytes past the setup code minus 0x200 (boot.rst "heap_end_ptr"). The
// 64-bit entry never runs the real-mode code; the value is for kernels that
// check CAN_USE_HEAP anyway.
const heapEndPtr = 0xfe00

// zeroPage is struct boot_params being built in host memory; it is written
// to the guest in one piece.
type zeroPage [zpSize]byte

func (z *zeroPage) put8(off int, v uint8)   { z[off] = v }
func (z *zeroPage) put16(off int, v uint16) { binary.LittleEndian.PutUint16(z[off:], v) }
func (z *zeroPage) put32(off int, v uint32) { binary.LittleEndian.PutUint32(z[off:], v) }
func (z *zeroPage) put64(off int, v uint64) { binary.LittleEndian.PutUint64(z[off:], v) }

// bootInfo is what both boot protocols pass to the kernel besides the
// kernel itself.
type bootInfo struct {
	cmdline    memory.GuestAddr
	initrd     memory.GuestAddr
	initrdSize uint64
	rsdp       memory.GuestAddr
	e820       []E820Entry
}

// fill sets the fields a boot loader owns (boot.rst "Details of Header
// Fields", zero-page.rst) on top of whatever setup header is already in z.
func (z *zeroPage) fill(info bootInfo) error {
	z.put8(hdrTypeOfLoader, loaderTypeUndefined)
	z.put8(hdrLoadflags, z[hdrLoadflags]|loadflagCanUseHeap)
	z.put16(hdrHeapEndPtr, heapEndPtr)
	z.put32(hdrCmdLinePtr, uint32(info.cmdline))
	z.put32(zpExtCmdLinePtr, uint32(info.cmdline>>32))
	z.put32(hdrRamdiskImage, uint32(info.initrd))
	z.put32(zpExtRamdiskImage, uint32(info.initrd>>32))
	z.put32(hdrRamdiskSize, uint32(info.initrdSize))
	z.put32(zpExtRamdiskSize, uint32(info.initrdSize>>32))
	z.put64(zpAcpiRSDPAddr, uint64(info.rsdp))
	if len(info.e820) > e820MaxZeroPage {
		return fmt.Errorf("e820 map has %d entries, the zero page holds %d", len(info.e820), e820MaxZeroPage)
	}
	z.put8(zpE820Entries, uint8(len(info.e820)))
	for i, e := range info.e820 {
		off := zpE820Table + i*e820EntrySize
		z.put64(off, uint64(e.Addr))
		z.put64(off+8, e.Size)
		z.put32(off+16, uint32(e.Type))
	}
	return nil
}

// scratchHeader writes a setup header for a kernel that brought none (an
// ELF vmlinux entered at its 64-bit entry point): the magic and version the
// kernel checks before trusting the loader's fields.
func (z *zeroPage) scratchHeader(cmdlineSize uint32) {
	z.put16(hdrBootFlag, bootFlagMagic)
	copy(z[hdrMagic:], headerMagic)
	z.put16(hdrVersion, scratchProtocol)
	z.put8(hdrLoadflags, loadflagLoadedHigh)
	z.put32(hdrInitrdAddrMax, scratchInitrdAddrMax)
	z.put32(hdrKernelAlignment, hugePageSize)
	z.put16(hdrXloadflags, xlfKernel64)
	z.put32(hdrCmdlineSize, cmdlineSize)
}

// Protocol values given to a kernel without a setup header of its own.
const (
	scratchProtocol      = 0x020f     // 2.15: has acpi_rsdp_addr
	scratchInitrdAddrMax = 0x7fffffff // boot.rst default for 64-bit kernels
)

func (z *zeroPage) write(mem *memory.Memory) error {
	if err := mem.WriteAt(z[:], ZeroPageAddr); err != nil {
		return fmt.Errorf("write zero page: %w", err)
	}
	return nil
}
