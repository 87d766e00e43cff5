// Package console is a virtio console device (virtio 1.2 §5.3) with
// VIRTIO_CONSOLE_F_MULTIPORT: several named ports, each a pair of
// queues carrying a byte stream between a host reader/writer and a guest
// character device (Linux: /dev/vportNpM, its name in
// /sys/class/virtio-ports/vportNpM/name).
//
// The streams are binary-safe and separate: what the guest writes to a
// port goes to that port's Output and nowhere else, in order, and a
// port's Input reaches the guest only once the guest has opened the port
// (Linux discards data for a port nobody holds open). The end of an Input
// is told to the guest as the host closing the port (PORT_OPEN 0), which
// Linux turns into end-of-file for a reader.
//
// Everything on the control queue comes from the guest: a short, unknown
// or out-of-range message is counted and ignored, never a crash or a
// stuck device.
package console

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vmm-dev/vmm/devices/virtio"
)

// DeviceID is the virtio console's device ID (§5.3.1).
const DeviceID virtio.DeviceType = 3

// FeatureMultiport is VIRTIO_CONSOLE_F_MULTIPORT (§5.3.3).
const FeatureMultiport uint64 = 1 << 1

// QueueSize is the size of every queue.
const QueueSize = 128

// MaxPorts bounds the ports: two queues each, plus the two control
// queues, within what a transport offers comfortably.
const MaxPorts = 31

// inputChunk is the most one read of a port's Input takes.
const inputChunk = 64 << 10

// maxControlOut bounds the control messages waiting for the guest's
// buffers: a guest that sends PORT_READY over and over without posting
// receive buffers loses replies, not host memory.
const maxControlOut = 1024

// Sentinel errors.
var (
	ErrActive = errors.New("virtio-console already active")
	ErrPorts  = errors.New("invalid virtio-console ports")
)

// Port is one port as the host sees it.
type Port struct {
	// Name is sent to the guest (PORT_NAME); at most MaxNameLen bytes.
	Name string
	// Input is read for bytes to the guest; nil gives the guest an
	// immediate end of file once it opens the port.
	Input io.Reader
	// Output receives the guest's bytes; nil discards them.
	Output io.Writer
}

// port is a Port's state.
type port struct {
	Port
	id uint32

	txMu sync.Mutex // held while the transmit queue is drained

	// Guarded by Console.mu.
	guestOpen bool
	hostOpen  bool   // what the guest was last told (PORT_OPEN)
	pending   []byte // Input read, not yet given to the guest
	inputEOF  bool   // the reader ended and pending is empty when sent
	eofSent   bool
	wantRead  bool          // the reader goroutine may read the next chunk
	more      chan struct{} // capacity 1: wantRead became true
}

// Console is a virtio console device. It implements virtio.Device.
type Console struct {
	ports []*port

	mu      sync.Mutex
	active  *session
	ctrlOut [][]byte
	started bool          // the Input readers run
	wake    chan struct{} // capacity 1: the receive side has work

	malformed atomic.Uint64
}

var _ virtio.Device = (*Console)(nil)

// New returns a console with ports, in port-number order.
func New(ports []Port) (*Console, error) {
	if len(ports) == 0 || len(ports) > MaxPorts {
		return nil, fmt.Errorf("%w: %d ports (1 to %d)", ErrPorts, len(ports), MaxPorts)
	}
	c := &Console{wake: make(chan struct{}, 1)}
	seen := map[string]bool{}
	for i, p := range ports {
		if len(p.Name) > MaxNameLen || seen[p.Name] && p.Name != "" {
			return nil, fmt.Errorf("%w: port %d: name %q is too long or not unique", ErrPorts, i, p.Name)
		}
		seen[p.Name] = true
		c.ports = append(c.ports, &port{Port: p, id: uint32(i), hostOpen: true, wantRead: true, more: make(chan struct{}, 1)})
	}
	return c, nil
}

// Type implements virtio.Device.
func (c *Console) Type() virtio.DeviceType { return DeviceID }

// Features implements virtio.Device: multiport only; no console size
// (F_SIZE) and no emergency write (F_EMERG_WRITE).
func (c *Console) Features() uint64 { return FeatureMultiport }

// QueueMaxSizes implements virtio.Device: port 0's receiveq and
// transmitq, the control receiveq and transmitq, then two per further
// port (§5.3.2).
func (c *Console) QueueMaxSizes() []uint16 {
	s := make([]uint16, 2*(len(c.ports)+1))
	for i := range s {
		s[i] = QueueSize
	}
	return s
}

// Queue indexes (§5.3.2).
const (
	ctrlRX = 2
	ctrlTX = 3
)

func rxQueue(id uint32) int {
	if id == 0 {
		return 0
	}
	return 2 + 2*int(id)
}

func txQueue(id uint32) int { return rxQueue(id) + 1 }

// ReadConfig implements virtio.Device: struct virtio_console_config is
// le16 cols, le16 rows, le32 max_nr_ports, le32 emerg_wr (§5.3.4); only
// max_nr_ports means anything without F_SIZE and F_EMERG_WRITE.
func (c *Console) ReadConfig(offset uint64, data []byte) {
	var cfg [12]byte
	n := uint32(len(c.ports))
	cfg[4], cfg[5], cfg[6], cfg[7] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
	clear(data)
	if offset < uint64(len(cfg)) {
		copy(data, cfg[offset:])
	}
}

