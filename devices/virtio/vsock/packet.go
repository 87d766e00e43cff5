package vsock

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderSize is the size of struct virtio_vsock_hdr (virtio 1.2 §5.10.6).
const HeaderSize = 44

// Field offsets in struct virtio_vsock_hdr: le64 src_cid, le64 dst_cid,
// le32 src_port, le32 dst_port, le32 len, le16 type, le16 op, le32 flags,
// le32 buf_alloc, le32 fwd_cnt.
const (
	offSrcCID   = 0
	offDstCID   = 8
	offSrcPort  = 16
	offDstPort  = 20
	offLen      = 24
	offType     = 28
	offOp       = 30
	offFlags    = 32
	offBufAlloc = 36
	offFwdCnt   = 40
)

// TypeStream is VIRTIO_VSOCK_TYPE_STREAM, the only socket type offered
// (VIRTIO_VSOCK_F_SEQPACKET is not).
const TypeStream uint16 = 1

// Op is a packet's operation (virtio 1.2 §5.10.6).
type Op uint16

// Operations.
const (
	OpInvalid       Op = 0
	OpRequest       Op = 1
	OpResponse      Op = 2
	OpRST           Op = 3
	OpShutdown      Op = 4
	OpRW            Op = 5
	OpCreditUpdate  Op = 6
	OpCreditRequest Op = 7
)

func (o Op) String() string {
	switch o {
	case OpRequest:
		return "REQUEST"
	case OpResponse:
		return "RESPONSE"
	case OpRST:
		return "RST"
	case OpShutdown:
		return "SHUTDOWN"
	case OpRW:
		return "RW"
	case OpCreditUpdate:
		return "CREDIT_UPDATE"
	case OpCreditRequest:
		return "CREDIT_REQUEST"
	}
	return fmt.Sprintf("op %d", uint16(o))
}

// SHUTDOWN flags (virtio 1.2 §5.10.6.6): the sender will receive, or
// send, no more data.
const (
	ShutdownRCV  uint32 = 1
	ShutdownSend uint32 = 2
	shutdownBoth        = ShutdownRCV | ShutdownSend
)

// HostCID is the well-known CID of the host (VMADDR_CID_HOST).
const HostCID = 2

// MaxPayload bounds one packet's payload: Linux sends at most 64 KiB
// (VIRTIO_VSOCK_MAX_PKT_BUF_SIZE).
const MaxPayload = 64 << 10

// ErrHeader: a packet shorter than its header, or whose payload is
// longer than its buffers or MaxPayload.
var ErrHeader = errors.New("malformed vsock packet")

// Header is a struct virtio_vsock_hdr, decoded.
type Header struct {
	SrcCID, DstCID   uint64
	SrcPort, DstPort uint32
	Len              uint32
	Type             uint16
	Op               Op
	Flags            uint32
	BufAlloc, FwdCnt uint32
}

// ParseHeader decodes b, which must hold at least HeaderSize bytes.
func ParseHeader(b []byte) Header {
	_ = b[HeaderSize-1]
	le := binary.LittleEndian
	return Header{
		SrcCID: le.Uint64(b[offSrcCID:]), DstCID: le.Uint64(b[offDstCID:]),
		SrcPort: le.Uint32(b[offSrcPort:]), DstPort: le.Uint32(b[offDstPort:]),
		Len: le.Uint32(b[offLen:]), Type: le.Uint16(b[offType:]), Op: Op(le.Uint16(b[offOp:])),
		Flags: le.Uint32(b[offFlags:]), BufAlloc: le.Uint32(b[offBufAlloc:]), FwdCnt: le.Uint32(b[offFwdCnt:]),
	}
}

// Put encodes h into b, which must hold at least HeaderSize bytes.
func (h Header) Put(b []byte) {
	_ = b[HeaderSize-1]
	le := binary.LittleEndian
	le.PutUint64(b[offSrcCID:], h.SrcCID)
	le.PutUint64(b[offDstCID:], h.DstCID)
	le.PutUint32(b[offSrcPort:], h.SrcPort)
	le.PutUint32(b[offDstPort:], h.DstPort)
	le.PutUint32(b[offLen:], h.Len)
	le.PutUint16(b[offType:], h.Type)
	le.PutUint16(b[offOp:], uint16(h.Op))
	le.PutUint32(b[offFlags:], h.Flags)
	le.PutUint32(b[offBufAlloc:], h.BufAlloc)
	le.PutUint32(b[offFwdCnt:], h.FwdCnt)
}

// Bytes returns h encoded.
func (h Header) Bytes() [HeaderSize]byte {
	var b [HeaderSize]byte
	h.Put(b[:])
	return b
}

// readPacket copies a packet's header out of the device-readable buffers
// bufs (split in any way, §2.7.4.1) and returns it with the payload's
// buffers, hdr.Len bytes in all, still aliasing guest memory. The scratch
// slice is reused for the result.
func readPacket(bufs [][]byte, scratch [][]byte) (Header, [][]byte, error) {
	var raw [HeaderSize]byte
	got := 0
	payload := scratch[:0]
	var total uint64
	for _, b := range bufs {
		k := copy(raw[got:], b)
		got += k
		if k < len(b) {
			payload = append(payload, b[k:])
			total += uint64(len(b) - k)
		}
	}
	if got < HeaderSize {
		return Header{}, nil, fmt.Errorf("%w: %d bytes, header is %d", ErrHeader, got, HeaderSize)
	}
	h := ParseHeader(raw[:])
	if h.Len > MaxPayload {
		return h, nil, fmt.Errorf("%w: %v payload of %d bytes (at most %d)", ErrHeader, h.Op, h.Len, MaxPayload)
	}
	if uint64(h.Len) > total {
		return h, nil, fmt.Errorf("%w: %v says %d payload bytes, the chain holds %d", ErrHeader, h.Op, h.Len, total)
	}
	// Trim the payload to what the header says.
	left := uint64(h.Len)
	for i, b := range payload {
		if uint64(len(b)) >= left {
			payload[i] = b[:left]
			payload = payload[:i+1]
			break
		}
		left -= uint64(len(b))
	}
	if h.Len == 0 {
		payload = payload[:0]
	}
	return h, payload, nil
}

// writePacket scatters the header and then payload into the
// device-writable buffers, which must hold HeaderSize+len(payload)
// bytes, and returns the bytes written.
func writePacket(bufs [][]byte, h Header, payload []byte) uint32 {
	raw := h.Bytes()
	src := [2][]byte{raw[:], payload}
	var n uint32
	i := 0
	for _, b := range bufs {
		for len(b) > 0 && i < len(src) {
			k := copy(b, src[i])
			b, src[i] = b[k:], src[i][k:]
			n += uint32(k)
			if len(src[i]) == 0 {
				i++
			}
		}
		if i == len(src) {
			break
		}
	}
	return n
}
