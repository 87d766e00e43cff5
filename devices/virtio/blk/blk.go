// Package blk is a virtio block device (virtio 1.2 §5.2) backed by a raw
// disk image file. Requests move data with preadv/pwritev straight
// between the file and guest memory, without a bounce buffer.
package blk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/vmm-dev/vmm/devices/ratelimit"
	"github.com/vmm-dev/vmm/devices/virtio"
)

const (
	// SectorSize is the protocol's unit for capacity and sector numbers,
	// whatever the image's block size (virtio 1.2 §5.2.4).
	SectorSize = 512
	// QueueSize is the size of the one request queue.
	QueueSize = 256
	// IDLen is the length of the GET_ID answer (VIRTIO_BLK_ID_BYTES).
	IDLen = 20
)

// Feature bits (virtio 1.2 §5.2.3).
const (
	FeatureSegMax  uint64 = 1 << 2 // VIRTIO_BLK_F_SEG_MAX
	FeatureRO      uint64 = 1 << 5 // VIRTIO_BLK_F_RO
	FeatureBlkSize uint64 = 1 << 6 // VIRTIO_BLK_F_BLK_SIZE
	FeatureFlush   uint64 = 1 << 9 // VIRTIO_BLK_F_FLUSH
)

// Offsets in struct virtio_blk_config (virtio 1.2 §5.2.4).
const (
	configCapacity = 0
	configSegMax   = 12
	configBlkSize  = 20
	configSize     = 64
)

// segMax leaves room for the header and status descriptors, so a request
// of seg_max data segments still fits the queue as a direct chain.
const segMax = QueueSize - 2

// Sentinel errors.
var (
	// ErrSize: the image is empty or not a whole number of sectors.
	ErrSize = errors.New("invalid disk image size")
	// ErrID: Options.ID is longer than IDLen bytes.
	ErrID = errors.New("disk ID too long")
	// ErrNoStatus: a request without a device-writable status byte.
	ErrNoStatus = errors.New("block request has no device-writable status byte")
	// ErrActive: Activate on a device that is already running.
	ErrActive = errors.New("block device already active")
)

// Options configure a Block.
type Options struct {
	// ReadOnly opens the image read-only and offers VIRTIO_BLK_F_RO.
	ReadOnly bool
	// ID answers VIRTIO_BLK_T_GET_ID (at most IDLen bytes); it defaults
	// to the image's file name, truncated.
	ID string
	// RateLimiter delays requests (one operation each, plus the bytes
	// read or written); nil gives an unlimited one that Limiter returns,
	// so limits can still be set at run time.
	RateLimiter *ratelimit.Limiter
}

// Block is a virtio block device. It implements virtio.Device.
type Block struct {
	readOnly bool
	id       [IDLen]byte
	limiter  *ratelimit.Limiter

	// imgMu guards the backing image: requests hold it shared while they
	// use the file, Swap exclusively while it replaces it.
	imgMu   sync.RWMutex
	file    *os.File
	fd      int
	path    string
	sectors uint64
	config  [configSize]byte

	stats counters

	mu     sync.Mutex
	worker *virtio.Worker
	stop   chan struct{} // closed by Reset: ends a wait for tokens
}

var _ virtio.Device = (*Block)(nil)

// New opens the raw image at path.
func New(path string, opts Options) (*Block, error) {
	if len(opts.ID) > IDLen {
		return nil, fmt.Errorf("disk image %s: %w: %q is %d bytes (at most %d)", path, ErrID, opts.ID, len(opts.ID), IDLen)
	}
	f, sectors, err := openImage(path, opts.ReadOnly)
	if err != nil {
		return nil, err
	}
	b := &Block{
		file:     f,
		fd:       int(f.Fd()),
		path:     path,
		sectors:  sectors,
		readOnly: opts.ReadOnly,
		limiter:  opts.RateLimiter,
	}
	if b.limiter == nil {
		b.limiter = ratelimit.Unlimited()
	}
	id := opts.ID
	if id == "" {
		id = filepath.Base(path)
	}
	copy(b.id[:], id)
	binary.LittleEndian.PutUint64(b.config[configCapacity:], b.sectors)
	binary.LittleEndian.PutUint32(b.config[configSegMax:], segMax)
	binary.LittleEndian.PutUint32(b.config[configBlkSize:], SectorSize)
	return b, nil
}

// openImage opens a raw image and returns its size in sectors.
func openImage(path string, readOnly bool) (*os.File, uint64, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, 0, fmt.Errorf("open disk image: %w", err)
	}
	// Seek rather than Stat so block devices report their size too.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, 0, errors.Join(fmt.Errorf("disk image %s: size: %w", path, err), f.Close())
	}
	if size <= 0 || size%SectorSize != 0 {
		return nil, 0, errors.Join(fmt.Errorf("disk image %s: %w: %d bytes is not a positive multiple of %d",
			path, ErrSize, size, SectorSize), f.Close())
	}
	return f, uint64(size) / SectorSize, nil
}

