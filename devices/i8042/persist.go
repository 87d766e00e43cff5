package i8042

import (
	"errors"
	"fmt"
)

// State is the controller's guest-visible state, for a snapshot: the
// configuration byte, a command or keyboard parameter half written, the
// bytes waiting on port 0x60, and port 0x61's bits.
type State struct {
	CTR          byte
	PendingCmd   byte // controller command waiting for its data byte
	KbdParamFor  byte // keyboard command waiting for its parameter
	CmdData      bool // the last write went to port 0x64
	Result       []byte
	Kbd          []byte
	PortBRefresh byte
	PortBControl byte
}

// maxResult bounds a saved command result: every command answers one byte.
const maxResult = 1

// ErrState: a saved state the controller could never have been in.
var ErrState = errors.New("invalid i8042 state")

// Save returns the controller's state.
func (c *Controller) Save() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return State{CTR: c.ctr, PendingCmd: c.pendingCmd, KbdParamFor: c.kbdParamFor, CmdData: c.cmdData,
		Result: append([]byte(nil), c.result...), Kbd: append([]byte(nil), c.kbd...),
		PortBRefresh: c.portBRefreshBit, PortBControl: c.portBControlBits}
}

// Restore loads s into a controller that has not run yet. When a
// keyboard byte waits with its interrupt enabled, IRQ 1 is raised again:
// the restored irqchip may hold that interrupt as taken but not yet
// handled, and an extra one only finds the status register and returns.
func (c *Controller) Restore(s State) error {
	switch {
	case len(s.Result) > maxResult:
		return fmt.Errorf("%w: %d result bytes (at most %d)", ErrState, len(s.Result), maxResult)
	case len(s.Kbd) > kbdQueueMax:
		return fmt.Errorf("%w: %d keyboard bytes (at most %d)", ErrState, len(s.Kbd), kbdQueueMax)
	}
	c.mu.Lock()
	c.ctr, c.pendingCmd, c.kbdParamFor, c.cmdData = s.CTR, s.PendingCmd, s.KbdParamFor, s.CmdData
	c.result = append(c.result[:0], s.Result...)
	c.kbd = append(c.kbd[:0], s.Kbd...)
	c.portBRefreshBit, c.portBControlBits = s.PortBRefresh&portBRefresh, s.PortBControl&0x03
	raise := c.kbdIRQDueLocked()
	c.mu.Unlock()
	c.raise(raise)
	return nil
}
