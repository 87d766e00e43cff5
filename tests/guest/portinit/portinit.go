// Package portinit generates a tiny static x86-64 Linux executable meant to
// be a guest's /init: it writes a marker byte to an I/O port (the
// boot-progress port 0x80), prints a line on its stdout (the console) and
// execs the real init. Being the first user-space code, with no libc and no
// runtime to start, it timestamps the end of the kernel's boot as closely
// as user space can; both the port write and the line are what benchmarks
// time.
//
// Debian's kernel has no /dev/port, so the write needs ioperm(2) and an OUT
// instruction; a kernel without CONFIG_X86_IOPL_IOPERM refuses ioperm, and
// then the program prints FailMessage instead of faulting.
package portinit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Program describes the generated executable.
type Program struct {
	// Port and Value: the OUT the program performs (port 0x80, 0x42 in
	// the benchmarks).
	Port  uint16
	Value byte
	// Message is written to stdout right after the port write; FailMessage
	// instead when ioperm fails. Both should end in "\n".
	Message     string
	FailMessage string
	// Argv is what the program execs next (Argv[0] is the path), with the
	// program's own environment.
	Argv []string
}

// ErrInvalid means a Program cannot be generated.
var ErrInvalid = errors.New("portinit: invalid program")

// Linux x86-64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl).
const (
	sysWrite  = 1
	sysExecve = 59
	sysExit   = 60
	sysIoperm = 173
)

// loadAddr is where the single PT_LOAD segment (the whole file) is mapped:
// the conventional base of non-PIE x86-64 executables.
const loadAddr = 0x400000

const (
	elfHeaderSize = 64
	phdrSize      = 56
	codeOffset    = elfHeaderSize + phdrSize
)

// ELF returns the executable.
func ELF(p Program) ([]byte, error) {
	if len(p.Argv) == 0 || p.Argv[0] == "" {
		return nil, fmt.Errorf("%w: empty argv", ErrInvalid)
	}
	for _, s := range p.Argv {
		if strings.IndexByte(s, 0) >= 0 {
			return nil, fmt.Errorf("%w: NUL in argument %q", ErrInvalid, s)
		}
	}
	if p.Port > 0xff {
		// OUT imm8 reaches ports 0-255 only; nothing here needs more.
		return nil, fmt.Errorf("%w: port %#x above 0xff", ErrInvalid, p.Port)
	}
	code := assemble(p)
	data := newDataLayout(p, loadAddr+codeOffset+uint64(code.size()))
	code.resolve(data)

	var file bytes.Buffer
	total := uint64(codeOffset + code.size() + len(data.bytes))
	writeHeaders(&file, total)
	file.Write(code.bytes)
	file.Write(data.bytes)
	return file.Bytes(), nil
}

// dataLayout is the read-only data after the code: the messages, the
// argument strings and the NULL-terminated argv array of absolute pointers.
type dataLayout struct {
	bytes       []byte
	message     uint64 // absolute addresses
	failMessage uint64
	argv0       uint64
	argvArray   uint64
	messageLen  uint32
	failLen     uint32
	argPointers []uint64
}

func newDataLayout(p Program, base uint64) *dataLayout {
	d := &dataLayout{}
	add := func(b []byte) uint64 {
		addr := base + uint64(len(d.bytes))
		d.bytes = append(d.bytes, b...)
		return addr
	}
	d.message = add([]byte(p.Message))
	d.messageLen = uint32(len(p.Message))
	d.failMessage = add([]byte(p.FailMessage))
	d.failLen = uint32(len(p.FailMessage))
	for _, a := range p.Argv {
		d.argPointers = append(d.argPointers, add(append([]byte(a), 0)))
	}
	d.argv0 = d.argPointers[0]
	for len(d.bytes)%8 != 0 {
		d.bytes = append(d.bytes, 0)
	}
	d.argvArray = base + uint64(len(d.bytes))
	for _, ptr := range append(d.argPointers, 0) {
		d.bytes = binary.LittleEndian.AppendUint64(d.bytes, ptr)
	}
	return d
}

// program is machine code with absolute 64-bit immediates to patch once
// the data's addresses are known.
type program struct {
	bytes   []byte
	patches []patch
}

type patch struct {
	at    int
	value func(*dataLayout) uint64
	width int // 4 or 8 bytes
}

func (c *program) size() int { return len(c.bytes) }

func (c *program) emit(b ...byte) { c.bytes = append(c.bytes, b...) }

// movImm32 emits `mov r32, imm32` (B8+r id), which zero-extends into r64.
func (c *program) movImm32(reg byte, v uint32) {
	c.emit(0xb8 + reg)
	c.bytes = binary.LittleEndian.AppendUint32(c.bytes, v)
}

// movImm32Late is movImm32 with a value known only after layout.
func (c *program) movImm32Late(reg byte, v func(*dataLayout) uint64) {
	c.emit(0xb8 + reg)
	c.patches = append(c.patches, patch{at: len(c.bytes), value: v, width: 4})
	c.emit(0, 0, 0, 0)
}

