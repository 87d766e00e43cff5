package guestkernel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigKeyIgnoresCommentsAndOrder(t *testing.T) {
	a := ConfigKey("r", []byte("# comment\nCONFIG_A=y\n\nCONFIG_B=y\n"))
	b := ConfigKey("r", []byte("CONFIG_B=y\n# other comment\nCONFIG_A=y\n"))
	c := ConfigKey("r", []byte("CONFIG_A=y\nCONFIG_B=n\n"))
	d := ConfigKey("other recipe", []byte("CONFIG_A=y\nCONFIG_B=y\n"))
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, c)
	assert.NotEqual(t, a, d)
	assert.Len(t, a, 12)
}

func TestUnmetSettings(t *testing.T) {
	fragment := "# x\nCONFIG_A=y\nCONFIG_B=y\nCONFIG_C=8\n"
	config := "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=8\n"
	assert.Equal(t, []string{"CONFIG_B=y"}, UnmetSettings(fragment, config))
}

func TestSetOptions(t *testing.T) {
	config := "CONFIG_VIRTIO_MMIO_X=y\n# CONFIG_VIRTIO_MMIO is not set\nCONFIG_PCI=y\n"
	assert.Empty(t, SetOptions(config, []string{"CONFIG_VIRTIO_MMIO"}))
	assert.Equal(t, []string{"CONFIG_VIRTIO_MMIO=m"}, SetOptions("CONFIG_VIRTIO_MMIO=m\n", []string{"CONFIG_VIRTIO_MMIO"}))
}

// The fragments in the repository never ask for what their spec forbids:
// the kvm_guest kernel must reach its disks over PCI only.
func TestFragmentsHonourForbidden(t *testing.T) {
	for _, s := range []Spec{Minimal, KVMGuest} {
		data, err := os.ReadFile(filepath.Join("..", "..", s.Fragment))
		require.NoError(t, err, s.Name)
		assert.Empty(t, SetOptions(string(data), s.Forbidden), s.Name)
		assert.True(t, strings.Contains(string(data), "CONFIG_"), s.Name)
	}
}
