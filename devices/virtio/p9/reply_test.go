package p9

import (
	"encoding/binary"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func rmessage(typ byte, body string) []byte {
	m := binary.LittleEndian.AppendUint32(nil, uint32(headerLen+len(body)))
	m = append(m, typ, 1, 0)
	return append(m, body...)
}

func TestReplyWriterFramesPieces(t *testing.T) {
	w := newReplyWriter()
	m := rmessage(msgRversion, "payload bytes")
	// The server writes a header, a body and a payload separately.
	for _, piece := range [][]byte{m[:headerLen], m[headerLen:10], m[10:]} {
		n, err := w.Write(piece)
		require.NoError(t, err)
		require.Equal(t, len(piece), n)
	}
	got, err := w.next()
	require.NoError(t, err)
	assert.Equal(t, m, got)
	w.recycle(got)

	// Two replies in one write, the second reusing the recycled buffer.
	a, b := rmessage(msgRlerror, "abcd"), rmessage(msgRflush, "")
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = w.Write(append(append([]byte(nil), a...), b...))
	}()
	got, err = w.next()
	require.NoError(t, err)
	assert.Equal(t, a, got)
	w.recycle(got) // must not wait for the writer, which waits for us
	got2, err := w.next()
	require.NoError(t, err)
	assert.Equal(t, b, got2)
	<-done
}

func TestReplyWriterRefusesUnframable(t *testing.T) {
	w := newReplyWriter()
	_, err := w.Write([]byte{3, 0, 0, 0, 1, 2, 3})
	require.NoError(t, err)
	_, err = w.next()
	require.ErrorIs(t, err, ErrServer)
	// Later bytes cannot be framed either: nothing more is delivered.
	_, err = w.Write(rmessage(msgRflush, ""))
	require.NoError(t, err)
	select {
	case r := <-w.ready:
		t.Fatalf("delivered %v after a broken frame", r)
	default:
	}
}

func TestReplyWriterShut(t *testing.T) {
	w := newReplyWriter()
	done := make(chan error)
	go func() {
		_, err := w.next()
		done <- err
	}()
	require.NoError(t, w.Close())
	require.ErrorIs(t, <-done, ErrServer)
	_, err := w.Write(rmessage(msgRflush, ""))
	require.ErrorIs(t, err, io.ErrClosedPipe)
	w.shut() // twice is fine
}
