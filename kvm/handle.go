package kvm

import (
	"errors"
	"fmt"
	"sync"
)

// handle guards a file descriptor (and, for a vCPU, its kvm_run mapping)
// so that Close in one goroutine cannot free them under an ioctl or a kick
// running in another: once closed, no new call starts, and the last call
// still running releases the resources.
type handle struct {
	what string // "/dev/kvm", "VM", "vCPU 3": the prefix of error messages

	mu      sync.Mutex
	fd      int
	users   int
	closed  bool
	release func() error
}

func newHandle(what string, fd int, release func() error) *handle {
	return &handle{what: what, fd: fd, release: release}
}

// acquire returns the fd and counts a user; call done when finished.
func (h *handle) acquire() (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return -1, ErrClosed
	}
	h.users++
	return h.fd, nil
}

// done ends a use; the last user after Close releases the resources and
// returns the error of doing so.
func (h *handle) done() error {
	h.mu.Lock()
	h.users--
	last := h.closed && h.users == 0
	h.mu.Unlock()
	if last {
		return h.releaseNow()
	}
	return nil
}

// close stops new uses and releases the resources now, or when the last
// running use ends. Closing twice is not an error.
func (h *handle) close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	idle := h.users == 0
	h.mu.Unlock()
	if idle {
		return h.releaseNow()
	}
	return nil
}

func (h *handle) releaseNow() error {
	if err := h.release(); err != nil {
		return fmt.Errorf("%s: close: %w", h.what, err)
	}
	return nil
}

// use runs f with the fd, holding a use for its duration. Errors from f
// are wrapped with the handle's name and the ioctl's name.
func (h *handle) use(name string, f func(fd int) error) error {
	fd, err := h.acquire()
	if err != nil {
		return ioctlError(h.what, name, err)
	}
	err = f(fd)
	if err != nil {
		err = ioctlError(h.what, name, err)
	}
	return errors.Join(err, h.done())
}

// ioctlArg issues an ioctl whose argument is a plain value.
func ioctlArg(h *handle, name string, req, arg uintptr) (uintptr, error) {
	var r uintptr
	err := h.use(name, func(fd int) error {
		var err error
		r, err = ioctlRetry(fd, req, arg)
		return err
	})
	return r, err
}

// ioctlStruct issues an ioctl whose argument points to a uapi struct.
func ioctlStruct[T any](h *handle, name string, req uintptr, arg *T) (uintptr, error) {
	var r uintptr
	err := h.use(name, func(fd int) error {
		var err error
		r, err = ioctlPtr(fd, req, arg)
		return err
	})
	return r, err
}
