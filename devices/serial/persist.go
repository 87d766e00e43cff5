package serial

import "fmt"

// State is the UART's guest-visible state, for a snapshot: the
// registers, the latched status bits and the receive FIFO's contents.
type State struct {
	IER, FCR, LCR, MCR, Scratch byte
	DLL, DLM                    byte
	LSRErrors, MSRDelta         byte
	TxEmptyIRQ                  bool
	RX                          []byte // the receive FIFO, oldest first
	LastRX                      byte
}

// Save returns the UART's state.
func (u *UART) Save() State {
	u.mu.Lock()
	defer u.mu.Unlock()
	rx := make([]byte, u.rxLen)
	for i := range rx {
		rx[i] = u.rx[(u.rxHead+i)%RxBufferSize]
	}
	return State{IER: u.ier, FCR: u.fcr, LCR: u.lcr, MCR: u.mcr, Scratch: u.scratch,
		DLL: u.dll, DLM: u.dlm, LSRErrors: u.lsrErrors, MSRDelta: u.msrDelta,
		TxEmptyIRQ: u.txEmptyIRQ, RX: rx, LastRX: u.lastRx}
}

// Restore loads a saved state into a UART that has not run yet, and
// raises the interrupt the state has pending, if any: the guest's
// handler must see it, or its transmit path waits forever.
func (u *UART) Restore(s State) error {
	if len(s.RX) > RxBufferSize {
		return fmt.Errorf("serial: restore: %d bytes in a %d-byte receive FIFO", len(s.RX), RxBufferSize)
	}
	u.mu.Lock()
	u.ier, u.fcr, u.lcr, u.mcr, u.scratch = s.IER&ierMask, s.FCR&fcrKept, s.LCR, s.MCR, s.Scratch
	u.dll, u.dlm, u.lsrErrors, u.msrDelta = s.DLL, s.DLM, s.LSRErrors, s.MSRDelta
	u.txEmptyIRQ, u.lastRx = s.TxEmptyIRQ, s.LastRX
	u.rxHead, u.rxLen = 0, copy(u.rx[:], s.RX)
	pending := u.pending() != 0
	u.mu.Unlock()
	if pending && u.irq != nil {
		if err := u.irq.Trigger(); err != nil {
			return fmt.Errorf("serial: restore: raise the pending interrupt: %w", err)
		}
	}
	return nil
}
