package net

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/tap"
)

func TestHeaderLayout(t *testing.T) {
	h := Header{Flags: 1, GSOType: 4, HdrLen: 0x0102, GSOSize: 0x0304, CSumStart: 0x0506, CSumOffset: 0x0708, NumBuffers: 0x090a}
	b := h.Bytes()
	assert.Equal(t, [HeaderSize]byte{1, 4, 2, 1, 4, 3, 6, 5, 8, 7, 0x0a, 9}, b)
	assert.Equal(t, h, ParseHeader(b))
}

func TestValidateTX(t *testing.T) {
	const all = FeatureCSUM | FeatureHostTSO4 | FeatureHostTSO6 | FeatureHostECN
	csum := func(start, off uint16) Header {
		return Header{Flags: FlagNeedsCSUM, CSumStart: start, CSumOffset: off}
	}
	tso := func(gso uint8) Header {
		return Header{Flags: FlagNeedsCSUM, GSOType: gso, HdrLen: 54, GSOSize: 1448, CSumStart: 34, CSumOffset: 16}
	}
	tests := []struct {
		name     string
		h        Header
		frameLen int
		features uint64
		want     error
	}{
		{"plain", Header{}, 1514, 0, nil},
		{"smallest frame", Header{}, 14, 0, nil},
		{"largest frame", Header{}, MaxFrameSize, 0, nil},
		{"num_buffers ignored", Header{NumBuffers: 9}, 100, 0, nil},
		{"runt", Header{}, 13, all, ErrFrameSize},
		{"empty", Header{}, 0, all, ErrFrameSize},
		{"oversized", Header{}, MaxFrameSize + 1, all, ErrFrameSize},
		{"partial checksum", csum(34, 16), 100, FeatureCSUM, nil},
		{"checksum ends at the frame end", csum(34, 64), 100, FeatureCSUM, nil},
		{"checksum past the end", csum(34, 65), 100, FeatureCSUM, ErrHeader},
		{"checksum start past the end", csum(0xffff, 0xffff), 100, FeatureCSUM, ErrHeader},
		{"NEEDS_CSUM not negotiated", csum(34, 16), 100, all &^ FeatureCSUM, ErrHeader},
		{"DATA_VALID", Header{Flags: FlagDataValid}, 100, all, ErrHeader},
		{"RSC_INFO", Header{Flags: FlagRSCInfo}, 100, all, ErrHeader},
		{"hdr_len = frame", Header{HdrLen: 100}, 100, 0, nil},
		{"hdr_len past the frame", Header{HdrLen: 101}, 100, 0, ErrHeader},
		{"TSO4", tso(GSOTCPv4), 65000, all, nil},
		{"TSO6", tso(GSOTCPv6), 65000, all, nil},
		{"TSO4 with ECN", tso(GSOTCPv4 | GSOECN), 65000, all, nil},
		{"TSO4 not negotiated", tso(GSOTCPv4), 65000, all &^ FeatureHostTSO4, ErrHeader},
		{"TSO6 not negotiated", tso(GSOTCPv6), 65000, all &^ FeatureHostTSO6, ErrHeader},
		{"ECN not negotiated", tso(GSOTCPv6 | GSOECN), 65000, all &^ FeatureHostECN, ErrHeader},
		{"ECN alone", Header{GSOType: GSOECN}, 100, all, ErrHeader},
		{"UFO", tso(GSOUDP), 65000, all, ErrHeader},
		{"USO", tso(GSOUDPL4), 65000, all, ErrHeader},
		{"unknown GSO", tso(9), 65000, all, ErrHeader},
		{"TSO without NEEDS_CSUM", Header{GSOType: GSOTCPv4, GSOSize: 1448}, 65000, all, ErrHeader},
		{"TSO with gso_size 0", Header{Flags: FlagNeedsCSUM, GSOType: GSOTCPv4, CSumStart: 34, CSumOffset: 16}, 65000, all, ErrHeader},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateTX(tc.h, tc.frameLen, tc.features)
			if tc.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}
}

func TestOffloads(t *testing.T) {
	tests := []struct {
		name     string
		features uint64
		want     uint
	}{
		{"none", 0, 0},
		{"host offloads only", FeatureCSUM | FeatureHostTSO4 | FeatureHostTSO6, 0},
		{"checksum", FeatureGuestCSUM, tap.OffloadCSUM},
		{"TSO", FeatureGuestCSUM | FeatureGuestTSO4 | FeatureGuestTSO6, tap.OffloadCSUM | tap.OffloadTSO4 | tap.OffloadTSO6},
		{"TSO and ECN", FeatureGuestCSUM | FeatureGuestTSO4 | FeatureGuestECN, tap.OffloadCSUM | tap.OffloadTSO4 | tap.OffloadTSOECN},
		// §5.1.3.1 dependencies: a feature without its prerequisite is ignored.
		{"TSO without GUEST_CSUM", FeatureGuestTSO4 | FeatureGuestTSO6, 0},
		{"ECN without TSO", FeatureGuestCSUM | FeatureGuestECN, tap.OffloadCSUM},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, offloads(tc.features), tc.name)
	}
}
