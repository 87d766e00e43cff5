// Package fs is a virtio file system device (virtio 1.2 §5.11) served in
// process: each request chain carries one FUSE request and its reply
// buffers; go-fuse's ProtocolServer decodes and encodes FUSE and a
// passthrough file system serves it from one host directory, confined
// to it (see passthrough).
package fs

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"sync"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/internal/confine"
)

// DeviceType is virtio-fs's device ID (virtio 1.2 §5.11.1).
const DeviceType virtio.DeviceType = 26

// QueueSize is the size of the hiprio and request queues.
const QueueSize = 1024

// RequestQueues is num_request_queues: Linux's driver (6.x) uses only
// the first request queue anyway.
const RequestQueues = 1

// MaxTagLen is the size of the config space's tag field (§5.11.4).
const MaxTagLen = 36

// MaxWrite is the largest READ or WRITE payload offered in FUSE_INIT;
// a reply never needs more than this plus its headers.
const MaxWrite = 1 << 20

// maxReply bounds the guest buffers one reply may use: a guest can post
// a chain of gigabytes, and go-fuse sizes its scratch buffers by it.
const maxReply = MaxWrite + 64<<10

// Sentinel errors.
var (
	// ErrTag: an empty tag, or one longer than MaxTagLen bytes.
	ErrTag = errors.New("invalid virtio-fs tag")
	// ErrActive: Activate on a device that is already running.
	ErrActive = errors.New("virtio-fs device already active")
)

// Config describes one share.
type Config struct {
	HostDir  string
	Tag      string
	ReadOnly bool
}

// FS is a virtio-fs device. It implements virtio.Device.
type FS struct {
	cfg    Config
	config [MaxTagLen + 4]byte

	mu      sync.Mutex
	fs      *passthrough
	workers []*virtio.Worker
}

var _ virtio.Device = (*FS)(nil)

// New checks the share and returns its device; the host directory is
// opened at Activate, when the guest's driver starts, so each driver
// start gets a fresh node table.
func New(cfg Config) (*FS, error) {
	if cfg.Tag == "" || len(cfg.Tag) > MaxTagLen {
		return nil, fmt.Errorf("%w: %q (1 to %d bytes)", ErrTag, cfg.Tag, MaxTagLen)
	}
	p, err := newPassthrough(cfg.HostDir, cfg.ReadOnly)
	if err != nil {
		return nil, err
	}
	p.close()
	confine.RaiseFileLimit()
	f := &FS{cfg: cfg}
	// §5.11.4: tag is UTF-8, NUL-padded when shorter than the field.
	copy(f.config[:MaxTagLen], cfg.Tag)
	f.config[MaxTagLen] = RequestQueues
	return f, nil
}

// Type implements virtio.Device.
func (f *FS) Type() virtio.DeviceType { return DeviceType }

// Features implements virtio.Device: VIRTIO_FS_F_NOTIFICATION (§5.11.3)
// is not offered.
func (f *FS) Features() uint64 { return 0 }

// QueueMaxSizes implements virtio.Device: hiprio, then the request
// queues (§5.11.2).
func (f *FS) QueueMaxSizes() []uint16 {
	s := make([]uint16, 1+RequestQueues)
	for i := range s {
		s[i] = QueueSize
	}
	return s
}

// ReadConfig implements virtio.Device.
func (f *FS) ReadConfig(off uint64, data []byte) {
	clear(data)
	if off < uint64(len(f.config)) {
		copy(data, f.config[off:])
	}
}

// WriteConfig implements virtio.Device: the config space is read-only
// (§5.11.4).
func (f *FS) WriteConfig(uint64, []byte) {}

// Activate implements virtio.Device.
func (f *FS) Activate(act virtio.Activation) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fs != nil {
		return ErrActive
	}
	p, err := newPassthrough(f.cfg.HostDir, f.cfg.ReadOnly)
	if err != nil {
		return fmt.Errorf("virtio-fs %s: %w", f.cfg.Tag, err)
	}
	server := fuse.NewProtocolServer(p, &fuse.MountOptions{
		MaxWrite: MaxWrite,
		// Guest-caused oddities (bad opcodes, short requests) are
		// logged by go-fuse; keep them at debug level, one line each.
		Logger: log.New(slogWriter{tag: f.cfg.Tag}, "", 0),
		// Requests go to the host at once, there is no per-process
		// cache to keep coherent (§5.11.6.1 leaves caching to the driver).
		DisableXAttrs: false,
	})
	handle := func(c *virtio.Chain) (uint32, error) { return serve(server, c), nil }
	for q := range 1 + RequestQueues {
		if q >= len(act.Queues) || act.Queues[q] == nil {
			continue // a driver may leave the hiprio queue unused
		}
		w, err := virtio.StartWorker(act, q, handle)
		if err != nil {
			f.stopLocked()
			p.close()
			return fmt.Errorf("virtio-fs %s: %w", f.cfg.Tag, err)
		}
		f.workers = append(f.workers, w)
	}
	f.fs = p
	return nil
}

// serve hands one chain to go-fuse: device-readable buffers hold the
// FUSE in header and arguments, device-writable ones the out header and
// reply (§5.11.6). A request go-fuse cannot parse, or whose reply does
// not fit, is answered with nothing written, which Linux reports as EIO
// for that request; the device carries on.
func serve(server *fuse.ProtocolServer, c *virtio.Chain) uint32 {
	out := capIov(c.Writable, maxReply)
	n, _ := server.HandleRequest(c.Readable, out)
	return uint32(n)
}

// capIov returns the first limit bytes of iov.
func capIov(iov [][]byte, limit int) [][]byte {
	total := 0
	for i, b := range iov {
		if total+len(b) > limit {
			r := append([][]byte(nil), iov[:i]...)
			return append(r, b[:limit-total])
		}
		total += len(b)
	}
	return iov
}

// Reset implements virtio.Device.
func (f *FS) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopLocked()
	if f.fs != nil {
		f.fs.close()
		f.fs = nil
	}
}

func (f *FS) stopLocked() {
	for _, w := range f.workers {
		w.Stop()
	}
	f.workers = nil
}

// Close releases the host directory.
func (f *FS) Close() error {
	f.Reset()
	return nil
}

type slogWriter struct{ tag string }

func (w slogWriter) Write(b []byte) (int, error) {
	slog.Debug("virtio-fs", "tag", w.tag, "msg", string(b))
	return len(b), nil
}
