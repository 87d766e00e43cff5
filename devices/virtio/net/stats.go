package net

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
)

// Stats counts what the device did since it was created. Frames the
// device refuses are counted here and never reach the other side.
type Stats struct {
	TXFrames    uint64 // frames written to the backend
	TXBytes     uint64 // their bytes, headers excluded
	TXMalformed uint64 // dropped: bad header, no readable bytes, too short
	TXOversized uint64 // dropped: frame longer than MaxFrameSize
	TXErrors    uint64 // dropped: the backend refused the write
	RXFrames    uint64 // frames delivered to the guest
	RXBytes     uint64 // their bytes, headers excluded
	RXRunts     uint64 // dropped: the backend returned less than a header
	RXTruncated uint64 // delivered, but may have been cut to the buffers' size
	RXDropped   uint64 // dropped: larger than all the buffers the guest can post
	RXBadChains uint64 // receive chains returned unused: too small to hold a header
	RXStalls    uint64 // times receiving paused for lack of guest buffers
	RXErrors    uint64 // backend read errors (receiving stops until reset)
}

// counters are the live Stats.
type counters struct {
	txFrames, txBytes, txMalformed, txOversized, txErrors atomic.Uint64
	rxFrames, rxBytes, rxRunts, rxTruncated, rxBadChains  atomic.Uint64
	rxStalls, rxErrors, rxDropped                         atomic.Uint64
}

// Stats returns a snapshot of the counters.
func (n *Net) Stats() Stats {
	c := &n.stats
	return Stats{
		TXFrames: c.txFrames.Load(), TXBytes: c.txBytes.Load(),
		TXMalformed: c.txMalformed.Load(), TXOversized: c.txOversized.Load(), TXErrors: c.txErrors.Load(),
		RXFrames: c.rxFrames.Load(), RXBytes: c.rxBytes.Load(),
		RXRunts: c.rxRunts.Load(), RXTruncated: c.rxTruncated.Load(), RXDropped: c.rxDropped.Load(),
		RXBadChains: c.rxBadChains.Load(),
		RXStalls:    c.rxStalls.Load(), RXErrors: c.rxErrors.Load(),
	}
}

// count adds one to c and logs the first occurrence: a guest that keeps
// sending the same nonsense must not flood the log.
func (n *Net) count(c *atomic.Uint64, what string, err error) {
	if c.Add(1) == 1 {
		slog.Warn("virtio-net: "+what+" (first occurrence; later ones are only counted)",
			"tap", n.name, "err", err)
	}
}

// String gives the counters that say whether frames still moved and
// what was refused, e.g. for a stop report: "rx 51987 frames (1234 bytes),
// tx 11381 frames (5678 bytes), 3 waits for receive buffers".
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "rx %d frames (%d bytes), tx %d frames (%d bytes), %d waits for receive buffers",
		s.RXFrames, s.RXBytes, s.TXFrames, s.TXBytes, s.RXStalls)
	for _, c := range []struct {
		n    uint64
		what string
	}{
		{s.TXMalformed, "malformed tx"}, {s.TXOversized, "oversized tx"}, {s.TXErrors, "tx backend errors"},
		{s.RXRunts, "rx runts"}, {s.RXTruncated, "rx truncated"}, {s.RXDropped, "rx dropped"},
		{s.RXBadChains, "bad rx chains"}, {s.RXErrors, "rx backend errors"},
	} {
		if c.n > 0 {
			fmt.Fprintf(&b, ", %d %s", c.n, c.what)
		}
	}
	return b.String()
}
