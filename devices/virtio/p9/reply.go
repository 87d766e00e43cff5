package p9

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
)

// replyWriter takes the server's R-messages. The server writes each one
// in pieces (header, body, payload) under its send lock; the writer frames
// them by their size[4] and hands each over whole, so the worker waits
// once per reply, and the server never waits for the worker. (Through an
// io.Pipe, each piece was a rendezvous of the two goroutines: under a
// nested guest every wake-up of a parked goroutine costs a host
// round trip.)
type replyWriter struct {
	mu     sync.Mutex
	buf    []byte      // the message being written
	spares chan []byte // buffers the worker gave back, for later messages
	broken error       // set once a reply cannot be framed; later bytes are dropped
	ready  chan rmsg
	closed chan struct{}
	once   sync.Once
}

type rmsg struct {
	msg []byte
	err error
}

func newReplyWriter() *replyWriter {
	// One reply is outstanding at most: chains are served one at a time
	// and the server answers each T-message once.
	return &replyWriter{ready: make(chan rmsg, 1), spares: make(chan []byte, 1), closed: make(chan struct{})}
}

// Write implements io.Writer for the server.
func (w *replyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case <-w.closed:
		return 0, io.ErrClosedPipe
	default:
	}
	if w.broken != nil {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	for len(w.buf) >= 4 {
		size := binary.LittleEndian.Uint32(w.buf)
		if size < headerLen || size > MaxMessage+headerLen {
			// The stream cannot be framed again: fail the session.
			w.broken = fmt.Errorf("%w: reply of %d bytes", ErrServer, size)
			w.buf = w.buf[:0]
			w.deliver(rmsg{err: w.broken})
			return len(p), nil
		}
		if uint32(len(w.buf)) < size {
			break
		}
		msg, rest := w.buf[:size:size], w.buf[size:]
		var next []byte
		select {
		case next = <-w.spares:
		default:
		}
		w.buf = append(next[:0], rest...)
		w.deliver(rmsg{msg: msg})
	}
	return len(p), nil
}

// deliver hands r to the worker, or drops it once the session is shut.
// It runs with w.mu held; the channel's one slot is free whenever the
// server answers, since the worker takes each reply before it sends the
// next T-message.
func (w *replyWriter) deliver(r rmsg) {
	select {
	case w.ready <- r:
	case <-w.closed:
	}
}

// next waits for the server's next R-message; the caller gives it back
// with recycle once it is copied out.
func (w *replyWriter) next() ([]byte, error) {
	select {
	case r := <-w.ready:
		return r.msg, r.err
	case <-w.closed:
		return nil, fmt.Errorf("%w: connection closed", ErrServer)
	}
}

// recycle keeps msg's storage for a later reply. It never waits: Write
// may hold the lock while it waits for the worker to take a reply.
func (w *replyWriter) recycle(msg []byte) {
	if msg == nil {
		return
	}
	select {
	case w.spares <- msg[:0]:
	default:
	}
}

// shut ends the session's replies: a waiting next returns an error, later
// writes fail.
func (w *replyWriter) shut() { w.once.Do(func() { close(w.closed) }) }

// Close implements io.Closer for the server.
func (w *replyWriter) Close() error {
	w.shut()
	return nil
}
