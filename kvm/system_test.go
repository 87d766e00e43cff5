package kvm

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestOpenMissingDevice(t *testing.T) {
	_, err := openDevice(filepath.Join(t.TempDir(), "kvm"))
	require.ErrorIs(t, err, ErrNoKVM)
	require.ErrorIs(t, err, unix.ENOENT)
	assert.Contains(t, err.Error(), "kvm_intel")
	assert.Contains(t, err.Error(), "firmware")
}

func TestOpenNotKVM(t *testing.T) {
	// /dev/null opens, but answers KVM_GET_API_VERSION with ENOTTY.
	_, err := openDevice("/dev/null")
	require.ErrorIs(t, err, ErrIoctl)
	require.ErrorIs(t, err, unix.ENOTTY)
	assert.Contains(t, err.Error(), "KVM_GET_API_VERSION")
}

func TestOpenHint(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{unix.EACCES, "kvm group"},
		{unix.EPERM, "kvm group"},
		{unix.ENOENT, "kvm_amd"},
		{unix.ENXIO, "enable virtualization"},
		{unix.EIO, "kvm module"},
	}
	for _, tt := range tests {
		assert.Contains(t, openHint(tt.err), tt.want, "%v", tt.err)
	}
}

func TestSystemQueries(t *testing.T) {
	sys := openSystem(t)

	v, err := sys.APIVersion()
	require.NoError(t, err)
	assert.Equal(t, StableAPIVersion, v)

	for _, c := range []Cap{CapUserMemory, CapIRQChip, CapIRQFD, CapIOEventFD, CapSetTSSAddr, CapImmediateExit} {
		n, err := sys.CheckExtension(c)
		require.NoError(t, err)
		assert.Positive(t, n, "%v", c)
	}

	size, err := sys.VCPUMmapSize()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, size, sizeofRun)

	maxVCPUs, err := sys.MaxVCPUs()
	require.NoError(t, err)
	assert.GreaterOrEqual(t, maxVCPUs, 1)
}

func TestSupportedCPUID(t *testing.T) {
	sys := openSystem(t)
	entries, err := sys.SupportedCPUID()
	require.NoError(t, err)
	require.NotEmpty(t, entries)
	assert.Equal(t, uint32(0), entries[0].Function, "leaf 0 comes first")
	assert.Positive(t, entries[0].EAX, "leaf 0 reports the highest basic leaf")

	// Starting from one entry exercises the grow-on-E2BIG path.
	grown, err := sys.supportedCPUID(1)
	require.NoError(t, err)
	assert.Equal(t, entries, grown)
}

func TestMSRIndexList(t *testing.T) {
	list, err := openSystem(t).MSRIndexList()
	require.NoError(t, err)
	assert.Contains(t, list, uint32(0x174), "IA32_SYSENTER_CS is always saved")
}

func TestSystemClosed(t *testing.T) {
	sys := openOrSkip(t)
	require.NoError(t, sys.Close())
	require.NoError(t, sys.Close(), "closing twice is harmless")
	_, err := sys.CreateVM()
	require.ErrorIs(t, err, ErrClosed)
}

func TestCreateVMOutlivesSystem(t *testing.T) {
	sys := openOrSkip(t)
	vm, err := sys.CreateVM()
	require.NoError(t, err)
	require.NoError(t, sys.Close())
	defer func() { require.NoError(t, vm.Close()) }()
	c, err := vm.CreateVCPU(0)
	require.NoError(t, err)
	require.NoError(t, c.Close())
}