// Swap replaces the backing image with the one at path, opened with the
// device's read-only setting, and returns once no request uses the old
// one, which it closes. Requests after it see the new image and its
// capacity; the caller tells the driver with a configuration-change
// notification (virtio 1.2 §5.2.4: capacity may change; Linux's
// virtio_blk re-reads it and resizes the disk). On error the old image
// stays.
func (b *Block) Swap(path string) error {
	f, sectors, err := openImage(path, b.readOnly)
	if err != nil {
		return err
	}
	b.imgMu.Lock()
	old := b.file
	b.file, b.fd, b.path, b.sectors = f, int(f.Fd()), path, sectors
	binary.LittleEndian.PutUint64(b.config[configCapacity:], sectors)
	b.imgMu.Unlock()
	if err := old.Close(); err != nil {
		return fmt.Errorf("close the replaced disk image: %w", err)
	}
	return nil
}

// counters are the device's Firecracker-style metrics.
type counters struct {
	readBytes, writeBytes, readCount, writeCount, flushCount atomic.Uint64
	invalidReqs, executeFails                                atomic.Uint64
}

// Stats are the device's counters since it was made (Firecracker's
// block metrics, by the same names in the metrics file).
type Stats struct {
	ReadBytes, WriteBytes uint64
	ReadCount, WriteCount uint64
	FlushCount            uint64
	InvalidReqs           uint64 // requests answered IOERR or UNSUPP before any I/O
	ExecuteFails          uint64 // I/O that failed on the host
	RateLimiterThrottled  uint64 // requests that waited for tokens
}

// Stats returns the counters.
func (b *Block) Stats() Stats {
	c := &b.stats
	return Stats{
		ReadBytes: c.readBytes.Load(), WriteBytes: c.writeBytes.Load(),
		ReadCount: c.readCount.Load(), WriteCount: c.writeCount.Load(), FlushCount: c.flushCount.Load(),
		InvalidReqs: c.invalidReqs.Load(), ExecuteFails: c.executeFails.Load(),
		RateLimiterThrottled: b.limiter.Throttled(),
	}
}

// Path returns the backing image's path.
func (b *Block) Path() string {
	b.imgMu.RLock()
	defer b.imgMu.RUnlock()
	return b.path
}

// Limiter returns the device's rate limiter; Update on it changes the
// limits of a running device.
func (b *Block) Limiter() *ratelimit.Limiter { return b.limiter }

// Sectors returns the capacity in 512-byte sectors.
func (b *Block) Sectors() uint64 {
	b.imgMu.RLock()
	defer b.imgMu.RUnlock()
	return b.sectors
}

// Type implements virtio.Device.
func (b *Block) Type() virtio.DeviceType { return virtio.DeviceBlock }

// Features implements virtio.Device. FLUSH is offered because writes land
// in the host page cache and only fdatasync makes them stable (§5.2.6.2).
func (b *Block) Features() uint64 {
	f := FeatureSegMax | FeatureBlkSize | FeatureFlush
	if b.readOnly {
		f |= FeatureRO
	}
	return f
}

// QueueMaxSizes implements virtio.Device.
func (b *Block) QueueMaxSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig implements virtio.Device.
func (b *Block) ReadConfig(offset uint64, data []byte) {
	b.imgMu.RLock()
	defer b.imgMu.RUnlock()
	if offset < configSize {
		copy(data, b.config[offset:])
	}
}

// WriteConfig implements virtio.Device. Without VIRTIO_BLK_F_CONFIG_WCE
// nothing in the configuration space is writable.
func (b *Block) WriteConfig(uint64, []byte) {}

// Activate implements virtio.Device: it starts serving the request queue.
func (b *Block) Activate(act virtio.Activation) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.worker != nil {
		return ErrActive
	}
	b.stop = make(chan struct{})
	s := &server{b: b, stop: b.stop}
	w, err := virtio.StartWorker(act, 0, s.handle)
	if err != nil {
		return fmt.Errorf("disk image %s: %w", b.Path(), err)
	}
	b.worker = w
	return nil
}

// Reset implements virtio.Device: it stops the worker, waiting for the
// request in flight.
func (b *Block) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.worker != nil {
		close(b.stop)
		b.worker.Stop()
		b.worker = nil
	}
}

// Close stops the device and closes the image.
func (b *Block) Close() error {
	b.Reset()
	b.imgMu.Lock()
	defer b.imgMu.Unlock()
	if err := b.file.Close(); err != nil {
		return fmt.Errorf("close disk image %s: %w", b.path, err)
	}
	return nil
}
