package blk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"

	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
)

// Request types (virtio 1.2 §5.2.6).
const (
	TypeIn    uint32 = 0 // VIRTIO_BLK_T_IN: read
	TypeOut   uint32 = 1 // VIRTIO_BLK_T_OUT: write
	TypeFlush uint32 = 4 // VIRTIO_BLK_T_FLUSH
	TypeGetID uint32 = 8 // VIRTIO_BLK_T_GET_ID
)

// Request status values (virtio 1.2 §5.2.6).
const (
	StatusOK     uint8 = 0 // VIRTIO_BLK_S_OK
	StatusIOErr  uint8 = 1 // VIRTIO_BLK_S_IOERR
	StatusUnsupp uint8 = 2 // VIRTIO_BLK_S_UNSUPP
)

// HeaderSize is the size of the request header: le32 type, le32
// reserved, le64 sector.
const HeaderSize = 16

// server handles requests for one queue; its scratch slices make the
// steady state allocation-free. Only the queue's worker goroutine uses it.
type server struct {
	b      *Block
	stop   <-chan struct{} // closed on reset
	data   [][]byte        // the request's data buffers
	cursor [][]byte        // what remains of them during I/O
	// ioFailed: the request failed on the host, not for its own fault.
	ioFailed bool
}

// handle serves one request chain (virtio 1.2 §5.2.6). The framing makes
// no assumption about how descriptors split the request (§2.7.4.1): the
// header is the first 16 device-readable bytes, the status the last
// device-writable byte.
//
// A chain whose last device-writable byte does not exist cannot be
// answered at all: a device must not write into a device-readable buffer
// (§2.7.5.1), so no status can be returned and the driver would wait
// forever. That breaks the device, and handle returns ErrNoStatus. A
// header that is short or lies in device-writable memory is answered
// with VIRTIO_BLK_S_IOERR, since the status byte can still say so.
func (s *server) handle(c *virtio.Chain) (uint32, error) {
	last := len(c.Writable) - 1
	for last >= 0 && len(c.Writable[last]) == 0 {
		last--
	}
	if last < 0 {
		return 0, ErrNoStatus
	}
	statusBuf := c.Writable[last]
	s.data = append(s.data[:0], c.Writable[:last+1]...)
	s.data[last] = statusBuf[:len(statusBuf)-1]
	in := s.data // IN and GET_ID data: the writable bytes before the status

	status, written := s.serve(c, in)
	statusBuf[len(statusBuf)-1] = status
	if status != StatusOK && !s.ioFailed {
		s.b.stats.invalidReqs.Add(1)
	}
	s.ioFailed = false

	// §2.7.8.2: len counts bytes written from the start of the writable
	// buffers; the status byte counts only when the data before it was
	// written in full. An underestimate is allowed, an overestimate not.
	if written == buffersLen(in) {
		written++
	}
	return uint32(min(written, math.MaxUint32)), nil
}

// serve runs the request and returns its status and how many bytes of in
// it wrote.
func (s *server) serve(c *virtio.Chain, in [][]byte) (uint8, uint64) {
	var hdr [HeaderSize]byte
	out, ok := s.takeHeader(c.Readable, hdr[:])
	if !ok {
		return StatusIOErr, 0
	}
	typ := binary.LittleEndian.Uint32(hdr[0:])
	sector := binary.LittleEndian.Uint64(hdr[8:])
	b := s.b
	switch typ {
	case TypeIn:
		// §5.2.6: a read's data is device-writable. Device-readable data
		// after the header is a read the device cannot do; answering OK
		// with nothing read would tell the driver its buffer holds the
		// disk's bytes.
		if buffersLen(out) != 0 {
			return StatusIOErr, 0
		}
		n := buffersLen(in)
		if !s.acquire(n) {
			return StatusIOErr, 0
		}
		b.imgMu.RLock()
		defer b.imgMu.RUnlock()
		if !b.fits(sector, n) {
			return StatusIOErr, 0
		}
		if err := transfer(unix.Preadv, b.fd, s.cursorOf(in), int64(sector*SectorSize), n); err != nil {
			b.logIOError("read", sector, n, err)
			s.fail()
			return StatusIOErr, 0
		}
		b.stats.readCount.Add(1)
		b.stats.readBytes.Add(n)
		return StatusOK, n
	case TypeOut:
		// §5.2.6.2: with VIRTIO_BLK_F_RO offered, writes fail untouched.
		if b.readOnly {
			return StatusIOErr, 0
		}
		// The mirror image: a write's data is device-readable.
		if buffersLen(in) != 0 {
			return StatusIOErr, 0
		}
		n := buffersLen(out)
		if !s.acquire(n) {
			return StatusIOErr, 0
		}
		b.imgMu.RLock()
		defer b.imgMu.RUnlock()
		if !b.fits(sector, n) {
			return StatusIOErr, 0
		}
		if err := transfer(unix.Pwritev, b.fd, out, int64(sector*SectorSize), n); err != nil {
			b.logIOError("write", sector, n, err)
			s.fail()
			return StatusIOErr, 0
		}
		b.stats.writeCount.Add(1)
		b.stats.writeBytes.Add(n)
		return StatusOK, 0
	case TypeFlush:
		if !s.acquire(0) {
			return StatusIOErr, 0
		}
		b.imgMu.RLock()
		defer b.imgMu.RUnlock()
		if err := unix.Fdatasync(b.fd); err != nil {
			b.logIOError("flush", 0, 0, err)
			s.fail()
			return StatusIOErr, 0
		}
		b.stats.flushCount.Add(1)
		return StatusOK, 0
	case TypeGetID:
		if !s.acquire(0) {
			return StatusIOErr, 0
		}
		return StatusOK, fillID(in, b.id[:])
	}
	return StatusUnsupp, 0
}

