// Package net is a virtio network device (virtio 1.2 §5.1) with one
// receive and one transmit queue, backed by a host TAP interface.
//
// Frames move between guest memory and the TAP with readv/writev, without
// a copy: the guest's struct virtio_net_hdr and the TAP's vnet header have
// the same layout, so offloads (partial checksums, TSO) pass through. The
// transmit queue is served when the guest kicks it; the receive side runs
// when the TAP has frames and the guest has buffers, and stops reading the
// TAP while it has none, so the kernel queues (and in the end drops) at the
// TAP rather than the device after accepting a frame.
package net

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	stdnet "net"
	"sync"
	"syscall"
	"time"

	"github.com/vmm-dev/vmm/devices/ratelimit"
	"github.com/vmm-dev/vmm/devices/tap"
	"github.com/vmm-dev/vmm/devices/virtio"
)

// Feature bits (virtio 1.2 §5.1.3).
const (
	FeatureCSUM      uint64 = 1 << 0  // VIRTIO_NET_F_CSUM: device completes partial checksums
	FeatureGuestCSUM uint64 = 1 << 1  // VIRTIO_NET_F_GUEST_CSUM: driver accepts partial checksums
	FeatureMAC       uint64 = 1 << 5  // VIRTIO_NET_F_MAC
	FeatureGuestTSO4 uint64 = 1 << 7  // VIRTIO_NET_F_GUEST_TSO4
	FeatureGuestTSO6 uint64 = 1 << 8  // VIRTIO_NET_F_GUEST_TSO6
	FeatureGuestECN  uint64 = 1 << 9  // VIRTIO_NET_F_GUEST_ECN
	FeatureGuestUFO  uint64 = 1 << 10 // VIRTIO_NET_F_GUEST_UFO (not offered)
	FeatureHostTSO4  uint64 = 1 << 11 // VIRTIO_NET_F_HOST_TSO4
	FeatureHostTSO6  uint64 = 1 << 12 // VIRTIO_NET_F_HOST_TSO6
	FeatureHostECN   uint64 = 1 << 13 // VIRTIO_NET_F_HOST_ECN
	FeatureHostUFO   uint64 = 1 << 14 // VIRTIO_NET_F_HOST_UFO (not offered)
	FeatureMrgRXBuf  uint64 = 1 << 15 // VIRTIO_NET_F_MRG_RXBUF
	FeatureStatus    uint64 = 1 << 16 // VIRTIO_NET_F_STATUS
	offeredFeatures         = FeatureCSUM | FeatureGuestCSUM | FeatureMAC |
		FeatureGuestTSO4 | FeatureGuestTSO6 | FeatureGuestECN |
		FeatureHostTSO4 | FeatureHostTSO6 | FeatureHostECN |
		FeatureMrgRXBuf | FeatureStatus
)

// Queues (virtio 1.2 §5.1.2: receiveq1 is 0, transmitq1 is 1).
const (
	RXQueue   = 0
	TXQueue   = 1
	QueueSize = 256
)

// struct virtio_net_config (virtio 1.2 §5.1.4): mac[6], le16 status, le16
// max_virtqueue_pairs. Later fields exist only with features not offered.
const (
	configMAC        = 0
	configStatus     = 6
	configQueuePairs = 8
	configSize       = 10
	statusLinkUp     = 1 // VIRTIO_NET_S_LINK_UP
)

// Sentinel errors.
var (
	// ErrMAC: Config.MAC is not a 6-byte unicast address.
	ErrMAC = errors.New("invalid MAC address")
	// ErrActive: Activate on a device that is already running.
	ErrActive = errors.New("network device already active")
	// ErrBackend: the backend cannot be used (no descriptor).
	ErrBackend = errors.New("unusable network backend")
)

// Backend is the host end of the link: a non-blocking descriptor on which
// one read returns one frame and one write sends one, each frame preceded
// by the HeaderSize-byte virtio_net_hdr. tap.Device is the production
// backend; an AF_UNIX SOCK_SEQPACKET socket (*os.File) serves tests.
type Backend interface {
	// SyscallConn gives the descriptor under Go's poller.
	SyscallConn() (syscall.RawConn, error)
	// SetReadDeadline and SetWriteDeadline wake waiting RawConn calls
	// with os.ErrDeadlineExceeded; the device uses them to stop.
	SetReadDeadline(t time.Time) error
	SetWriteDeadline(t time.Time) error
	Close() error
}

// Offloader is a Backend that can be told which offloads the guest
// accepts in received frames (a TAP's TUNSETOFFLOAD).
type Offloader interface {
	SetOffload(flags uint) error
}

