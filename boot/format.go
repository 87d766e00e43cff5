package boot

import "fmt"

// Format is the kernel image format Load found.
type Format int

const (
	// BzImage is a compressed kernel with a setup header, entered at its
	// 64-bit entry point.
	BzImage Format = iota + 1
	// ELF is a vmlinux without a PVH note, entered at e_entry in long
	// mode with a zero page.
	ELF
	// ELFPVH is a vmlinux with XEN_ELFNOTE_PHYS32_ENTRY, entered in
	// 32-bit protected mode with hvm_start_info.
	ELFPVH
)

func (f Format) String() string {
	switch f {
	case BzImage:
		return "bzImage"
	case ELF:
		return "ELF"
	case ELFPVH:
		return "ELF (PVH)"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}
