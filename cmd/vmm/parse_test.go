package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/machine"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  bool
	}{
		{"512", 512 << 20, false},
		{"512M", 512 << 20, false},
		{"512MiB", 512 << 20, false},
		{"2G", 2 << 30, false},
		{"2g", 2 << 30, false},
		{"65536K", 64 << 20, false},
		{"1T", 1 << 40, false},
		{"0", 0, false},
		{"", 0, true},
		{"M", 0, true},
		{"-1G", 0, true},
		{"1.5G", 0, true},
		{"99999999999999999999T", 0, true},
		{"17179869184T", 0, true},
	} {
		got, err := parseSize(tc.in)
		if tc.err {
			assert.ErrorIs(t, err, errBadFlag, tc.in)
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestParseDisk(t *testing.T) {
	d, err := parseDisk("/img/root.ext4,ro")
	require.NoError(t, err)
	assert.Equal(t, machine.Disk{Path: "/img/root.ext4", ReadOnly: true}, d)
	d, err = parseDisk("path=a.img")
	require.NoError(t, err)
	assert.Equal(t, machine.Disk{Path: "a.img"}, d)
	for _, bad := range []string{"", ",ro", "a.img,bogus"} {
		_, err := parseDisk(bad)
		assert.ErrorIs(t, err, errBadFlag, bad)
	}
}

func TestParseNIC(t *testing.T) {
	n, err := parseNIC("tap=tap0,mac=02:00:00:00:00:01")
	require.NoError(t, err)
	assert.Equal(t, "tap0", n.TAP)
	assert.Equal(t, "02:00:00:00:00:01", n.MAC.String())
	for _, bad := range []string{"", "tap=", "mac=02:00:00:00:00:01", "tap=x,mac=zz", "tap=x,mac=01:00:00:00:00:01",
		"tap=averyveryverylongname", "tap=x,speed=10"} {
		_, err := parseNIC(bad)
		assert.ErrorIs(t, err, errBadFlag, bad)
	}
}

func TestParseOnReboot(t *testing.T) {
	a, err := parseOnReboot("restart")
	require.NoError(t, err)
	assert.Equal(t, machine.RebootRestart, a)
	_, err = parseOnReboot("reboot")
	assert.ErrorIs(t, err, errBadFlag)
}
