package vsock

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// connectTimeout bounds how long a host program may take to write its
// CONNECT line.
const connectTimeout = 5 * time.Second

// maxPending bounds the bytes read from a host socket and not yet sent
// to the guest.
const maxPending = 64 << 10

// connState is where a connection is in its life (§5.10.6.4).
type connState int

const (
	// stateDialing: the guest sent REQUEST; the host socket is opening.
	stateDialing connState = iota
	// stateRequesting: a host program asked for the connection; the
	// guest has not answered the REQUEST yet.
	stateRequesting
	// stateEstablished: bytes flow.
	stateEstablished
)

// conn is one stream between a host socket and a guest socket. All
// fields are guarded by the device's mutex; the socket is read and
// written outside it by the connection's own goroutines.
type conn struct {
	key   connKey
	sock  *net.UnixConn
	state connState
	cond  *sync.Cond // signalled on every change a goroutine may wait for

	// Guest to host: bytes received from the guest and not yet written.
	txbuf  []byte
	rxCnt  uint32 // bytes received from the guest, in all
	fwdCnt uint32 // of those, written to the host socket
	sentFC uint32 // fwdCnt as last told to the guest
	gShut  uint32 // SHUTDOWN flags the guest sent

	// Host to guest.
	pending      []byte // read from the host socket, not yet sent
	txCnt        uint32 // bytes sent to the guest, in all
	peerBufAlloc uint32 // the guest's buffer, from its last header
	peerFwdCnt   uint32 // what the guest has consumed of txCnt
	hostEOF      bool   // the host socket's read side ended

	// Packets owed to the guest.
	needRequest  bool
	needResponse bool
	needCredit   bool
	needShutdown bool // SHUTDOWN(SEND) once pending is sent
	needRST      bool
	shutdownSent bool

	queued bool // in Vsock.ready
	closed bool
}

// peerFree is how many more bytes the guest can take now (§5.10.6.3:
// buf_alloc - (tx_cnt - fwd_cnt)); negative after it shrank its buffer.
func (c *conn) peerFree() int64 {
	return int64(c.peerBufAlloc) - int64(c.txCnt-c.peerFwdCnt)
}

// hasWork reports whether c has a packet for the guest now.
func (c *conn) hasWork() bool {
	switch {
	case c.needRST:
		return true
	case c.state == stateDialing:
		return false
	case c.needRequest || c.needResponse:
		return true
	case c.state != stateEstablished:
		return false
	case len(c.pending) > 0 && c.peerFree() > 0:
		return true
	}
	return c.needCredit || (c.needShutdown && len(c.pending) == 0 && !c.shutdownSent)
}

// updatePeer takes the guest's credit from a header (§5.10.6.3: every
// packet carries it).
func (c *conn) updatePeer(h Header) {
	c.peerBufAlloc, c.peerFwdCnt = h.BufAlloc, h.FwdCnt
	c.cond.Broadcast()
}

// newConnLocked registers a connection; false when the table is full or
// the key is taken.
func (v *Vsock) newConnLocked(key connKey, state connState) (*conn, bool) {
	if len(v.conns) >= maxConns || v.conns[key] != nil || v.closed {
		return nil, false
	}
	c := &conn{key: key, state: state, cond: sync.NewCond(&v.mu)}
	v.conns[key] = c
	return c, true
}

// closeLocked forgets c and closes its socket, which ends its goroutines.
func (v *Vsock) closeLocked(c *conn) {
	if c.closed {
		return
	}
	c.closed = true
	if v.conns[c.key] == c {
		delete(v.conns, c.key)
	}
	if c.sock != nil {
		_ = c.sock.Close() // only a second close fails
	}
	c.txbuf, c.pending = nil, nil
	c.cond.Broadcast()
}

// resetLocked aborts c: the guest gets an RST and the socket closes.
func (v *Vsock) resetLocked(c *conn) {
	if c.closed {
		return
	}
	c.needRST = true
	if c.sock != nil {
		_ = c.sock.Close()
	}
	c.cond.Broadcast()
	v.markReadyLocked(c)
}

// hostConnect serves one host program on the device's socket: it reads
// "CONNECT <port>\n" and asks the guest for the connection.
func (v *Vsock) hostConnect(s *net.UnixConn) {
	port, err := readConnect(s)
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.handshakes, s)
	if err != nil {
		_ = s.Close() // the program sent no usable request: it sees EOF
		return
	}
	local, ok := v.allocPortLocked(port)
	if !ok {
		_ = s.Close()
		return
	}
	c, _ := v.newConnLocked(connKey{local: local, peer: port}, stateRequesting)
	c.sock = s
	c.needRequest = true
	v.markReadyLocked(c)
}

// allocPortLocked picks a local port for a host-initiated connection to
// guest port peer.
func (v *Vsock) allocPortLocked(peer uint32) (uint32, bool) {
	if len(v.conns) >= maxConns || v.closed {
		return 0, false
	}
	for {
		p := v.nextPort
		v.nextPort++
		if v.nextPort == 0 {
			v.nextPort = firstHostPort
		}
		if v.conns[connKey{local: p, peer: peer}] == nil {
			return p, true
		}
	}
}