// Config configures a Net.
type Config struct {
	// TAP names the host interface; it is created if missing.
	TAP string
	// MAC is the guest's address; nil picks a random locally
	// administered unicast one.
	MAC stdnet.HardwareAddr
	// RXLimiter and TXLimiter delay received and transmitted frames
	// (one operation each, plus its bytes with the virtio_net_hdr, as
	// Firecracker counts); nil gives unlimited ones, which RXLimiter and
	// TXLimiter return so limits can be set at run time.
	RXLimiter, TXLimiter *ratelimit.Limiter
	// NoMergeableRX withholds VIRTIO_NET_F_MRG_RXBUF, so the driver posts
	// receive buffers that each hold a whole frame (§5.1.6.3.1): Linux
	// then uses its "big packets" chains. For comparing the two RX paths.
	NoMergeableRX bool
}

// Net is a virtio network device. It implements virtio.Device.
type Net struct {
	name    string
	backend Backend
	conn    syscall.RawConn
	mac     stdnet.HardwareAddr
	config  [configSize]byte
	stats   counters
	rxLimit *ratelimit.Limiter
	txLimit *ratelimit.Limiter
	offered uint64 // feature bits offered to the driver

	mu     sync.Mutex
	tx     *virtio.Worker
	txStop chan struct{} // closed by Reset: ends a wait for tokens
	rx     *receiver
	closed bool
}

var _ virtio.Device = (*Net)(nil)

// New opens (or creates) the TAP cfg.TAP and returns a device on it.
func New(cfg Config) (*Net, error) {
	if err := checkMAC(cfg.MAC); err != nil {
		return nil, fmt.Errorf("virtio-net on TAP %q: %w", cfg.TAP, err)
	}
	t, err := tap.Open(cfg.TAP)
	if err != nil {
		return nil, fmt.Errorf("virtio-net: %w", err)
	}
	n, err := newNet(t, t.Name(), cfg.MAC)
	if err != nil {
		return nil, errors.Join(err, t.Close())
	}
	if cfg.NoMergeableRX {
		n.offered &^= FeatureMrgRXBuf
	}
	if cfg.RXLimiter != nil {
		n.rxLimit = cfg.RXLimiter
	}
	if cfg.TXLimiter != nil {
		n.txLimit = cfg.TXLimiter
	}
	return n, nil
}

// NewWithBackend returns a device on b, which must already carry frames
// with HeaderSize-byte headers. Close closes b.
func NewWithBackend(b Backend, mac stdnet.HardwareAddr) (*Net, error) {
	if err := checkMAC(mac); err != nil {
		return nil, fmt.Errorf("virtio-net: %w", err)
	}
	return newNet(b, "backend", mac)
}

func newNet(b Backend, name string, mac stdnet.HardwareAddr) (*Net, error) {
	conn, err := b.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("virtio-net %s: %w: %w", name, ErrBackend, err)
	}
	if mac == nil {
		if mac, err = RandomMAC(); err != nil {
			return nil, fmt.Errorf("virtio-net %s: %w", name, err)
		}
	}
	n := &Net{name: name, backend: b, conn: conn, mac: append(stdnet.HardwareAddr(nil), mac...),
		rxLimit: ratelimit.Unlimited(), txLimit: ratelimit.Unlimited(), offered: offeredFeatures}
	copy(n.config[configMAC:], n.mac)
	binary.LittleEndian.PutUint16(n.config[configStatus:], statusLinkUp)
	binary.LittleEndian.PutUint16(n.config[configQueuePairs:], 1)
	return n, nil
}

func checkMAC(mac stdnet.HardwareAddr) error {
	switch {
	case mac == nil:
		return nil
	case len(mac) != 6:
		return fmt.Errorf("%w: %v is not 6 bytes", ErrMAC, mac)
	case mac[0]&1 != 0:
		return fmt.Errorf("%w: %v is a multicast address", ErrMAC, mac)
	case [6]byte(mac) == [6]byte{}:
		return fmt.Errorf("%w: %v is all zeros", ErrMAC, mac)
	}
	return nil
}

// RandomMAC returns a random locally administered unicast address.
func RandomMAC() (stdnet.HardwareAddr, error) {
	mac := make(stdnet.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, fmt.Errorf("random MAC: %w", err)
	}
	mac[0] = mac[0]&^1 | 2 // unicast, locally administered (IEEE 802 U/L bit)
	return mac, nil
}

// MAC returns the guest's address.
func (n *Net) MAC() stdnet.HardwareAddr { return append(stdnet.HardwareAddr(nil), n.mac...) }

// RXLimiter returns the receive rate limiter; Update on it changes the
// limits of a running device.
func (n *Net) RXLimiter() *ratelimit.Limiter { return n.rxLimit }

