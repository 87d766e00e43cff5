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
	file     *os.File
	fd       int
	path     string
	sectors  uint64
	readOnly bool
	id       [IDLen]byte
	config   [configSize]byte
	limiter  *ratelimit.Limiter

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
	flag := os.O_RDWR
	if opts.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("open disk image: %w", err)
	}
	// Seek rather than Stat so block devices report their size too.
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("disk image %s: size: %w", path, err), f.Close())
	}
	if size <= 0 || size%SectorSize != 0 {
		return nil, errors.Join(fmt.Errorf("disk image %s: %w: %d bytes is not a positive multiple of %d",
			path, ErrSize, size, SectorSize), f.Close())
	}
	b := &Block{
		file:     f,
		fd:       int(f.Fd()),
		path:     path,
		sectors:  uint64(size) / SectorSize,
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

// Limiter returns the device's rate limiter; Update on it changes the
// limits of a running device.
func (b *Block) Limiter() *ratelimit.Limiter { return b.limiter }

// Sectors returns the capacity in 512-byte sectors.
func (b *Block) Sectors() uint64 { return b.sectors }

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
		return fmt.Errorf("disk image %s: %w", b.path, err)
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
	if err := b.file.Close(); err != nil {
		return fmt.Errorf("close disk image %s: %w", b.path, err)
	}
	return nil
}