// WriteConfig implements virtio.Device: emerg_wr needs F_EMERG_WRITE,
// which is not offered; the rest is read-only.
func (c *Console) WriteConfig(uint64, []byte) {}

// Activate implements virtio.Device.
func (c *Console) Activate(act virtio.Activation) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active != nil {
		return ErrActive
	}
	if act.Features&FeatureMultiport == 0 {
		// Without multiport there is one port and no names: the
		// command's channels could not be told apart.
		return fmt.Errorf("virtio-console: %w: the driver refused VIRTIO_CONSOLE_F_MULTIPORT", virtio.ErrFeatures)
	}
	for i := range c.QueueMaxSizes() {
		if i >= len(act.Queues) || act.Queues[i] == nil {
			return fmt.Errorf("virtio-console: %w: queue %d not enabled", virtio.ErrDevice, i)
		}
	}
	if !c.started {
		c.started = true
		for _, p := range c.ports {
			if p.Input != nil {
				go c.readInput(p)
			} else {
				p.inputEOF = true
			}
		}
	}
	c.active = startSession(c, act)
	return nil
}

// Reset implements virtio.Device. The driver forgets its ports; the host
// side (inputs not yet delivered) stays for the next activation.
func (c *Console) Reset() {
	c.mu.Lock()
	s := c.active
	c.active = nil
	c.ctrlOut = nil
	for _, p := range c.ports {
		p.guestOpen, p.hostOpen, p.eofSent = false, true, false
	}
	c.mu.Unlock()
	if s != nil {
		s.stop()
	}
}

// Flush hands every byte the guest has made available on the transmit
// queues to the ports' Outputs before it returns, and handles the
// control messages already queued. A caller that learned from one port
// that the guest is done calls it so that nothing the guest wrote before
// on another port is still in a ring. It is safe at any time, also
// after the VM stopped (as long as guest memory is mapped).
func (c *Console) Flush() {
	c.mu.Lock()
	s := c.active
	c.mu.Unlock()
	if s == nil {
		return
	}
	s.drainControl()
	for _, p := range c.ports {
		s.drainTX(p)
	}
}

// Malformed returns how many control messages were ignored.
func (c *Console) Malformed() uint64 { return c.malformed.Load() }

// readInput reads p's Input one chunk at a time, each once the previous
// one reached the guest, so a slow guest slows its reader and holds at
// most one chunk.
func (c *Console) readInput(p *port) {
	buf := make([]byte, inputChunk)
	for {
		c.mu.Lock()
		for !p.wantRead {
			c.mu.Unlock()
			<-p.more
			c.mu.Lock()
		}
		c.mu.Unlock()
		n, err := p.Input.Read(buf)
		c.mu.Lock()
		if n > 0 {
			p.pending = append(p.pending[:0], buf[:n]...)
			p.wantRead = false
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				slog.Warn("virtio-console: port input failed; the guest gets end of file", "port", p.Name, "err", err)
			}
			p.inputEOF = true
			p.wantRead = false
		}
		c.kickLocked()
		done := p.inputEOF
		c.mu.Unlock()
		if done {
			return
		}
	}
}

func (c *Console) kickLocked() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// sendControlLocked queues a message for the guest's control receiveq.
func (c *Console) sendControlLocked(m Control) {
	if len(c.ctrlOut) >= maxControlOut {
		c.logMalformed(fmt.Errorf("%w: the guest takes no control messages; dropping one", ErrControl))
		return
	}
	c.ctrlOut = append(c.ctrlOut, m.Encode())
	c.kickLocked()
}

func (c *Console) logMalformed(err error) {
	if c.malformed.Add(1) == 1 {
		slog.Warn("virtio-console: ignoring a bad control message (first occurrence; later ones are only counted)", "err", err)
	}
}

// handleControl applies one message from the guest (§5.3.6.2).
func (c *Console) handleControl(s *session, b []byte) {
	m, err := DecodeControl(b)
	if err != nil {
		c.logMalformed(err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.Event != EventDeviceReady && m.ID >= uint32(len(c.ports)) {
		c.logMalformed(fmt.Errorf("%w: event %d for port %d of %d", ErrControl, m.Event, m.ID, len(c.ports)))
		return
	}
	switch m.Event {
	case EventDeviceReady:
		if m.Value != 1 {
			return // the driver failed; it will reset the device
		}
		for _, p := range c.ports {
			c.sendControlLocked(Control{ID: p.id, Event: EventDeviceAdd})
		}
	case EventPortReady:
		if m.Value != 1 {
			return
		}
		p := c.ports[m.ID]
		// §5.3.6.2: the name and the host's open state follow a port's
		// readiness; Linux creates the device node before it reads them.
		if p.Name != "" {
			c.sendControlLocked(Control{ID: p.id, Event: EventPortName, Value: 1, Name: p.Name})
		}
		if p.hostOpen {
			c.sendControlLocked(Control{ID: p.id, Event: EventPortOpen, Value: 1})
		}
	case EventPortOpen:
		p := c.ports[m.ID]
		p.guestOpen = m.Value != 0
		c.kickLocked()
		if !p.guestOpen {
			// What the guest wrote before closing goes out before anyone
			// learns of the close; drained without c.mu, see below.
			c.mu.Unlock()
			s.drainTX(p)
			c.mu.Lock()
		}
	default:
		c.logMalformed(fmt.Errorf("%w: event %d is not one a driver sends", ErrControl, m.Event))
	}
}
