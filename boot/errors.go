package boot

import "errors"

// Sentinel errors; Load wraps them with the file and what was wrong, and
// callers branch on them with errors.Is.
var (
	// ErrNotKernel reports a file that is neither a bzImage nor an ELF.
	ErrNotKernel = errors.New("not a Linux kernel (neither bzImage nor ELF)")
	// ErrTruncated reports a file shorter than its headers say.
	ErrTruncated = errors.New("kernel image truncated")
	// ErrNot64Bit reports a bzImage without a 64-bit entry point.
	ErrNot64Bit = errors.New("kernel has no 64-bit entry point")
	// ErrProtocolTooOld reports a bzImage older than boot protocol 2.12.
	ErrProtocolTooOld = errors.New("boot protocol too old")
	// ErrKernelTooLarge reports a kernel that does not fit in low RAM.
	ErrKernelTooLarge = errors.New("kernel does not fit in guest RAM")
	// ErrInitrdTooLarge reports an initrd that does not fit between the
	// kernel and the highest address the kernel accepts.
	ErrInitrdTooLarge = errors.New("initrd does not fit in guest RAM")
	// ErrCmdlineTooLong reports a command line longer than the kernel
	// accepts.
	ErrCmdlineTooLong = errors.New("kernel command line too long")
	// ErrBadCmdline reports a command line the kernel could not read
	// back as given (an embedded NUL would cut it short).
	ErrBadCmdline = errors.New("invalid kernel command line")
	// ErrBadELF reports an ELF file that is not a loadable x86-64 kernel.
	ErrBadELF = errors.New("invalid ELF kernel")
	// ErrTooManyCPUs reports an MP table request that does not fit in
	// the EBDA.
	ErrTooManyCPUs = errors.New("too many CPUs for the MP table")
	// ErrNoLowRAM reports guest memory without RAM from address 0 up to
	// 1 MiB, where the boot structures live.
	ErrNoLowRAM = errors.New("guest RAM does not start at 0 or is below 1 MiB")
)
