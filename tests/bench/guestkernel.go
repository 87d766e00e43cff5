package main

import (
	"context"
	"io"

	"github.com/vmm-dev/vmm/tests/guestkernel"
)

// minimalKernel returns the cached bzImage of the minimal kernel
// (tests/guest/kernel/minimal.config), building it first when the cache
// has none for this source version and config.
func minimalKernel(ctx context.Context, repo, cache string, build bool, log io.Writer) (string, error) {
	return guestkernel.Path(ctx, repo, cache, guestkernel.Minimal, build, log)
}

func tailOf(s string, n int) string { return guestkernel.TailOf(s, n) }
