package boot

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// ELF64 layout (System V gABI, "ELF Header" and "Program Header"); the
// constants come from debug/elf, the parsing is ours so that a hostile
// file costs no more than the few headers we read.
const (
	elfHeaderSize  = 64
	elfPhdrSize    = 56
	elfMaxPhdrs    = 64      // vmlinux has about five
	elfMaxNoteSize = 1 << 20 // vmlinux's notes are a few hundred bytes

	// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY (xen/include/
	// public/elfnote.h): the 32-bit physical PVH entry point.
	xenElfnotePhys32Entry = 18
	xenNoteName           = "Xen"

	// defaultCmdlineMax is x86 COMMAND_LINE_SIZE (2048) minus the NUL,
	// for kernels that do not say.
	defaultCmdlineMax = 2047
	// pvhInitrdLimit: PVH places no limit of its own below 4 GiB.
	pvhInitrdLimit = memory.MMIOHoleStart
)

// elfPhdr is the part of an ELF64 program header we use.
type elfPhdr struct {
	typ    elf.ProgType
	off    uint64
	paddr  uint64
	filesz uint64
	memsz  uint64
}

// parseELF reads an x86-64 ELF kernel (vmlinux): its PT_LOAD segments go
// to their physical addresses; with a XEN_ELFNOTE_PHYS32_ENTRY note it is
// entered through PVH, otherwise at e_entry, which vmlinux links as a
// physical address, with the 64-bit boot protocol.
func parseELF(kf kernelFile, head []byte, lowLimit memory.GuestAddr) (*kernel, error) {
	if len(head) < elfHeaderSize {
		return nil, fmt.Errorf("%w: file is %d bytes, the ELF header needs %d", ErrTruncated, len(head), elfHeaderSize)
	}
	le := binary.LittleEndian
	if class := elf.Class(head[elf.EI_CLASS]); class != elf.ELFCLASS64 {
		return nil, fmt.Errorf("%w: class %v, want ELFCLASS64", ErrBadELF, class)
	}
	if data := elf.Data(head[elf.EI_DATA]); data != elf.ELFDATA2LSB {
		return nil, fmt.Errorf("%w: data encoding %v, want little-endian", ErrBadELF, data)
	}
	if typ := elf.Type(le.Uint16(head[16:])); typ != elf.ET_EXEC {
		return nil, fmt.Errorf("%w: type %v, want ET_EXEC", ErrBadELF, typ)
	}
	if machine := elf.Machine(le.Uint16(head[18:])); machine != elf.EM_X86_64 {
		return nil, fmt.Errorf("%w: machine %v, want EM_X86_64", ErrBadELF, machine)
	}
	entry := le.Uint64(head[24:])
	phoff := le.Uint64(head[32:])
	phentsize := le.Uint16(head[54:])
	phnum := le.Uint16(head[56:])
	if phentsize != elfPhdrSize {
		return nil, fmt.Errorf("%w: program header size %d, want %d", ErrBadELF, phentsize, elfPhdrSize)
	}
	if phnum == 0 || phnum > elfMaxPhdrs {
		return nil, fmt.Errorf("%w: %d program headers (1..%d)", ErrBadELF, phnum, elfMaxPhdrs)
	}
	phdrs := make([]byte, int(phnum)*elfPhdrSize)
	if err := kf.readAt(phdrs, phoff); err != nil {
		return nil, fmt.Errorf("program headers: %w", err)
	}

	k := &kernel{
		format:      ELF,
		mode:        ModeLong64,
		start:       ^memory.GuestAddr(0),
		cmdlineMax:  defaultCmdlineMax,
		initrdLimit: memory.GuestAddr(scratchInitrdAddrMax + 1),
	}
	var pvhEntry uint64
	var hasPVH bool
	for i := range int(phnum) {
		b := phdrs[i*elfPhdrSize:]
		ph := elfPhdr{
			typ:    elf.ProgType(le.Uint32(b)),
			off:    le.Uint64(b[8:]),
			paddr:  le.Uint64(b[24:]),
			filesz: le.Uint64(b[32:]),
			memsz:  le.Uint64(b[40:]),
		}
		switch ph.typ {
		case elf.PT_LOAD:
			if ph.memsz == 0 {
				continue // occupies nothing, wherever it claims to be
			}
			seg, err := loadableSegment(ph, kf.size, lowLimit)
			if err != nil {
				return nil, fmt.Errorf("program header %d: %w", i, err)
			}
			k.segments = append(k.segments, seg)
			k.start = min(k.start, seg.addr)
			k.end = max(k.end, seg.addr+memory.GuestAddr(seg.memSize))
		case elf.PT_NOTE:
			e, ok, err := findPVHEntry(kf, ph)
			if err != nil {
				return nil, fmt.Errorf("program header %d: %w", i, err)
			}
			if ok {
				pvhEntry, hasPVH = e, true
			}
		}
	}
	if len(k.segments) == 0 {
		return nil, fmt.Errorf("%w: no PT_LOAD segment", ErrBadELF)
	}
	k.entry = memory.GuestAddr(entry)
	if hasPVH {
		k.format, k.mode, k.entry = ELFPVH, ModeProtected32, memory.GuestAddr(pvhEntry)
		k.initrdLimit = pvhInitrdLimit
	}
	if k.entry < k.start || k.entry >= k.end {
		return nil, fmt.Errorf("%w: entry %v outside the loaded %v..%v", ErrBadELF, k.entry, k.start, k.end)
	}
	return k, nil
}

