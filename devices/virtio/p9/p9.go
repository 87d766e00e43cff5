// Package p9 is a virtio 9P transport device (device ID 9; virtio 1.2
// §5 lists it, its layout is QEMU's and Linux's net/9p/trans_virtio.c):
// each request chain carries one 9P2000.L T-message and the buffers for
// its R-message. hugelgupf/p9's server speaks the protocol; the file
// backend serves one host directory, confined to it (package confine).
package p9

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio"
	"github.com/vmm-dev/vmm/devices/virtio/internal/confine"
)

// DeviceType is the 9P transport's device ID.
const DeviceType virtio.DeviceType = 9

// FeatureMountTag is VIRTIO_9P_MOUNT_TAG: the config space holds the tag.
const FeatureMountTag uint64 = 1 << 0

// QueueSize is the size of the one request queue.
const QueueSize = 128

// MaxTagLen bounds the tag; Linux's mount(2) data carries it as a device
// name, and QEMU allows at most 31 bytes too.
const MaxTagLen = 36

// MaxMessage is the largest msize granted in Tversion: a guest asking for
// more gets this (9P2000 version negotiation: the server may lower it).
const MaxMessage = 512 << 10

// 9P message types this transport looks at.
const (
	msgRlerror    = 7
	msgTxattrwalk = 30
	msgTversion   = 100
	msgRversion   = 101
	msgTflush     = 108
	msgRflush     = 109
	headerLen     = 7 // size[4] type[1] tag[2]
)

// Sentinel errors.
var (
	// ErrTag: an empty tag, or one over MaxTagLen bytes.
	ErrTag = errors.New("invalid virtio-9p tag")
	// ErrActive: Activate on a device that is already running.
	ErrActive = errors.New("virtio-9p device already active")
	// ErrServer: the 9P server's connection ended or answered garbage.
	ErrServer = errors.New("9P server stopped")
)

// Config describes one share.
type Config struct {
	HostDir  string
	Tag      string
	ReadOnly bool
}

// P9 is a virtio-9p device. It implements virtio.Device.
type P9 struct {
	cfg    Config
	config []byte

	mu     sync.Mutex
	conn   *conn
	worker *virtio.Worker
}

var _ virtio.Device = (*P9)(nil)

// New checks the share and returns its device.
func New(cfg Config) (*P9, error) {
	if cfg.Tag == "" || len(cfg.Tag) > MaxTagLen {
		return nil, fmt.Errorf("%w: %q (1 to %d bytes)", ErrTag, cfg.Tag, MaxTagLen)
	}
	fd, err := unix.Open(cfg.HostDir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open share %s: %w", cfg.HostDir, err)
	}
	if err := unix.Close(fd); err != nil {
		return nil, fmt.Errorf("close share %s: %w", cfg.HostDir, err)
	}
	confine.RaiseFileLimit()
	// struct virtio_9p_config: le16 tag_len, then tag_len bytes, no NUL.
	c := binary.LittleEndian.AppendUint16(nil, uint16(len(cfg.Tag)))
	return &P9{cfg: cfg, config: append(c, cfg.Tag...)}, nil
}

// Type implements virtio.Device.
func (d *P9) Type() virtio.DeviceType { return DeviceType }

// Features implements virtio.Device.
func (d *P9) Features() uint64 { return FeatureMountTag }

// QueueMaxSizes implements virtio.Device: one request queue.
func (d *P9) QueueMaxSizes() []uint16 { return []uint16{QueueSize} }

// ReadConfig implements virtio.Device.
func (d *P9) ReadConfig(off uint64, data []byte) {
	clear(data)
	if off < uint64(len(d.config)) {
		copy(data, d.config[off:])
	}
}

// WriteConfig implements virtio.Device: the config space is read-only.
func (d *P9) WriteConfig(uint64, []byte) {}

// Activate implements virtio.Device: a fresh 9P connection (no fids) per
// driver start.
func (d *P9) Activate(act virtio.Activation) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		return ErrActive
	}
	c := newConn(&share{root: d.cfg.HostDir, readOnly: d.cfg.ReadOnly, files: map[*file]struct{}{}}, d.cfg.Tag)
	w, err := virtio.StartWorker(act, 0, c.serve)
	if err != nil {
		c.close(true)
		return fmt.Errorf("virtio-9p %s: %w", d.cfg.Tag, err)
	}
	d.conn, d.worker = c, w
	return nil
}

