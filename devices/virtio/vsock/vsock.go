// Package vsock is a virtio socket device (virtio 1.2 §5.10) with
// Firecracker's host side: AF_UNIX sockets instead of host AF_VSOCK.
//
// A host program connects to the device's socket (Config.UDSPath) and
// writes "CONNECT <port>\n"; the device opens a stream to the guest's
// listener on that port and, once the guest accepts, answers
// "OK <host_port>\n", after which the socket carries the stream. A
// guest that connects to CID 2 (the host), port P, reaches whoever
// listens on "<UDSPath>_<P>".
//
// Flow control is the spec's credit scheme (§5.10.6.3): each side
// advertises a receive buffer (buf_alloc) and how much of it it has
// consumed (fwd_cnt), and never sends more than the other's free space.
// The device buffers at most BufAlloc bytes per connection from the
// guest and reads from a host socket only as much as the guest can take,
// so a slow peer slows its own connection and no other, and no byte is
// dropped or reordered.
package vsock

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"

	"github.com/vmm-dev/vmm/devices/virtio"
)

// Queues (virtio 1.2 §5.10.2).
const (
	RXQueue    = 0
	TXQueue    = 1
	EventQueue = 2
	QueueSize  = 256
)

// BufAlloc is the receive buffer the device advertises per connection:
// what it holds, at most, of the guest's bytes not yet written to the
// host socket.
const BufAlloc = 256 << 10

// EventTransportReset is VIRTIO_VSOCK_EVENT_TRANSPORT_RESET
// (§5.10.6.7): every connection is gone and the guest CID may have
// changed.
const EventTransportReset = 0

// EventSize is the size of struct virtio_vsock_event (le32 id).
const EventSize = 4

// maxConns bounds the connections, host- and guest-initiated together.
const maxConns = 1024

// firstHostPort is the first local port given to host-initiated
// connections, above the ports programs usually bind.
const firstHostPort = 1 << 30

// Sentinel errors.
var (
	// ErrCID: a guest CID that is reserved (0, 1, 2, or above 32 bits).
	ErrCID = errors.New("invalid guest CID")
	// ErrActive: Activate on a device that is already running.
	ErrActive = errors.New("vsock device already active")
)

// Config configures a Vsock.
type Config struct {
	// GuestCID is the guest's context ID: 3 or more (0-2 are reserved,
	// VMADDR_CID_HYPERVISOR, LOCAL, HOST), below 2^32-1 (VMADDR_CID_ANY).
	GuestCID uint64
	// UDSPath is the host-side socket for host-initiated connections,
	// and the prefix of "<UDSPath>_<port>" for guest-initiated ones. It
	// must not exist.
	UDSPath string
}

// Vsock is a virtio socket device. It implements virtio.Device.
type Vsock struct {
	cid      uint64
	path     string
	listener *net.UnixListener
	acceptWG sync.WaitGroup
	connWG   sync.WaitGroup // goroutines of connections and handshakes

	mu       sync.Mutex
	conns    map[connKey]*conn
	ready    []*conn  // connections with a packet for the guest, in order
	control  []Header // packets that belong to no connection (RST replies)
	nextPort uint32
	eventDue bool // a TRANSPORT_RESET event waits for an event buffer
	active   *session
	closed   bool
	// handshakes are host sockets still sending their CONNECT line.
	handshakes map[*net.UnixConn]struct{}
	wake       chan struct{} // capacity 1: the RX side has work

	stats counters
}

var _ virtio.Device = (*Vsock)(nil)

// connKey names a connection by its host-side port and guest-side port.
type connKey struct{ local, peer uint32 }

// New listens on cfg.UDSPath and returns the device. Host programs may
// connect at once; their streams open when the guest's driver is ready.
func New(cfg Config) (*Vsock, error) {
	if cfg.GuestCID < 3 || cfg.GuestCID >= 0xffff_ffff {
		return nil, fmt.Errorf("vsock: %w: %d (want 3 to 4294967294)", ErrCID, cfg.GuestCID)
	}
	if cfg.UDSPath == "" {
		return nil, fmt.Errorf("vsock: no uds_path")
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.UDSPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("vsock: listen on %s: %w", cfg.UDSPath, err)
	}
	// The socket file is ours: it goes when the device does.
	l.SetUnlinkOnClose(true)
	v := &Vsock{
		cid: cfg.GuestCID, path: cfg.UDSPath, listener: l,
		conns: map[connKey]*conn{}, nextPort: firstHostPort,
		handshakes: map[*net.UnixConn]struct{}{},
		wake:       make(chan struct{}, 1),
	}
	v.acceptWG.Add(1)
	go v.acceptLoop()
	return v, nil
}

// GuestCID returns the guest's CID.
func (v *Vsock) GuestCID() uint64 { return v.cid }

// Path returns the host-side socket's path.
func (v *Vsock) Path() string { return v.path }

// Type implements virtio.Device.
func (v *Vsock) Type() virtio.DeviceType { return virtio.DeviceVsock }

// Features implements virtio.Device: stream sockets only, which need no
// feature bit (§5.10.3: without VIRTIO_VSOCK_F_STREAM offered or
// negotiated, a device supports streams).
func (v *Vsock) Features() uint64 { return 0 }

// QueueMaxSizes implements virtio.Device.
func (v *Vsock) QueueMaxSizes() []uint16 { return []uint16{QueueSize, QueueSize, QueueSize} }