// loadableSegment checks a PT_LOAD header against the file and low RAM.
// Segments go at or above 1 MiB so they cannot overwrite the boot
// structures.
func loadableSegment(ph elfPhdr, fileSize uint64, lowLimit memory.GuestAddr) (segment, error) {
	if ph.filesz > ph.memsz {
		return segment{}, fmt.Errorf("%w: PT_LOAD file size %#x > memory size %#x", ErrBadELF, ph.filesz, ph.memsz)
	}
	if ph.off > fileSize || ph.filesz > fileSize-ph.off {
		return segment{}, fmt.Errorf("%w: PT_LOAD of %#x bytes at offset %#x, file is %d bytes",
			ErrTruncated, ph.filesz, ph.off, fileSize)
	}
	if ph.paddr < uint64(HighMemAddr) {
		return segment{}, fmt.Errorf("%w: PT_LOAD at physical %#x, below %v", ErrBadELF, ph.paddr, HighMemAddr)
	}
	if ph.paddr >= uint64(lowLimit) || ph.memsz > uint64(lowLimit)-ph.paddr {
		return segment{}, fmt.Errorf("%w: PT_LOAD of %#x bytes at physical %#x, low RAM ends at %v",
			ErrKernelTooLarge, ph.memsz, ph.paddr, lowLimit)
	}
	return segment{fileOff: ph.off, addr: memory.GuestAddr(ph.paddr), fileSize: ph.filesz, memSize: ph.memsz}, nil
}

// findPVHEntry looks for XEN_ELFNOTE_PHYS32_ENTRY in a PT_NOTE segment
// (gABI "Note Section": namesz, descsz, type, then name and desc, each
// padded to 4 bytes).
func findPVHEntry(kf kernelFile, ph elfPhdr) (uint64, bool, error) {
	if ph.filesz > elfMaxNoteSize {
		return 0, false, fmt.Errorf("%w: PT_NOTE of %d bytes (max %d)", ErrBadELF, ph.filesz, elfMaxNoteSize)
	}
	notes := make([]byte, ph.filesz)
	if err := kf.readAt(notes, ph.off); err != nil {
		return 0, false, fmt.Errorf("PT_NOTE: %w", err)
	}
	le := binary.LittleEndian
	for len(notes) >= 12 {
		namesz, descsz, typ := uint64(le.Uint32(notes)), uint64(le.Uint32(notes[4:])), le.Uint32(notes[8:])
		rest := notes[12:]
		nameEnd, descEnd := alignUp(namesz, 4), alignUp(namesz, 4)+alignUp(descsz, 4)
		if descEnd > uint64(len(rest)) {
			return 0, false, fmt.Errorf("%w: note of %d+%d bytes overruns PT_NOTE", ErrBadELF, namesz, descsz)
		}
		name := bytes.TrimRight(rest[:namesz], "\x00")
		if string(name) == xenNoteName && typ == xenElfnotePhys32Entry {
			desc := rest[nameEnd : nameEnd+descsz]
			var entry uint64
			switch len(desc) {
			case 4:
				entry = uint64(le.Uint32(desc))
			case 8:
				entry = le.Uint64(desc)
			default:
				return 0, false, fmt.Errorf("%w: XEN_ELFNOTE_PHYS32_ENTRY of %d bytes", ErrBadELF, len(desc))
			}
			if entry > 0xffffffff {
				return 0, false, fmt.Errorf("%w: PVH entry %#x above 4 GiB", ErrBadELF, entry)
			}
			return entry, true, nil
		}
		notes = rest[descEnd:]
	}
	return 0, false, nil
}