// stopGrace is how long Reset waits for the reply to a request in flight
// before it gives up on the session.
const stopGrace = 5 * time.Second

// Reset implements virtio.Device.
func (d *P9) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return
	}
	// The worker finishes the chain it serves: once its reply is read no
	// server handler touches a file, and the files can be closed.
	stopped := make(chan struct{})
	go func() { d.worker.Stop(); close(stopped) }()
	idle := true
	select {
	case <-stopped:
	case <-time.After(stopGrace):
		slog.Warn("virtio-9p: a request outlived the device reset; its files stay open", "tag", d.cfg.Tag)
		idle = false
		d.conn.replies.shut() // ends the worker's wait
		<-stopped
	}
	d.conn.close(idle)
	d.conn, d.worker = nil, nil
}

// Close releases the device.
func (d *P9) Close() error {
	d.Reset()
	return nil
}

// conn is one 9P session: the server reads T-messages from reqs and
// writes R-messages to replies. Chains are served one at a time, so the
// next R-message is always the answer to the current chain's T-message.
//
// The session is never ended through the server: hugelgupf/p9's
// connection teardown races (its Handle waits on a WaitGroup that a
// goroutine it just started may not have added to yet). At a reset the
// server is left waiting for a message that never comes, and the files
// it holds are closed here, when no handler runs.
type conn struct {
	s       *share
	reqs    *msgReader
	replies *replyWriter
	done    chan struct{} // closed if the server's Handle returns
	msize   uint32        // negotiated in Tversion; MaxMessage until then
	req     []byte
}

func newConn(s *share, tag string) *conn {
	c := &conn{s: s, reqs: &msgReader{ch: make(chan []byte)}, replies: newReplyWriter(),
		done: make(chan struct{}), msize: MaxMessage}
	server := p9.NewServer(s, p9.WithServerLogger(logger{tag: tag}))
	go func() {
		defer close(c.done)
		// Handle returns only if the server fails on its own.
		if err := server.Handle(c.reqs, c.replies); err != nil {
			slog.Debug("virtio-9p server", "tag", tag, "err", err)
		}
	}()
	return c
}

// close ends the session; idle says no server handler can be running,
// so the files can be closed without one using a descriptor number that
// is gone (and perhaps reused).
func (c *conn) close(idle bool) {
	c.replies.shut()
	if idle {
		c.s.closeAll()
	}
}

// msgReader hands the server one whole T-message at a time; it never
// returns EOF (see conn).
type msgReader struct {
	ch  chan []byte
	cur []byte
}