// ReadConfig implements virtio.Device: struct virtio_vsock_config is le64
// guest_cid (§5.10.4).
func (v *Vsock) ReadConfig(offset uint64, data []byte) {
	var cfg [8]byte
	for i := range cfg {
		cfg[i] = byte(v.cid >> (8 * i))
	}
	clear(data)
	if offset < uint64(len(cfg)) {
		copy(data, cfg[offset:])
	}
}

// WriteConfig implements virtio.Device: the configuration is read-only.
func (v *Vsock) WriteConfig(uint64, []byte) {}

// Activate implements virtio.Device: it starts the transmit worker and
// the receive loop.
func (v *Vsock) Activate(act virtio.Activation) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.active != nil {
		return ErrActive
	}
	if v.closed {
		return fmt.Errorf("vsock: %w: closed", virtio.ErrDevice)
	}
	s, err := v.startSession(act)
	if err != nil {
		return fmt.Errorf("vsock %s: %w", v.path, err)
	}
	v.active = s
	return nil
}

// Reset implements virtio.Device: it stops the queues and drops every
// connection, since the driver has forgotten them (§2.4).
func (v *Vsock) Reset() {
	v.mu.Lock()
	s := v.active
	v.active = nil
	v.mu.Unlock()
	if s != nil {
		s.stop()
	}
	v.mu.Lock()
	v.dropAllLocked()
	v.eventDue = false
	v.mu.Unlock()
}

// TransportReset drops every connection and tells the guest so with a
// VIRTIO_VSOCK_EVENT_TRANSPORT_RESET on the event queue (§5.10.6.7), as
// after the host side was replaced (a snapshot: the VM that goes on and
// every VM restored from it); the guest's listeners stay. A device whose
// driver is not running has nobody to tell.
func (v *Vsock) TransportReset() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.dropAllLocked()
	if v.active == nil {
		return
	}
	v.eventDue = true
	v.kickLocked()
}

// Close stops the device, closes every connection and removes the
// socket.
func (v *Vsock) Close() error {
	v.Reset()
	v.mu.Lock()
	v.closed = true
	v.dropAllLocked()
	for s := range v.handshakes {
		_ = s.Close()
	}
	v.mu.Unlock()
	err := v.listener.Close()
	v.acceptWG.Wait()
	v.connWG.Wait()
	if err != nil {
		return fmt.Errorf("vsock: close %s: %w", v.path, err)
	}
	return nil
}

// dropAllLocked closes every connection without telling the guest.
func (v *Vsock) dropAllLocked() {
	for _, c := range v.conns {
		v.closeLocked(c)
	}
	v.ready = v.ready[:0]
	v.control = v.control[:0]
}

// kickLocked wakes the receive loop.
func (v *Vsock) kickLocked() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// markReady queues c for the receive loop if it has a packet to send.
func (v *Vsock) markReadyLocked(c *conn) {
	if c.queued || c.closed || !c.hasWork() {
		return
	}
	c.queued = true
	v.ready = append(v.ready, c)
	v.kickLocked()
}

// replyRST answers a packet that belongs to no connection (§5.10.6.4:
// a REQUEST nobody takes, or data for a connection that does not exist).
func (v *Vsock) replyRSTLocked(h Header) {
	if len(v.control) >= QueueSize {
		return // a guest flooding bogus packets loses some replies
	}
	v.control = append(v.control, Header{
		SrcCID: HostCID, DstCID: v.cid, SrcPort: h.DstPort, DstPort: h.SrcPort,
		Type: TypeStream, Op: OpRST,
	})
	v.kickLocked()
}

// counters count what the device refused, for tests and logs.
type counters struct {
	malformed atomic.Uint64 // TX chains that were not a packet
	refused   atomic.Uint64 // packets answered with RST
}

// Stats is a snapshot of the counters.
type Stats struct {
	Malformed, Refused uint64
	Conns              int
}

// Stats returns the device's counters.
func (v *Vsock) Stats() Stats {
	v.mu.Lock()
	n := len(v.conns)
	v.mu.Unlock()
	return Stats{Malformed: v.stats.malformed.Load(), Refused: v.stats.refused.Load(), Conns: n}
}

// logOnce logs the first of a kind of guest error; later ones are only
// counted.
func logOnce(c *atomic.Uint64, what string, err error) {
	if c.Add(1) == 1 {
		slog.Warn("virtio-vsock: "+what+" (first occurrence; later ones are only counted)", "err", err)
	}
}

// acceptLoop takes host connections until the listener closes.
func (v *Vsock) acceptLoop() {
	defer v.acceptWG.Done()
	for {
		s, err := v.listener.AcceptUnix()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				slog.Warn("virtio-vsock: accept failed; host-initiated connections stop", "path", v.path, "err", err)
			}
			return
		}
		v.mu.Lock()
		if v.closed {
			v.mu.Unlock()
			_ = s.Close()
			return
		}
		v.handshakes[s] = struct{}{}
		v.connWG.Add(1)
		v.mu.Unlock()
		go func() {
			defer v.connWG.Done()
			v.hostConnect(s)
		}()
	}
}

// guestPath is where a guest connection to host port p goes.
func (v *Vsock) guestPath(port uint32) string { return fmt.Sprintf("%s_%d", v.path, port) }
