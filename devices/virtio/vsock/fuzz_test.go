package vsock

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"testing"
)

// FuzzReadPacket splits the input into device-readable buffers at the
// cut points its first bytes give and parses a packet from them: nothing
// may panic, and an accepted packet's payload is exactly its len.
func FuzzReadPacket(f *testing.F) {
	h := Header{SrcCID: 3, DstCID: 2, SrcPort: 1, DstPort: 2, Type: TypeStream, Op: OpRW, Len: 5, BufAlloc: 4096}
	raw := h.Bytes()
	f.Add([]byte{0, 0}, append(raw[:], "hello"...))
	f.Add([]byte{10, 40}, append(raw[:], "hello!!"...))
	h.Len = 1 << 20
	raw = h.Bytes()
	f.Add([]byte{44}, raw[:])
	f.Add([]byte{}, []byte("short"))
	f.Fuzz(func(t *testing.T, cuts, data []byte) {
		var bufs [][]byte
		rest := data
		for _, c := range cuts {
			n := min(int(c), len(rest))
			bufs = append(bufs, rest[:n])
			rest = rest[n:]
		}
		bufs = append(bufs, rest)
		h, payload, err := readPacket(bufs, nil)
		if err != nil {
			return
		}
		var n int
		for _, p := range payload {
			n += len(p)
		}
		if n != int(h.Len) || h.Len > MaxPayload || len(data) < HeaderSize+n {
			t.Fatalf("payload %d bytes for len %d from %d bytes", n, h.Len, len(data))
		}
		if got := ParseHeader(data); got != h {
			t.Fatalf("header %+v, want %+v", h, got)
		}
		var out [HeaderSize + 64]byte
		w := writePacket([][]byte{out[:7], out[7:]}, h, nil)
		if w != HeaderSize || ParseHeader(out[:]) != h {
			t.Fatalf("round trip: wrote %d bytes, %+v", w, ParseHeader(out[:]))
		}
	})
}

// FuzzPackets feeds a stream of guest packets (each a header, its
// source CID set to the guest's when the op byte's top bit is clear,
// then len payload bytes) to the device's packet handling, draining the
// packets it owes the guest after each. Nothing may panic, no
// connection may buffer more than it advertised, and the table stays
// bounded.
func FuzzPackets(f *testing.F) {
	pkt := func(op Op, src, dst uint32, flags uint32, payload string) []byte {
		h := Header{SrcCID: 3, DstCID: HostCID, SrcPort: src, DstPort: dst, Type: TypeStream, Op: op,
			Len: uint32(len(payload)), Flags: flags, BufAlloc: 1 << 16}
		raw := h.Bytes()
		return append(raw[:], payload...)
	}
	cat := func(ps ...[]byte) []byte {
		var b []byte
		for _, p := range ps {
			b = append(b, p...)
		}
		return b
	}
	f.Add(pkt(OpRequest, 1, 80, 0, ""))
	f.Add(cat(pkt(OpRequest, 1, 80, 0, ""), pkt(OpRW, 1, 80, 0, "data"), pkt(OpShutdown, 1, 80, 3, ""), pkt(OpRST, 1, 80, 0, "")))
	f.Add(cat(pkt(OpRW, 5, 6, 0, "nobody"), pkt(OpCreditRequest, 5, 6, 0, ""), pkt(OpResponse, 5, 6, 0, "")))
	f.Add(cat(pkt(OpCreditUpdate, 1, 2, 0, ""), pkt(99, 1, 2, 0, "")))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := New(Config{GuestCID: 3, UDSPath: filepath.Join(dir, "f.sock")})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
		}()
		out := make([]byte, HeaderSize+4096)
		for len(data) >= HeaderSize {
			var raw [HeaderSize]byte
			copy(raw[:], data)
			if raw[offOp+1]&0x80 == 0 {
				binary.LittleEndian.PutUint64(raw[offSrcCID:], 3)
				binary.LittleEndian.PutUint64(raw[offDstCID:], HostCID)
			}
			h := ParseHeader(raw[:])
			data = data[HeaderSize:]
			n := min(int(h.Len), len(data))
			h.Len = uint32(n)
			payload := [][]byte{data[:n]}
			data = data[n:]
			v.mu.Lock()
			v.packetFromGuestLocked(h, payload)
			for len(v.control) > 0 || len(v.ready) > 0 {
				if len(v.control) > 0 {
					v.control = v.control[1:]
					continue
				}
				c := v.ready[0]
				v.ready = v.ready[1:]
				c.queued = false
				if !c.closed && c.hasWork() {
					v.packetLocked(c, [][]byte{out}, uint64(len(out)-HeaderSize))
				}
			}
			bad := ""
			for _, c := range v.conns {
				if len(c.txbuf) > BufAlloc {
					bad = fmt.Sprintf("connection %v buffers %d bytes", c.key, len(c.txbuf))
				}
			}
			if len(v.conns) > maxConns {
				bad = fmt.Sprintf("%d connections", len(v.conns))
			}
			v.mu.Unlock()
			if bad != "" {
				t.Fatal(bad)
			}
		}
	})
}
