package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/devices/ratelimit"
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
	d, err = parseDisk("a.img,bw=1M,iops=100,ro")
	require.NoError(t, err)
	assert.Equal(t, machine.Disk{Path: "a.img", ReadOnly: true, RateLimit: ratelimit.Config{
		Bandwidth: ratelimit.Bucket{Size: 1 << 20, RefillTime: time.Second},
		Ops:       ratelimit.Bucket{Size: 100, RefillTime: time.Second}}}, d)
	d, err = parseDisk("a.img,bw=0")
	require.NoError(t, err)
	assert.True(t, d.RateLimit.Unlimited(), "bw=0 is unlimited")
	for _, bad := range []string{"", ",ro", "a.img,bogus", "a.img,bw=", "a.img,bw=fast", "a.img,bw=1.5M", "a.img,iops=-1", "a.img,ro=1", "a.img,bw=99999999999G"} {
		_, err := parseDisk(bad)
		assert.ErrorIs(t, err, errBadFlag, bad)
	}
}

func TestParseNIC(t *testing.T) {
	n, err := parseNIC("tap=tap0,mac=02:00:00:00:00:01")
	require.NoError(t, err)
	assert.Equal(t, "tap0", n.TAP)
	assert.Equal(t, "02:00:00:00:00:01", n.MAC.String())
	n, err = parseNIC("tap=tap0,rx-bw=2MiB/s,tx-iops=1000")
	require.NoError(t, err)
	assert.Equal(t, ratelimit.Config{Bandwidth: ratelimit.Bucket{Size: 2 << 20, RefillTime: time.Second}}, n.RXRateLimit)
	assert.Equal(t, ratelimit.Config{Ops: ratelimit.Bucket{Size: 1000, RefillTime: time.Second}}, n.TXRateLimit)
	n, err = parseNIC("tap=tap0,mrg-rxbuf=off")
	require.NoError(t, err)
	assert.True(t, n.NoMergeableRX)
	n, err = parseNIC("tap=tap0,bw=512K")
	require.NoError(t, err)
	assert.Equal(t, n.RXRateLimit, n.TXRateLimit)
	assert.Equal(t, uint64(512<<10), n.TXRateLimit.Bandwidth.Size)
	for _, bad := range []string{"", "tap=", "mac=02:00:00:00:00:01", "tap=x,mac=zz", "tap=x,mac=01:00:00:00:00:01",
		"tap=averyveryverylongname", "tap=x,speed=10", "tap=x,rx-bw=x", "tap=x,up-bw=1", "tap=x,mrg-rxbuf=no"} {
		_, err := parseNIC(bad)
		assert.ErrorIs(t, err, errBadFlag, bad)
	}
}

func TestParseEntropy(t *testing.T) {
	e, err := parseEntropy("on")
	require.NoError(t, err)
	assert.True(t, e.RateLimit.Unlimited())
	e, err = parseEntropy("bw=64K,iops=10")
	require.NoError(t, err)
	assert.Equal(t, ratelimit.Config{Bandwidth: ratelimit.Bucket{Size: 64 << 10, RefillTime: time.Second},
		Ops: ratelimit.Bucket{Size: 10, RefillTime: time.Second}}, e.RateLimit)
	for _, bad := range []string{"", "off", "bw=", "bw=1,speed=2"} {
		_, err := parseEntropy(bad)
		assert.ErrorIs(t, err, errBadFlag, bad)
	}
}

func TestParseVsock(t *testing.T) {
	v, err := parseVsock("cid=3,uds=/run/v.sock")
	require.NoError(t, err)
	assert.Equal(t, &machine.Vsock{GuestCID: 3, UDSPath: "/run/v.sock"}, v)
	v, err = parseVsock("uds_path=/a,guest_cid=4294967294")
	require.NoError(t, err)
	assert.Equal(t, uint64(4294967294), v.GuestCID)
	for _, bad := range []string{"", "cid=3", "uds=/a", "cid=2,uds=/a", "cid=x,uds=/a", "cid=4294967295,uds=/a", "cid=3,uds=/a,port=1"} {
		_, err := parseVsock(bad)
		assert.ErrorIs(t, err, errBadFlag, bad)
	}
}

func TestParseBalloon(t *testing.T) {
	b, err := parseBalloon("256")
	require.NoError(t, err)
	assert.Equal(t, &machine.Balloon{AmountMiB: 256}, b)
	b, err = parseBalloon("64M,deflate-on-oom,stats=5")
	require.NoError(t, err)
	assert.Equal(t, &machine.Balloon{AmountMiB: 64, DeflateOnOOM: true, StatsInterval: 5 * time.Second}, b)
	for _, bad := range []string{"", "x", "-1", "64,stats=0", "64,stats=x", "64,oom"} {
		_, err := parseBalloon(bad)
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

func TestParseShare(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "src")
	require.NoError(t, os.Mkdir(sub, 0o755))
	for _, tc := range []struct {
		in   string
		want machine.Share
	}{
		{sub, machine.Share{HostDir: sub, Tag: "src"}},
		{sub + "/", machine.Share{HostDir: sub + "/", Tag: "src"}},
		{sub + ":code,ro", machine.Share{HostDir: sub, Tag: "code", ReadOnly: true}},
		{sub + ",proto=fs", machine.Share{HostDir: sub, Tag: "src", VirtioFS: true}},
		{sub + ":x,proto=9p,ro", machine.Share{HostDir: sub, Tag: "x", P9: true, ReadOnly: true}},
		{"/", machine.Share{HostDir: "/", Tag: "share2"}},
	} {
		got, err := parseShare(tc.in, 2)
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
	for _, bad := range []string{"", ":tag", sub + ",rw", sub + ",proto=nfs", filepath.Join(dir, "missing"),
		sub + ":" + strings.Repeat("t", 37)} {
		_, err := parseShare(bad, 0)
		assert.ErrorIs(t, err, errBadFlag, bad)
	}
	f := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(f, nil, 0o644))
	_, err := parseShare(f, 0)
	assert.ErrorIs(t, err, errBadFlag, "a file is no share")
}
