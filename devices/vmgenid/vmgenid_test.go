package vmgenid

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmm-dev/vmm/memory"
)

type counter struct {
	n   int
	err error
}

func (c *counter) Trigger() error {
	c.n++
	return c.err
}

const testAddr = memory.GuestAddr(0xf_ffe0)

func newTest(t *testing.T, notify *counter) (*Device, *memory.Memory) {
	t.Helper()
	mem := memory.FromSlices(memory.Region{Base: 0, Host: make([]byte, 1<<20)})
	d, err := New(mem, testAddr, notify)
	require.NoError(t, err)
	return d, mem
}

func readID(t *testing.T, mem *memory.Memory) ID {
	t.Helper()
	var id ID
	require.NoError(t, mem.ReadAt(id[:], testAddr))
	return id
}

func TestInitWritesWithoutNotifying(t *testing.T) {
	var notify counter
	d, mem := newTest(t, &notify)
	assert.Equal(t, ID{}, readID(t, mem), "New writes nothing")
	require.NoError(t, d.Init())
	assert.NotEqual(t, ID{}, d.ID())
	assert.Equal(t, d.ID(), readID(t, mem))
	assert.Zero(t, notify.n)
}

// TestRegenerate: every restore gets a new ID and one notification.
func TestRegenerate(t *testing.T) {
	var notify counter
	d, mem := newTest(t, &notify)
	require.NoError(t, d.Init())
	seen := map[ID]bool{d.ID(): true}
	for i := 1; i <= 3; i++ {
		require.NoError(t, d.Regenerate())
		assert.False(t, seen[d.ID()], "ID repeated")
		seen[d.ID()] = true
		assert.Equal(t, d.ID(), readID(t, mem))
		assert.Equal(t, i, notify.n)
	}
}

func TestRegenerateReportsTheNotification(t *testing.T) {
	boom := errors.New("boom")
	d, _ := newTest(t, &counter{err: boom})
	assert.ErrorIs(t, d.Regenerate(), boom)
}

func TestNewOutsideMemory(t *testing.T) {
	mem := memory.FromSlices(memory.Region{Base: 0, Host: make([]byte, 1<<20)})
	for _, addr := range []memory.GuestAddr{0xf_fff8, 1 << 20, ^memory.GuestAddr(0) - 4} {
		_, err := New(mem, addr, &counter{})
		assert.Error(t, err, "%v", addr)
	}
}