func (r *msgReader) Read(p []byte) (int, error) {
	if len(r.cur) == 0 {
		r.cur = <-r.ch
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// Close implements io.Closer for the server; nothing to release.
func (r *msgReader) Close() error { return nil }

// serve answers one chain. A message the server cannot take (shorter
// than its header, a size that disagrees with the chain, over msize) is
// answered with Rlerror here, never passed on: the server reads a
// stream, and one bad size would desynchronize every later message.
func (c *conn) serve(ch *virtio.Chain) (uint32, error) {
	n := ch.ReadableLen()
	if n < headerLen {
		return 0, nil // no tag to answer to
	}
	c.req = gather(c.req[:0], ch.Readable, min(n, uint64(c.msize)))
	tag := binary.LittleEndian.Uint16(c.req[5:])
	size := binary.LittleEndian.Uint32(c.req[0:])
	switch {
	case size < headerLen || uint64(size) > n:
		return rlerror(ch, tag, unix.EINVAL), nil
	case size > c.msize:
		return rlerror(ch, tag, unix.EMSGSIZE), nil
	}
	msg := c.req[:size]
	if msg[4] == msgTflush {
		// Chains are served one at a time, so no other request is in
		// flight: the flush is done at once. Passed on, a Tflush of its
		// own tag would wait for itself in the server forever.
		return reply(ch, msgRflush, tag, nil), nil
	}
	if msg[4] == msgTversion && size >= headerLen+4 {
		// The server grants up to 4 MiB; vmm's buffers are sized for
		// MaxMessage.
		if binary.LittleEndian.Uint32(msg[7:]) > MaxMessage {
			binary.LittleEndian.PutUint32(msg[7:], MaxMessage)
		}
	}
	c.s.xattrErr.Store(0)
	// The server reads the whole message before it answers, and copies
	// what it keeps; msg is reused only after the reply.
	select {
	case c.reqs.ch <- msg:
	case <-c.done:
		return 0, fmt.Errorf("%w: connection closed", ErrServer)
	}
	resp, err := c.replies.next()
	if err != nil {
		return 0, err
	}
	defer c.replies.recycle(resp)
	rsize := uint32(len(resp))
	// A message the server could not decode is answered with its
	// no-tag; the guest waits on the tag it sent.
	binary.LittleEndian.PutUint16(resp[5:], tag)
	if resp[4] == msgRversion && rsize >= headerLen+4 {
		// The server's own limit from now on; 0 is its "unknown
		// version" answer, which changes nothing.
		if m := binary.LittleEndian.Uint32(resp[7:]); m != 0 {
			c.msize = min(m, MaxMessage)
		}
	}
	if msg[4] == msgTxattrwalk {
		fixXattrError(resp, c.s.xattrErr.Load())
	}
	if uint64(len(resp)) > ch.WritableLen() {
		return rlerror(ch, tag, unix.EMSGSIZE), nil
	}
	return uint32(scatter(ch.Writable, resp)), nil
}

// fixXattrError puts the host's errno into a Txattrwalk's Rlerror:
// hugelgupf/p9 (v0.3.0) answers every failed xattr lookup with EINVAL.
// A guest must see ENODATA for a missing attribute: overlayfs reads
// trusted.overlay.metacopy of every lower file it looks up and fails the
// lookup on any other error, so a host root shared over 9p under an
// overlay had no executable files at all.
func fixXattrError(resp []byte, hostErr uint32) {
	if hostErr == 0 || len(resp) != headerLen+4 || resp[4] != msgRlerror ||
		binary.LittleEndian.Uint32(resp[headerLen:]) != uint32(unix.EINVAL) {
		return
	}
	binary.LittleEndian.PutUint32(resp[headerLen:], hostErr)
}

// rlerror writes Rlerror (size[4] type[1] tag[2] ecode[4]) into the chain.
func rlerror(ch *virtio.Chain, tag uint16, e unix.Errno) uint32 {
	return reply(ch, msgRlerror, tag, binary.LittleEndian.AppendUint32(nil, uint32(e)))
}

// reply writes an R-message made here into the chain.
func reply(ch *virtio.Chain, typ byte, tag uint16, body []byte) uint32 {
	m := binary.LittleEndian.AppendUint32(nil, uint32(headerLen+len(body)))
	m = append(m, typ)
	m = binary.LittleEndian.AppendUint16(m, tag)
	m = append(m, body...)
	if ch.WritableLen() < uint64(len(m)) {
		return 0
	}
	return uint32(scatter(ch.Writable, m))
}

// gather copies the first n bytes of bufs.
func gather(dst []byte, bufs [][]byte, n uint64) []byte {
	for _, b := range bufs {
		if uint64(len(dst)) >= n {
			break
		}
		dst = append(dst, b[:min(uint64(len(b)), n-uint64(len(dst)))]...)
	}
	return dst
}

// scatter copies src across bufs and returns the bytes copied.
func scatter(bufs [][]byte, src []byte) int {
	n := 0
	for _, b := range bufs {
		if n == len(src) {
			break
		}
		n += copy(b, src[n:])
	}
	return n
}

// logger hands the server's log to slog at debug level. The server logs
// every message it receives and sends, formatted (QIDs, attributes): the
// formatting runs only when debug logging is on: done always, it was
// about a tenth of BenchmarkWalkGetattr's CPU profile.
type logger struct{ tag string }

func debugOn() bool { return slog.Default().Enabled(context.Background(), slog.LevelDebug) }

func (l logger) Printf(format string, v ...any) {
	if debugOn() {
		slog.Debug("virtio-9p", "tag", l.tag, "msg", fmt.Sprintf(format, v...))
	}
}

func (l logger) Print(v ...any) {
	if debugOn() {
		slog.Debug("virtio-9p", "tag", l.tag, "msg", fmt.Sprint(v...))
	}
}
