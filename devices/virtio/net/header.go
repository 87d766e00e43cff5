package net

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderSize is the size of struct virtio_net_hdr with num_buffers, which
// VIRTIO_F_VERSION_1 makes always present (virtio 1.2 §5.1.6). The TAP
// uses the same layout (IFF_VNET_HDR, TUNSETVNETHDRSZ 12).
const HeaderSize = 12

// MaxFrameSize is the largest frame after the header: the 65562-byte
// receive buffer of virtio 1.2 §5.1.6.3.1 less the header; a 64 KiB TSO
// frame plus its Ethernet header fits.
const MaxFrameSize = 65562 - HeaderSize

// minFrameSize is an Ethernet header: the TAP refuses anything shorter.
const minFrameSize = 14

// Header flags (virtio 1.2 §5.1.6).
const (
	FlagNeedsCSUM uint8 = 1 // VIRTIO_NET_HDR_F_NEEDS_CSUM
	FlagDataValid uint8 = 2 // VIRTIO_NET_HDR_F_DATA_VALID
	FlagRSCInfo   uint8 = 4 // VIRTIO_NET_HDR_F_RSC_INFO
)

// GSO types (virtio 1.2 §5.1.6).
const (
	GSONone  uint8 = 0    // VIRTIO_NET_HDR_GSO_NONE
	GSOTCPv4 uint8 = 1    // VIRTIO_NET_HDR_GSO_TCPV4
	GSOUDP   uint8 = 3    // VIRTIO_NET_HDR_GSO_UDP
	GSOTCPv6 uint8 = 4    // VIRTIO_NET_HDR_GSO_TCPV6
	GSOUDPL4 uint8 = 5    // VIRTIO_NET_HDR_GSO_UDP_L4
	GSOECN   uint8 = 0x80 // VIRTIO_NET_HDR_GSO_ECN
)

// Offsets in the header.
const (
	hdrFlags      = 0
	hdrNumBuffers = 10
)

// Errors for transmitted frames the device drops; they are counted in
// Stats, never returned to the driver (TX has no status).
var (
	// ErrHeader: a header the negotiated features do not allow, or whose
	// offsets point outside the frame.
	ErrHeader = errors.New("invalid virtio-net header")
	// ErrFrameSize: a frame shorter than an Ethernet header or longer
	// than MaxFrameSize.
	ErrFrameSize = errors.New("invalid frame size")
)

// Header is struct virtio_net_hdr (virtio 1.2 §5.1.6), little-endian.
type Header struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CSumStart  uint16
	CSumOffset uint16
	NumBuffers uint16
}

// ParseHeader decodes the first HeaderSize bytes of b.
func ParseHeader(b [HeaderSize]byte) Header {
	return Header{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.LittleEndian.Uint16(b[2:]),
		GSOSize:    binary.LittleEndian.Uint16(b[4:]),
		CSumStart:  binary.LittleEndian.Uint16(b[6:]),
		CSumOffset: binary.LittleEndian.Uint16(b[8:]),
		NumBuffers: binary.LittleEndian.Uint16(b[10:]),
	}
}

// Bytes encodes h.
func (h Header) Bytes() [HeaderSize]byte {
	var b [HeaderSize]byte
	b[0], b[1] = h.Flags, h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CSumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CSumOffset)
	binary.LittleEndian.PutUint16(b[10:], h.NumBuffers)
	return b
}

// ValidateTX checks the header of a frame of frameLen bytes (after the
// header) that the driver transmits with the negotiated features, against
// virtio 1.2 §5.1.6.2.1. The kernel checks again what it uses; this keeps
// nonsense away from it and tells the operator which rule broke.
func ValidateTX(h Header, frameLen int, features uint64) error {
	if frameLen < minFrameSize || frameLen > MaxFrameSize {
		return fmt.Errorf("%w: %d bytes (%d to %d)", ErrFrameSize, frameLen, minFrameSize, MaxFrameSize)
	}
	// §5.1.6.2.1: DATA_VALID and RSC_INFO are for received frames only.
	if h.Flags&^FlagNeedsCSUM != 0 {
		return fmt.Errorf("%w: flags %#x (only NEEDS_CSUM may be set on transmit)", ErrHeader, h.Flags)
	}
	if h.Flags&FlagNeedsCSUM != 0 {
		if features&FeatureCSUM == 0 {
			return fmt.Errorf("%w: NEEDS_CSUM without VIRTIO_NET_F_CSUM", ErrHeader)
		}
		if end := uint32(h.CSumStart) + uint32(h.CSumOffset) + 2; end > uint32(frameLen) {
			return fmt.Errorf("%w: checksum at %d+%d past the %d-byte frame", ErrHeader, h.CSumStart, h.CSumOffset, frameLen)
		}
	}
	if int(h.HdrLen) > frameLen {
		return fmt.Errorf("%w: hdr_len %d past the %d-byte frame", ErrHeader, h.HdrLen, frameLen)
	}
	return validateGSO(h, features)
}

func validateGSO(h Header, features uint64) error {
	gso, ecn := h.GSOType&^GSOECN, h.GSOType&GSOECN != 0
	var need uint64
	switch gso {
	case GSONone:
		if ecn {
			return fmt.Errorf("%w: GSO_ECN without a GSO type", ErrHeader)
		}
		return nil
	case GSOTCPv4:
		need = FeatureHostTSO4
	case GSOTCPv6:
		need = FeatureHostTSO6
	default:
		return fmt.Errorf("%w: gso_type %#x not offered", ErrHeader, h.GSOType)
	}
	switch {
	case features&need == 0:
		return fmt.Errorf("%w: gso_type %#x not negotiated", ErrHeader, h.GSOType)
	case ecn && features&FeatureHostECN == 0:
		return fmt.Errorf("%w: GSO_ECN without VIRTIO_NET_F_HOST_ECN", ErrHeader)
	// §5.1.6.2.1: segmentation needs the checksum offload and a size.
	case h.Flags&FlagNeedsCSUM == 0:
		return fmt.Errorf("%w: gso_type %#x without NEEDS_CSUM", ErrHeader, h.GSOType)
	case h.GSOSize == 0:
		return fmt.Errorf("%w: gso_type %#x with gso_size 0", ErrHeader, h.GSOType)
	}
	return nil
}
