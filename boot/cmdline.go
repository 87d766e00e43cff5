package boot

import (
	"fmt"
	"strings"

	"github.com/vmm-dev/vmm/memory"
)

// checkCmdline rejects a command line the kernel would not see whole:
// longer than it accepts (boot.rst "cmdline_size", terminator excluded)
// or with an embedded NUL.
func checkCmdline(cmdline string, maxLen uint64) error {
	if i := strings.IndexByte(cmdline, 0); i >= 0 {
		return fmt.Errorf("%w: NUL byte at offset %d", ErrBadCmdline, i)
	}
	maxLen = min(maxLen, CmdlineMaxSize-1)
	if uint64(len(cmdline)) > maxLen {
		return fmt.Errorf("%w: %d bytes, the kernel accepts %d", ErrCmdlineTooLong, len(cmdline), maxLen)
	}
	return nil
}

// writeCmdline writes cmdline NUL-terminated at CmdlineAddr.
func writeCmdline(mem *memory.Memory, cmdline string) error {
	dst, err := mem.Slice(CmdlineAddr, uint64(len(cmdline))+1)
	if err != nil {
		return fmt.Errorf("write command line: %w", err)
	}
	dst[copy(dst, cmdline)] = 0
	return nil
}
