package results

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseRestore(t *testing.T) {
	r := ParseRestore("2026-12-01T18:00:00 [x:main] something\n" +
		"vmm: snapshot /w/vm.snap loaded in 12.345ms\n" +
		"vmm: snapshot: the guest runs again 12.9ms after the load began, at unix-ns=1764612345000000000\n")
	assert.Equal(t, 12345*time.Microsecond, r.Load)
	assert.Equal(t, int64(1764612345000000000), r.RunUnixNano)
	assert.Equal(t, RestoreReport{}, ParseRestore("vmm: snapshot x loaded in soon\ngarbage unix-ns=5\n"))
}

func TestParseSmapsRollup(t *testing.T) {
	rss, pss, err := ParseSmapsRollup(strings.NewReader(`55d0a2c00000-7ffd1b9fe000 ---p 00000000 00:00 0                          [rollup]
Rss:               20480 kB
Pss:                9000 kB
Pss_Anon:           4000 kB
`))
	require.NoError(t, err)
	assert.Equal(t, uint64(20480), rss)
	assert.Equal(t, uint64(9000), pss)
	_, _, err = ParseSmapsRollup(strings.NewReader("Rss: 1 kB\n"))
	assert.Error(t, err, "no Pss")
	_, _, err = ParseSmapsRollup(strings.NewReader("Rss: x kB\nPss: 1 kB\n"))
	assert.Error(t, err)
}

func TestParseShareTimes(t *testing.T) {
	st, ok := ParseShareTimes("@@SHARE t0=10.50 t1=12.75 t2=13.00 files=20101")
	require.True(t, ok)
	assert.Equal(t, ShareTimes{Read: 2250 * time.Millisecond, Find: 250 * time.Millisecond, Files: 20101}, st)
	for _, bad := range []string{"@@SHARE t0=2 t1=1 t2=3 files=1", "@@SHARE t0=1 t1=2 files=1", "@@SHARE t0=1 t1=2 t2=3 files=x", "other", "@@SHARE t0=-1 t1=2 t2=3 files=1", "@@SHARE t0=NaN t1=2 t2=3 files=1"} {
		_, ok := ParseShareTimes(bad)
		assert.False(t, ok, bad)
	}
}
