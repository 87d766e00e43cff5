package i8042

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProgressPortRecordsWrites(t *testing.T) {
	var mu sync.Mutex
	var live []ProgressRecord
	p := NewProgressPort(func(v byte, since time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		live = append(live, ProgressRecord{Value: v, Since: since})
	})
	var b [1]byte
	p.Read(0, b[:])
	assert.Equal(t, byte(0xff), b[0], "nothing written yet")

	for _, v := range []byte{0x10, 0x20, 0x30} {
		p.Write(0, []byte{v})
	}
	p.Write(1, []byte{0x99})       // not the port
	p.Write(0, nil)                // empty access
	p.Write(0, []byte{0x40, 0x41}) // outw: first byte only

	recs := p.Records()
	require.Len(t, recs, 4)
	for i, want := range []byte{0x10, 0x20, 0x30, 0x40} {
		assert.Equal(t, want, recs[i].Value)
		if i > 0 {
			assert.GreaterOrEqual(t, recs[i].Since, recs[i-1].Since, "monotonic")
		}
	}
	assert.Equal(t, recs, live)
	assert.Zero(t, p.Dropped())

	data := make([]byte, 2)
	p.Read(0, data)
	assert.Equal(t, []byte{0x40, 0xff}, data)
}

func TestProgressPortKeepsTheLatestRecords(t *testing.T) {
	p := NewProgressPort(nil)
	const extra = 10
	for i := range MaxProgressRecords + extra {
		p.Write(0, []byte{byte(i)})
	}
	recs := p.Records()
	require.Len(t, recs, MaxProgressRecords)
	assert.Equal(t, byte(extra), recs[0].Value)
	assert.Equal(t, byte((MaxProgressRecords+extra-1)%256), recs[len(recs)-1].Value)
	assert.Equal(t, uint64(extra), p.Dropped())
}

func TestProgressPortWriteDoesNotAllocateWhenFull(t *testing.T) {
	p := NewProgressPort(nil)
	for range MaxProgressRecords {
		p.Write(0, []byte{1})
	}
	data := []byte{0x80}
	allocs := testing.AllocsPerRun(1000, func() { p.Write(0, data) })
	assert.Zero(t, allocs)
}

func TestProgressPortConcurrentWrites(t *testing.T) {
	p := NewProgressPort(func(byte, time.Duration) {})
	var wg sync.WaitGroup
	for v := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				p.Write(0, []byte{byte(v)})
			}
		}()
	}
	wg.Wait()
	assert.Len(t, p.Records(), 4000)
}