// movImm64Late emits `movabs r64, imm64` (REX.W B8+r io).
func (c *program) movImm64Late(reg byte, v func(*dataLayout) uint64) {
	c.emit(0x48, 0xb8+reg)
	c.patches = append(c.patches, patch{at: len(c.bytes), value: v, width: 8})
	c.emit(0, 0, 0, 0, 0, 0, 0, 0)
}

func (c *program) resolve(d *dataLayout) {
	for _, p := range c.patches {
		v := p.value(d)
		if p.width == 4 {
			binary.LittleEndian.PutUint32(c.bytes[p.at:], uint32(v))
		} else {
			binary.LittleEndian.PutUint64(c.bytes[p.at:], v)
		}
	}
}

// Register numbers in the ModRM/opcode encoding.
const (
	rax = 0
	rcx = 1
	rdx = 2
	rsi = 6
	rdi = 7
)

func assemble(p Program) *program {
	c := &program{}
	c.emit(0x49, 0x89, 0xe4) // mov r12, rsp: keep the initial stack (argc, argv, envp)

	// ioperm(port, 1, 1)
	c.movImm32(rax, sysIoperm)
	c.movImm32(rdi, uint32(p.Port))
	c.movImm32(rsi, 1)
	c.movImm32(rdx, 1)
	c.emit(0x0f, 0x05) // syscall
	c.emit(0x85, 0xc0) // test eax, eax
	c.emit(0x75, 0x00) // jnz fail (rel8 patched below)
	jnzAt := len(c.bytes) - 1

	// out port, al
	c.emit(0xb0, p.Value)      // mov al, value
	c.emit(0xe6, byte(p.Port)) // out imm8, al
	c.movImm32Late(rsi, func(d *dataLayout) uint64 { return d.message })
	c.movImm32Late(rdx, func(d *dataLayout) uint64 { return uint64(d.messageLen) })
	c.emit(0xeb, 0x00) // jmp print (rel8 patched below)
	jmpAt := len(c.bytes) - 1

	// fail: the failure message instead.
	c.bytes[jnzAt] = byte(len(c.bytes) - (jnzAt + 1))
	c.movImm32Late(rsi, func(d *dataLayout) uint64 { return d.failMessage })
	c.movImm32Late(rdx, func(d *dataLayout) uint64 { return uint64(d.failLen) })

	// print: write(1, rsi, rdx)
	c.bytes[jmpAt] = byte(len(c.bytes) - (jmpAt + 1))
	c.movImm32(rax, sysWrite)
	c.movImm32(rdi, 1)
	c.emit(0x0f, 0x05) // syscall; a failed write (no console) does not matter

	// execve(argv[0], argv, envp); envp = initial rsp + 8*argc + 16.
	c.movImm64Late(rdi, func(d *dataLayout) uint64 { return d.argv0 })
	c.movImm64Late(rsi, func(d *dataLayout) uint64 { return d.argvArray })
	c.emit(0x49, 0x8b, 0x0c, 0x24)       // mov rcx, [r12]
	c.emit(0x49, 0x8d, 0x54, 0xcc, 0x10) // lea rdx, [r12 + rcx*8 + 16]
	c.movImm32(rax, sysExecve)
	c.emit(0x0f, 0x05) // syscall: returns only on failure

	// exit(127), as a shell does when it cannot run a command.
	c.movImm32(rax, sysExit)
	c.movImm32(rdi, 127)
	c.emit(0x0f, 0x05)
	return c
}

// writeHeaders writes the ELF header and one PT_LOAD program header that
// maps the whole file read+execute at loadAddr (System V gABI, "ELF
// Header" and "Program Header"; x86-64 psABI for the machine values).
func writeHeaders(w *bytes.Buffer, fileSize uint64) {
	le := binary.LittleEndian
	var h [elfHeaderSize]byte
	copy(h[0:], []byte{0x7f, 'E', 'L', 'F', 2 /* 64-bit */, 1 /* little endian */, 1 /* version */})
	le.PutUint16(h[16:], 2)  // e_type: ET_EXEC
	le.PutUint16(h[18:], 62) // e_machine: EM_X86_64
	le.PutUint32(h[20:], 1)  // e_version
	le.PutUint64(h[24:], loadAddr+codeOffset)
	le.PutUint64(h[32:], elfHeaderSize) // e_phoff
	le.PutUint16(h[52:], elfHeaderSize)
	le.PutUint16(h[54:], phdrSize)
	le.PutUint16(h[56:], 1)  // e_phnum
	le.PutUint16(h[58:], 64) // e_shentsize (no section headers)
	w.Write(h[:])

	var ph [phdrSize]byte
	le.PutUint32(ph[0:], 1)   // p_type: PT_LOAD
	le.PutUint32(ph[4:], 4|1) // p_flags: PF_R | PF_X
	le.PutUint64(ph[16:], loadAddr)
	le.PutUint64(ph[24:], loadAddr)
	le.PutUint64(ph[32:], fileSize)
	le.PutUint64(ph[40:], fileSize)
	le.PutUint64(ph[48:], 0x1000) // p_align
	w.Write(ph[:])
}
