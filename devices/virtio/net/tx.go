package net

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
)

// iovMax is the kernel's limit on buffers per readv/writev (IOV_MAX).
const iovMax = 1024

// transmitter serves the transmit queue on the core's worker goroutine;
// its scratch space makes the steady state allocation-free.
type transmitter struct {
	n        *Net
	features uint64
	stop     <-chan struct{} // closed on reset
	hdr      [HeaderSize]byte
	iov      [][]byte
}

// handle sends one chain: a header and a frame in the device-readable
// buffers, split in any way (virtio 1.2 §5.1.6.2, §2.7.4.1). The frame
// goes to the backend in one writev, straight from guest memory; the
// header goes from a private copy, so the guest cannot change it between
// the check and the write. Bad chains are dropped and counted: transmit
// has no status to report, and the chain is still returned (used length 0:
// the device writes nothing).
func (t *transmitter) handle(c *virtio.Chain) (uint32, error) {
	total := c.ReadableLen()
	switch {
	case total < HeaderSize:
		t.n.count(&t.n.stats.txMalformed, "transmit chain shorter than a header",
			fmt.Errorf("%w: %d device-readable bytes (%d writable)", ErrHeader, total, c.WritableLen()))
		return 0, nil
	case total > HeaderSize+MaxFrameSize:
		t.n.count(&t.n.stats.txOversized, "oversized transmit frame dropped",
			fmt.Errorf("%w: %d bytes", ErrFrameSize, total-HeaderSize))
		return 0, nil
	}
	t.iov = append(t.iov[:0], t.hdr[:])
	got := 0
	for _, b := range c.Readable {
		k := copy(t.hdr[got:], b)
		got += k
		if k < len(b) {
			t.iov = append(t.iov, b[k:])
		}
	}
	frameLen := int(total) - HeaderSize
	if err := ValidateTX(ParseHeader(t.hdr), frameLen, t.features); err != nil {
		t.n.count(&t.n.stats.txMalformed, "malformed transmit frame dropped", err)
		return 0, nil
	}
	if len(t.iov) > iovMax {
		t.n.count(&t.n.stats.txMalformed, "transmit frame in too many pieces dropped",
			fmt.Errorf("%w: %d buffers (at most %d)", ErrHeader, len(t.iov)-1, iovMax-1))
		return 0, nil
	}
	// The worker serves one chain at a time, so a limited queue delays
	// frames in order; a reset ends the wait and discards the frame, as
	// it does a blocked write.
	if err := t.n.txLimit.Acquire(total, t.stop); err != nil {
		return 0, nil
	}
	if err := t.write(int(total)); err != nil {
		// A reset in progress discards the frame it interrupted.
		if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, os.ErrClosed) {
			t.n.count(&t.n.stats.txErrors, "backend refused a transmit frame", err)
		}
		return 0, nil
	}
	t.n.stats.txFrames.Add(1)
	t.n.stats.txBytes.Add(uint64(frameLen))
	return 0, nil
}

// write sends t.iov as one frame. When the backend is full it waits in
// the poller, holding the chain: the guest's transmit ring backs up, and
// Reset's write deadline ends the wait.
func (t *transmitter) write(total int) error {
	var n int
	var werr error
	err := t.n.conn.Write(func(fd uintptr) bool {
		for {
			n, werr = unix.Writev(int(fd), t.iov)
			if !errors.Is(werr, unix.EINTR) {
				return !errors.Is(werr, unix.EAGAIN)
			}
		}
	})
	switch {
	case err != nil:
		return fmt.Errorf("write frame: %w", err)
	case werr != nil:
		return fmt.Errorf("writev %d bytes: %w", total, werr)
	case n != total:
		return fmt.Errorf("writev: %d of %d bytes written", n, total)
	}
	return nil
}
