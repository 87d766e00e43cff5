package machine

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestShareProtocols(t *testing.T) {
	for _, tc := range []struct {
		share Share
		want  []shareProtocol
	}{
		{Share{}, []shareProtocol{protoVirtioFS, protoP9}},
		{Share{VirtioFS: true}, []shareProtocol{protoVirtioFS}},
		{Share{P9: true}, []shareProtocol{protoP9}},
		{Share{VirtioFS: true, P9: true}, []shareProtocol{protoVirtioFS, protoP9}},
	} {
		assert.Equal(t, tc.want, tc.share.protocols(), "%+v", tc.share)
	}
}

func TestValidateShares(t *testing.T) {
	good := Config{Kernel: "k", Shares: []Share{{HostDir: "/a", Tag: "a"}, {HostDir: "/b", Tag: "b", P9: true}}}.withDefaults()
	require.NoError(t, good.validate(8))
	assert.Equal(t, 3, good.virtioDevices(), "a share without proto= is two devices")
	for name, shares := range map[string][]Share{
		"no tag":        {{HostDir: "/a"}},
		"long tag":      {{HostDir: "/a", Tag: "0123456789012345678901234567890123456"}},
		"duplicate tag": {{HostDir: "/a", Tag: "x"}, {HostDir: "/b", Tag: "x"}},
	} {
		c := good
		c.Shares = shares
		assert.ErrorIs(t, c.validate(8), ErrConfig, name)
	}
	c := good
	c.Disks = make([]Disk, MaxDevices-2)
	assert.ErrorContains(t, c.validate(8), "virtio devices", "shares count against the MMIO slots")
}