// TXLimiter returns the transmit rate limiter.
func (n *Net) TXLimiter() *ratelimit.Limiter { return n.txLimit }

// Name returns the TAP's name ("backend" for NewWithBackend).
func (n *Net) Name() string { return n.name }

// Type implements virtio.Device.
func (n *Net) Type() virtio.DeviceType { return virtio.DeviceNet }

// Features implements virtio.Device.
func (n *Net) Features() uint64 { return n.offered }

// QueueMaxSizes implements virtio.Device.
func (n *Net) QueueMaxSizes() []uint16 { return []uint16{QueueSize, QueueSize} }

// ReadConfig implements virtio.Device.
func (n *Net) ReadConfig(offset uint64, data []byte) {
	if offset < configSize {
		copy(data, n.config[offset:])
	}
}

// WriteConfig implements virtio.Device. virtio 1.x makes the whole space
// read-only (§5.1.4.2: the MAC changes only through the control queue,
// which is not offered).
func (n *Net) WriteConfig(uint64, []byte) {}

// offloads maps the negotiated receive offloads to TUNSETOFFLOAD flags:
// what the TAP may hand us is what the guest accepts. A feature whose
// dependency was not negotiated (§5.1.3.1) is treated as absent.
func offloads(features uint64) uint {
	if features&FeatureGuestCSUM == 0 {
		return 0
	}
	flags := uint(tap.OffloadCSUM)
	if features&FeatureGuestTSO4 != 0 {
		flags |= tap.OffloadTSO4
	}
	if features&FeatureGuestTSO6 != 0 {
		flags |= tap.OffloadTSO6
	}
	if features&FeatureGuestECN != 0 && flags&(tap.OffloadTSO4|tap.OffloadTSO6) != 0 {
		flags |= tap.OffloadTSOECN
	}
	return flags
}

// Activate implements virtio.Device: it sets the TAP's offloads for the
// negotiated features and starts both queues.
func (n *Net) Activate(act virtio.Activation) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.tx != nil || n.rx != nil {
		return ErrActive
	}
	if n.closed {
		return fmt.Errorf("virtio-net %s: %w: closed", n.name, ErrBackend)
	}
	if o, ok := n.backend.(Offloader); ok {
		if err := o.SetOffload(offloads(act.Features)); err != nil {
			return fmt.Errorf("virtio-net %s: %w", n.name, err)
		}
	}
	if err := n.clearDeadlines(); err != nil {
		return err
	}
	rx, err := newReceiver(n, act)
	if err != nil {
		return fmt.Errorf("virtio-net %s: %w", n.name, err)
	}
	txStop := make(chan struct{})
	t := &transmitter{n: n, features: act.Features, stop: txStop}
	w, err := virtio.StartWorker(act, TXQueue, t.handle)
	if err != nil {
		return fmt.Errorf("virtio-net %s: transmit queue: %w", n.name, err)
	}
	n.tx, n.rx, n.txStop = w, rx, txStop
	rx.start()
	return nil
}

func (n *Net) clearDeadlines() error {
	if err := n.backend.SetReadDeadline(time.Time{}); err != nil {
		return fmt.Errorf("virtio-net %s: %w", n.name, err)
	}
	if err := n.backend.SetWriteDeadline(time.Time{}); err != nil {
		return fmt.Errorf("virtio-net %s: %w", n.name, err)
	}
	return nil
}

// Reset implements virtio.Device: it stops both queues and returns once
// neither touches guest memory. Frames that arrive meanwhile wait in the
// TAP's queue.
func (n *Net) Reset() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stopLocked()
}

func (n *Net) stopLocked() {
	// A deadline in the past wakes a worker waiting on the backend; the
	// errors only mean the backend is closed, which wakes it too.
	past := time.Unix(1, 0)
	if n.rx != nil {
		n.rx.stop.Store(true)
		close(n.rx.stopc)
		_ = n.backend.SetReadDeadline(past)
		n.rx.wait()
		// Receive buffers held for frames that never came go back to the
		// ring unused: a device quiesced for a snapshot (virtio.Core.Quiesce)
		// and started again, or restored, takes them again instead of
		// losing them. After a real reset the queue is forgotten anyway.
		n.rx.q.Rewind(uint16(n.rx.count))
		n.rx = nil
	}
	if n.tx != nil {
		_ = n.backend.SetWriteDeadline(past)
		close(n.txStop)
		n.tx.Stop()
		n.tx = nil
	}
}

// Close stops the device and closes the backend (a TAP this process
// created disappears with it).
func (n *Net) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stopLocked()
	if n.closed {
		return nil
	}
	n.closed = true
	if err := n.backend.Close(); err != nil {
		return fmt.Errorf("virtio-net %s: %w", n.name, err)
	}
	return nil
}
