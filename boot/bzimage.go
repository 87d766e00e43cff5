package boot

import (
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

const (
	// minProtocol is 2.12, the first with xloadflags (XLF_KERNEL_64)
	// and so the first that says whether the 64-bit entry exists.
	minProtocol = 0x020c
	// defaultSetupSects replaces setup_sects 0 (boot.rst "setup_sects").
	defaultSetupSects = 4
	sectorSize        = 512
	// entry64Offset is where the 64-bit entry lies past the start of
	// the protected-mode code (boot.rst "64-bit Boot Protocol").
	entry64Offset = 0x200
	// defaultInitrdAddrMax applies when initrd_addr_max is 0 (boot.rst).
	defaultInitrdAddrMax = 0x37ffffff
)

// parseBzImage reads the setup header (boot.rst "The Real-Mode Kernel
// Header") and decides where the protected-mode code goes.
func parseBzImage(kf kernelFile, head []byte, lowLimit memory.GuestAddr) (*kernel, error) {
	if len(head) < hdrMinEnd {
		return nil, fmt.Errorf("%w: file is %d bytes, the setup header needs %d", ErrTruncated, len(head), hdrMinEnd)
	}
	le := binary.LittleEndian
	version := le.Uint16(head[hdrVersion:])
	if version < minProtocol {
		return nil, fmt.Errorf("setup header protocol %d.%d < 2.12: %w", version>>8, version&0xff, ErrProtocolTooOld)
	}
	// boot.rst: the header ends at 0x202 plus the jump's offset byte.
	hdrEnd := hdrMagic + int(head[hdrJump+1])
	if hdrEnd < hdrMinEnd {
		return nil, fmt.Errorf("%w: setup header ends at %#x, before init_size", ErrTruncated, hdrEnd)
	}
	hdrEnd = min(hdrEnd, zpSetupHeaderLimit)
	if hdrEnd > len(head) {
		return nil, fmt.Errorf("%w: setup header ends at %#x, file is %d bytes", ErrTruncated, hdrEnd, len(head))
	}
	if xlf := le.Uint16(head[hdrXloadflags:]); xlf&xlfKernel64 == 0 {
		return nil, fmt.Errorf("xloadflags %#x lack XLF_KERNEL_64: %w", xlf, ErrNot64Bit)
	}

	sects := uint64(head[hdrSetupSects])
	if sects == 0 {
		sects = defaultSetupSects
	}
	setupSize := (sects + 1) * sectorSize
	if kf.size <= setupSize {
		return nil, fmt.Errorf("%w: %d bytes of setup code, file is %d bytes", ErrTruncated, setupSize, kf.size)
	}
	codeSize := kf.size - setupSize
	if codeSize <= entry64Offset {
		return nil, fmt.Errorf("%w: %d bytes of protected-mode code, the 64-bit entry is at +%#x",
			ErrTruncated, codeSize, entry64Offset)
	}

	pref := le.Uint64(head[hdrPrefAddress:])
	align := uint64(le.Uint32(head[hdrKernelAlignment:]))
	relocatable := head[hdrRelocatable] != 0
	initSize := uint64(le.Uint32(head[hdrInitSize:]))
	limit := uint64(lowLimit)

	// A relocatable kernel goes where it prefers (boot.rst
	// "pref_address"), aligned as it asks; any other at 1 MiB, from
	// where its decompressor moves itself to pref_address.
	load := uint64(HighMemAddr)
	if relocatable && pref > load {
		load = pref
	}
	if load >= limit {
		return nil, fmt.Errorf("%w: load address %#x, low RAM ends at %v", ErrKernelTooLarge, load, lowLimit)
	}
	if relocatable && align != 0 && align&(align-1) == 0 {
		load = alignUp(load, align)
	}
	// The kernel decompresses into init_size bytes from the larger of
	// its load address and pref_address (LOAD_PHYSICAL_ADDR).
	runtime := max(load, pref)
	if runtime >= limit || codeSize > limit-load || initSize > limit-runtime {
		return nil, fmt.Errorf("%w: %d bytes loaded at %#x, init_size %#x from %#x, low RAM ends at %v",
			ErrKernelTooLarge, codeSize, load, initSize, runtime, lowLimit)
	}
	end := max(load+codeSize, runtime+initSize)

	initrdMax := uint64(le.Uint32(head[hdrInitrdAddrMax:]))
	if initrdMax == 0 {
		initrdMax = defaultInitrdAddrMax
	}
	return &kernel{
		format:      BzImage,
		mode:        ModeLong64,
		entry:       memory.GuestAddr(load + entry64Offset),
		start:       memory.GuestAddr(load),
		end:         memory.GuestAddr(end),
		protocol:    version,
		segments:    []segment{{fileOff: setupSize, addr: memory.GuestAddr(load), fileSize: codeSize, memSize: codeSize}},
		setupHeader: head[zpSetupHeader:hdrEnd],
		cmdlineMax:  uint64(le.Uint32(head[hdrCmdlineSize:])),
		initrdLimit: memory.GuestAddr(initrdMax + 1),
	}, nil
}
