package tap_test

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/tap"
)

// needTUN skips tests that create interfaces unless this process may.
func needTUN(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_NET_ADMIN) to create TAP interfaces")
	}
	if _, err := os.Stat(tap.TUNPath); err != nil {
		t.Skipf("no %s: %v", tap.TUNPath, err)
	}
	d, err := tap.Open("")
	if errors.Is(err, tap.ErrPermission) || errors.Is(err, tap.ErrNoTUN) {
		t.Skipf("cannot create TAP interfaces here: %v", err)
	}
	require.NoError(t, err)
	require.NoError(t, d.Close())
}

// tapName returns a name unique to this process, so that concurrent test
// runs on one host do not collide.
func tapName(suffix string) string {
	return fmt.Sprintf("vmmt%d%s", os.Getpid(), suffix)
}

func exists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// waitGone waits for the kernel to unregister an interface; it does so
// asynchronously after the last descriptor closes.
func waitGone(t *testing.T, name string) {
	t.Helper()
	require.Eventually(t, func() bool { return !exists(name) }, 5*time.Second, 10*time.Millisecond,
		"%s still exists after Close", name)
}

func TestOpenCreatesUpTAP(t *testing.T) {
	needTUN(t)
	name := tapName("a")
	require.False(t, exists(name), "%s left over from an earlier run", name)
	d, err := tap.Open(name)
	require.NoError(t, err)
	assert.Equal(t, name, d.Name())
	assert.True(t, d.Created())
	assert.Positive(t, d.Fd())

	up, err := tap.IsUp(name)
	require.NoError(t, err)
	assert.True(t, up, "Open brings a TAP it created up")

	flags, err := d.Flags()
	require.NoError(t, err)
	assert.Equal(t, uint16(unix.IFF_TAP|unix.IFF_NO_PI|unix.IFF_VNET_HDR), flags&(unix.IFF_TAP|unix.IFF_NO_PI|unix.IFF_VNET_HDR|unix.IFF_TUN))
	assert.Zero(t, flags&unix.IFF_PERSIST, "not persistent: it goes with the descriptor")

	require.NoError(t, d.SetVnetHdrSize(tap.VnetHdrSize))
	require.NoError(t, d.SetOffload(tap.OffloadCSUM|tap.OffloadTSO4|tap.OffloadTSO6|tap.OffloadTSOECN))
	require.NoError(t, d.SetOffload(0))

	// A single-queue TAP has one reader at a time.
	_, err = tap.Open(name)
	require.ErrorIs(t, err, tap.ErrBusy)

	require.NoError(t, d.Close())
	waitGone(t, name)
}

func TestOpenKernelNamed(t *testing.T) {
	needTUN(t)
	d, err := tap.Open("")
	require.NoError(t, err)
	assert.NotEmpty(t, d.Name())
	assert.True(t, exists(d.Name()))
	require.NoError(t, d.Close())
	waitGone(t, d.Name())
}

// A persistent TAP made beforehand (as `ip tuntap add` does) is attached
// to, not created, and survives Close.
func TestOpenExistingPersistentTAP(t *testing.T) {
	needTUN(t)
	name := tapName("p")
	maker, err := tap.Open(name)
	require.NoError(t, err)
	require.NoError(t, setPersist(maker, true))
	require.NoError(t, maker.Close())
	t.Cleanup(func() {
		d, err := tap.Open(name)
		if err == nil {
			_ = setPersist(d, false)
			_ = d.Close()
		}
	})
	require.True(t, exists(name))

	d, err := tap.Open(name)
	require.NoError(t, err)
	assert.False(t, d.Created())
	require.NoError(t, d.Close())
	require.True(t, exists(name), "an existing persistent TAP stays")
}

func setPersist(d *tap.Device, on bool) error {
	v := 0
	if on {
		v = 1
	}
	return unix.IoctlSetInt(d.Fd(), unix.TUNSETPERSIST, v)
}

func TestOpenNotTAP(t *testing.T) {
	needTUN(t)
	_, err := tap.Open("lo")
	require.ErrorIs(t, err, tap.ErrNotTAP)
	assert.Contains(t, err.Error(), `"lo"`)
	assert.True(t, exists("lo"))
}

func TestOpenBadName(t *testing.T) {
	for _, name := range []string{"averyveryverylongname", "a/b"} {
		_, err := tap.Open(name)
		require.ErrorIs(t, err, tap.ErrName, name)
	}
}

// Frames written to the TAP by the host stack arrive with a vnet header;
// a frame written by us with a header is accepted whole.
func TestFrameRoundTrip(t *testing.T) {
	needTUN(t)
	d, err := tap.Open(tapName("f"))
	require.NoError(t, err)
	defer func() { require.NoError(t, d.Close()) }()

	// An Ethernet broadcast ARP request: the kernel accepts it from the
	// TAP (one writev: header + frame).
	hdr := make([]byte, tap.VnetHdrSize)
	frame := make([]byte, 42)
	copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x06})
	n, err := unix.Writev(d.Fd(), [][]byte{hdr, frame})
	require.NoError(t, err)
	assert.Equal(t, len(hdr)+len(frame), n)

	// Nothing has been sent towards the TAP yet, or only IPv6 noise: a
	// read either finds nothing (EAGAIN: non-blocking) or one frame that
	// starts after the 12-byte header.
	buf := make([]byte, 65562)
	n, err = unix.Read(d.Fd(), buf)
	if err != nil {
		require.ErrorIs(t, err, unix.EAGAIN)
	} else {
		assert.Greater(t, n, tap.VnetHdrSize+14)
	}
}
