package serial

// The UART's register semantics, called with u.mu held.

// writeTHR transmits v and reports whether it must go to the host.
func (u *UART) writeTHR(v byte) bool {
	// The byte leaves THR at once, so THR is empty again right after the
	// write that cleared the THRE interrupt: the interrupt is pending
	// again (PC16550D: THRE interrupt set when THR empties).
	u.txEmptyIRQ = true
	if u.mcr&mcrLoopback != 0 {
		u.loopback(v)
		return false
	}
	return true
}

func (u *UART) writeIER(v byte) {
	v &= ierMask
	// A 16550A raises THRE as soon as ETBEI is enabled with THR empty;
	// Linux relies on it to start transmitting and tests that it is
	// raised again after ETBEI goes 0 -> 1 (its UART_BUG_THRE probe).
	if v&ierTxEmpty != 0 && u.ier&ierTxEmpty == 0 {
		u.txEmptyIRQ = true
	}
	u.ier = v
}

func (u *UART) writeFCR(v byte) {
	// PC16550D FCR bit 0: changing the FIFO mode clears both FIFOs.
	toggled := (u.fcr^v)&fcrEnable != 0
	if toggled || v&fcrClearRx != 0 {
		u.rxHead, u.rxLen = 0, 0
	}
	// TX is instant, so clearing the TX FIFO has nothing to drop.
	u.fcr = v & fcrKept
}

func (u *UART) writeMCR(v byte) {
	old := u.modemInputs()
	u.mcr = v & mcrMask
	now := u.modemInputs()
	changed := old ^ now
	if changed&msrCTS != 0 {
		u.msrDelta |= msrDeltaCTS
	}
	if changed&msrDSR != 0 {
		u.msrDelta |= msrDeltaDSR
	}
	if old&msrRI != 0 && now&msrRI == 0 {
		u.msrDelta |= msrTrailingRI
	}
	if changed&msrDCD != 0 {
		u.msrDelta |= msrDeltaDCD
	}
}

// modemInputs is the upper nibble of MSR. PC16550D MCR bit 4: in loopback
// DTR, RTS, OUT1 and OUT2 drive DSR, CTS, RI and DCD. Linux's autoconfig
// writes MCR = LOOP|OUT2|RTS and expects MSR & 0xf0 == DCD|CTS (0x90).
func (u *UART) modemInputs() byte {
	if u.mcr&mcrLoopback == 0 {
		return msrConnected
	}
	var msr byte
	if u.mcr&mcrDTR != 0 {
		msr |= msrDSR
	}
	if u.mcr&mcrRTS != 0 {
		msr |= msrCTS
	}
	if u.mcr&mcrOut1 != 0 {
		msr |= msrRI
	}
	if u.mcr&mcrOut2 != 0 {
		msr |= msrDCD
	}
	return msr
}

func (u *UART) lsr() byte {
	lsr := byte(lsrTxEmpty|lsrTxIdle) | u.lsrErrors
	if u.rxLen > 0 {
		lsr |= lsrDataReady
	}
	return lsr
}

// pending is the set of enabled interrupt sources that are active.
func (u *UART) pending() sources {
	var s sources
	if u.ier&ierLineStatus != 0 && u.lsrErrors != 0 {
		s |= srcLineStatus
	}
	if u.ier&ierRxData != 0 && u.rxLen > 0 {
		s |= srcRxData
	}
	if u.ier&ierTxEmpty != 0 && u.txEmptyIRQ {
		s |= srcTxEmpty
	}
	if u.ier&ierModem != 0 && u.msrDelta != 0 {
		s |= srcModem
	}
	return s
}

// iir reports the highest-priority pending source (PC16550D table
// "Interrupt control functions": line status, received data, THRE, modem
// status).
func (u *UART) iir() byte {
	var iir byte = iirNone
	s := u.pending()
	switch {
	case s&srcLineStatus != 0:
		iir = iirLineStatus
	case s&srcRxData != 0:
		iir = iirRxData
	case s&srcTxEmpty != 0:
		iir = iirTxEmpty
	case s&srcModem != 0:
		iir = iirModem
	}
	if u.fcr&fcrEnable != 0 {
		iir |= iirFIFOEnabled
	}
	return iir
}

// pushRx appends b to the receive buffer while it holds fewer than limit
// bytes and returns how many bytes it took.
func (u *UART) pushRx(b []byte, limit int) int {
	n := 0
	for _, c := range b {
		if u.rxLen >= limit {
			break
		}
		u.rx[(u.rxHead+u.rxLen)%RxBufferSize] = c
		u.rxLen++
		n++
	}
	return n
}

func (u *UART) popRx() byte {
	if u.rxLen == 0 {
		return u.lastRx
	}
	u.lastRx = u.rx[u.rxHead]
	u.rxHead = (u.rxHead + 1) % RxBufferSize
	u.rxLen--
	return u.lastRx
}

// loopback feeds a transmitted byte back to the receiver. Only the FIFO
// (or the single RBR when FIFOs are off) holds it; more is an overrun,
// which is what Linux's size_fifo() probe counts on.
func (u *UART) loopback(v byte) {
	limit := 1
	if u.fcr&fcrEnable != 0 {
		limit = fifoSize
	}
	if u.pushRx([]byte{v}, limit) == 0 {
		u.lsrErrors |= lsrOverrun
	}
}