// readConnect reads the CONNECT line one byte at a time, so no byte of
// the stream that follows is taken with it.
func readConnect(s *net.UnixConn) (uint32, error) {
	if err := s.SetReadDeadline(time.Now().Add(connectTimeout)); err != nil {
		return 0, err
	}
	var line []byte
	var b [1]byte
	for len(line) < 32 {
		if _, err := io.ReadFull(s, b[:]); err != nil {
			return 0, err
		}
		if b[0] == '\n' {
			if err := s.SetReadDeadline(time.Time{}); err != nil {
				return 0, err
			}
			return ParseConnect(string(line))
		}
		line = append(line, b[0])
	}
	return 0, fmt.Errorf("%w: CONNECT line too long", ErrConnect)
}

// ErrConnect: a host program's first line is not "CONNECT <port>".
var ErrConnect = errors.New("bad vsock CONNECT line")

// ParseConnect reads the line a host program sends, without its "\n":
// "CONNECT <port>", the port in decimal (Firecracker's protocol).
func ParseConnect(line string) (uint32, error) {
	line = strings.TrimSuffix(line, "\r")
	word, arg, ok := strings.Cut(line, " ")
	if !ok || word != "CONNECT" {
		return 0, fmt.Errorf("%w: %q", ErrConnect, line)
	}
	p, err := strconv.ParseUint(strings.TrimSpace(arg), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: port %q", ErrConnect, arg)
	}
	return uint32(p), nil
}

// dial opens the host side of a guest-initiated connection.
func (v *Vsock) dial(c *conn) {
	s, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: v.guestPath(c.key.local), Net: "unix"})
	v.mu.Lock()
	defer v.mu.Unlock()
	if c.closed {
		if err == nil {
			_ = s.Close()
		}
		return
	}
	if err != nil {
		// Nobody listens there: the guest's connect fails (§5.10.6.4).
		c.needRST = true
		v.markReadyLocked(c)
		return
	}
	c.sock = s
	c.state = stateEstablished
	c.needResponse = true
	v.startIOLocked(c)
	v.markReadyLocked(c)
}

// establishLocked completes a host-initiated connection on the guest's
// RESPONSE: the host program gets "OK <local port>\n" before any byte
// of the stream.
func (v *Vsock) establishLocked(c *conn) {
	c.state = stateEstablished
	// A dozen bytes into a fresh socket never block for long; the
	// deadline keeps a wedged peer from holding the device.
	_ = c.sock.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := fmt.Fprintf(c.sock, "OK %d\n", c.key.local); err != nil {
		v.resetLocked(c)
		return
	}
	_ = c.sock.SetWriteDeadline(time.Time{})
	v.startIOLocked(c)
}

func (v *Vsock) startIOLocked(c *conn) {
	v.connWG.Add(2)
	go v.reader(c)
	go v.writer(c)
}

// reader moves bytes from the host socket into c.pending, reading only
// what the guest has room for.
func (v *Vsock) reader(c *conn) {
	defer v.connWG.Done()
	buf := make([]byte, maxPending)
	v.mu.Lock()
	defer v.mu.Unlock()
	for {
		room := min(int64(maxPending-len(c.pending)), c.peerFree()-int64(len(c.pending)))
		for !c.closed && !c.needRST && c.gShut&ShutdownRCV == 0 && room <= 0 {
			c.cond.Wait()
			room = min(int64(maxPending-len(c.pending)), c.peerFree()-int64(len(c.pending)))
		}
		if c.closed || c.needRST || c.gShut&ShutdownRCV != 0 {
			return
		}
		v.mu.Unlock()
		n, err := c.sock.Read(buf[:room])
		v.mu.Lock()
		if c.closed || c.needRST {
			return
		}
		if n > 0 {
			c.pending = append(c.pending, buf[:n]...)
			v.markReadyLocked(c)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				c.hostEOF, c.needShutdown = true, true
				v.markReadyLocked(c)
			} else {
				v.resetLocked(c)
			}
			return
		}
	}
}

// writer moves the guest's bytes from c.txbuf to the host socket and
// returns credit to the guest as the buffer drains.
func (v *Vsock) writer(c *conn) {
	defer v.connWG.Done()
	v.mu.Lock()
	defer v.mu.Unlock()
	halfClosed := false
	for {
		// Wait for bytes, or for a shutdown to act on: the first
		// SHUTDOWN(SEND), then the one that makes it both ways.
		for !c.closed && !c.needRST && len(c.txbuf) == 0 &&
			(c.gShut&ShutdownSend == 0 || halfClosed) && c.gShut != shutdownBoth {
			c.cond.Wait()
		}
		if c.closed || c.needRST {
			return
		}
		if len(c.txbuf) == 0 {
			// §5.10.6.6: the guest sends no more; pass that on, and
			// once it receives no more either, end the connection
			// with the RST the spec asks of the peer.
			if c.gShut&ShutdownSend != 0 && !halfClosed {
				halfClosed = true
				_ = c.sock.CloseWrite()
			}
			if c.gShut == shutdownBoth {
				v.resetLocked(c)
				return
			}
			continue
		}
		data := c.txbuf
		v.mu.Unlock()
		n, err := c.sock.Write(data)
		v.mu.Lock()
		if c.closed || c.needRST {
			return
		}
		// New bytes were appended behind data meanwhile; drop the ones
		// written and keep the rest.
		c.txbuf = append(c.txbuf[:0], c.txbuf[n:]...)
		c.fwdCnt += uint32(n)
		if err != nil {
			v.resetLocked(c)
			return
		}
		// Tell the guest about space it can use: at once when the buffer
		// drained, or after a quarter of it came free.
		if c.fwdCnt != c.sentFC && (len(c.txbuf) == 0 || c.fwdCnt-c.sentFC >= BufAlloc/4) {
			c.needCredit = true
			v.markReadyLocked(c)
		}
	}
}