// fail counts a request that failed on the host.
func (s *server) fail() {
	s.ioFailed = true
	s.b.stats.executeFails.Add(1)
}

// acquire waits for the rate limiter's tokens for one request moving n
// bytes. The worker serves one chain at a time, so a limited disk delays
// its requests in order. It reports false when a device reset ended the
// wait: the request then fails, which a resetting driver never sees.
func (s *server) acquire(n uint64) bool {
	return s.b.limiter.Acquire(n, s.stop) == nil
}

// takeHeader copies the first HeaderSize readable bytes into hdr and
// returns the readable buffers after them; ok is false when fewer than
// HeaderSize bytes are device-readable.
func (s *server) takeHeader(readable [][]byte, hdr []byte) (rest [][]byte, ok bool) {
	s.cursor = s.cursor[:0]
	got := 0
	for _, b := range readable {
		k := copy(hdr[got:], b)
		got += k
		if k < len(b) {
			s.cursor = append(s.cursor, b[k:])
		}
	}
	return s.cursor, got == HeaderSize
}

// cursorOf copies bufs' headers into scratch space that transfer may trim.
func (s *server) cursorOf(bufs [][]byte) [][]byte {
	s.cursor = append(s.cursor[:0], bufs...)
	return s.cursor
}

func buffersLen(bufs [][]byte) uint64 {
	var n uint64
	for _, b := range bufs {
		n += uint64(len(b))
	}
	return n
}

// fits checks that n bytes are whole sectors that fit the disk from
// sector on. b.imgMu is held: the check is against the image the
// transfer uses, which a Swap may have made smaller while the request
// waited for tokens.
func (b *Block) fits(sector, n uint64) bool {
	return n%SectorSize == 0 && sector <= b.sectors && n/SectorSize <= b.sectors-sector
}

func (b *Block) logIOError(op string, sector, n uint64, err error) {
	slog.Warn("virtio-blk I/O error", "image", b.path, "op", op, "sector", sector, "bytes", n, "err", err)
}

// iovMax is the kernel's limit on buffers per preadv/pwritev (IOV_MAX).
const iovMax = 1024

// transfer moves n bytes between the file at off and bufs with op
// (unix.Preadv or unix.Pwritev), retrying short transfers. It trims bufs.
func transfer(op func(int, [][]byte, int64) (int, error), fd int, bufs [][]byte, off int64, n uint64) error {
	for n > 0 {
		for len(bufs) > 0 && len(bufs[0]) == 0 {
			bufs = bufs[1:]
		}
		done, err := op(fd, bufs[:min(len(bufs), iovMax)], off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if done == 0 {
			return fmt.Errorf("%d bytes short at offset %d: end of file", n, off)
		}
		off += int64(done)
		n -= uint64(done)
		for done > 0 {
			k := min(done, len(bufs[0]))
			bufs[0] = bufs[0][k:]
			done -= k
			if len(bufs[0]) == 0 {
				bufs = bufs[1:]
			}
		}
	}
	return nil
}

// fillID writes the IDLen-byte id (NUL-padded, §5.2.6) into the start of
// bufs and returns how many bytes it wrote: IDLen, or less if bufs are
// shorter. Bytes past IDLen are left alone, so a huge buffer costs nothing.
func fillID(bufs [][]byte, id []byte) uint64 {
	var n uint64
	for _, b := range bufs {
		if len(id) == 0 {
			break
		}
		k := copy(b, id)
		id = id[k:]
		n += uint64(k)
	}
	return n
}
