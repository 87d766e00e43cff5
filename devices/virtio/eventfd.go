package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// EventFD is a non-blocking Linux eventfd that goroutines wait on through
// Go's poller, so a waiting device worker holds no OS thread. The machine
// hands FD to KVM (KVM_IOEVENTFD for queue notifications), so the guest's
// writes reach the worker without leaving the kernel.
type EventFD struct {
	file *os.File
	fd   int
}

// NewEventFD creates an eventfd with a zero counter.
func NewEventFD() (*EventFD, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create eventfd: %w", err)
	}
	// A non-blocking descriptor makes os.NewFile register it with the poller.
	return &EventFD{file: os.NewFile(uintptr(fd), "virtio-eventfd"), fd: fd}, nil
}

// FD returns the descriptor, for KVM_IOEVENTFD or KVM_IRQFD.
func (e *EventFD) FD() int { return e.fd }

// Signal adds one to the counter, waking a waiter.
func (e *EventFD) Signal() error {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	_, err := unix.Write(e.fd, one[:])
	// EAGAIN means the counter is near overflow: it is already non-zero,
	// so the waiter will wake anyway.
	if err != nil && !errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("signal eventfd %d: %w", e.fd, err)
	}
	return nil
}

// Wait blocks until the counter is non-zero, resets it and returns how many
// signals it held. After Close it returns an error wrapping os.ErrClosed.
func (e *EventFD) Wait() (uint64, error) {
	var buf [8]byte
	if _, err := e.file.Read(buf[:]); err != nil {
		return 0, fmt.Errorf("wait on eventfd %d: %w", e.fd, err)
	}
	return binary.NativeEndian.Uint64(buf[:]), nil
}

// SetDeadline makes Wait give up at t with an error wrapping
// os.ErrDeadlineExceeded; the zero time waits forever.
func (e *EventFD) SetDeadline(t time.Time) error {
	if err := e.file.SetReadDeadline(t); err != nil {
		return fmt.Errorf("eventfd %d: deadline: %w", e.fd, err)
	}
	return nil
}

// Close closes the eventfd; blocked waiters return with os.ErrClosed.
func (e *EventFD) Close() error {
	if err := e.file.Close(); err != nil {
		return fmt.Errorf("close eventfd %d: %w", e.fd, err)
	}
	return nil
}
