// Package rtc emulates the MC146818 CMOS real-time clock at ports 0x70 and
// 0x71, as far as an x86 guest reads it: the wall-clock time at boot and
// the status registers that say the clock is valid and not updating.
//
// A guest without ACPI (or without the FADT's "CMOS RTC not present" flag)
// probes the RTC; against unclaimed ports, which read 0xff, the update-in-
// progress bit never clears and Linux's rtc_cmos driver spins for tens of
// seconds before it gives up.
package rtc

import (
	"sync"
	"time"
)

// Base is the first I/O port (index register); Base+1 is the data port.
const (
	Base  = 0x70
	Ports = 2
)

// Registers of the MC146818 (datasheet, "Address Map").
const (
	regSeconds = 0x00
	regMinutes = 0x02
	regHours   = 0x04
	regWeekday = 0x06
	regDay     = 0x07
	regMonth   = 0x08
	regYear    = 0x09
	regA       = 0x0a
	regB       = 0x0b
	regC       = 0x0c
	regD       = 0x0d
	regCentury = 0x32 // the PC convention for the century byte
	cmosSize   = 0x80
	regAValue  = 0x26 // 32.768 kHz time base, 1024 Hz rate; UIP clear
	regBValue  = 0x02 // 24-hour mode, BCD, no interrupts
	regDValue  = 0x80 // valid RAM and time
	indexMask  = 0x7f // bit 7 of the index port gates NMIs on a PC
)

// RTC is the clock. It implements bus.Device over Ports ports and is safe
// for concurrent use.
type RTC struct {
	now func() time.Time

	mu    sync.Mutex
	index byte
	ram   [cmosSize]byte // what the guest stored in non-clock bytes
}

// New returns a clock that reads the host's time in UTC.
func New() *RTC { return &RTC{now: time.Now} }

// Read serves port 0x70 (the index, write-only on real hardware: reads
// return it) and 0x71 (the selected register).
func (r *RTC) Read(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range data {
		switch offset + uint64(i) {
		case 0:
			data[i] = r.index
		case 1:
			data[i] = r.register(r.index)
		default:
			data[i] = 0xff
		}
	}
}

// Write selects a register (0x70) or stores into CMOS RAM (0x71). Writes
// to the clock registers are ignored: the guest cannot set the host's
// time, and the clock keeps following it.
func (r *RTC) Write(offset uint64, data []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, v := range data {
		switch offset + uint64(i) {
		case 0:
			r.index = v & indexMask
		case 1:
			if r.index > regD && r.index != regCentury {
				r.ram[r.index] = v
			}
		}
	}
}

func (r *RTC) register(idx byte) byte {
	t := r.now().UTC()
	switch idx {
	case regSeconds:
		return bcd(t.Second())
	case regMinutes:
		return bcd(t.Minute())
	case regHours:
		return bcd(t.Hour())
	case regWeekday:
		return bcd(int(t.Weekday()) + 1)
	case regDay:
		return bcd(t.Day())
	case regMonth:
		return bcd(int(t.Month()))
	case regYear:
		return bcd(t.Year() % 100)
	case regCentury:
		return bcd(t.Year() / 100)
	case regA:
		return regAValue
	case regB:
		return regBValue
	case regC:
		return 0 // no interrupt flags: the clock raises no interrupts
	case regD:
		return regDValue
	}
	if int(idx) < cmosSize {
		return r.ram[idx]
	}
	return 0
}

func bcd(n int) byte { return byte(n/10<<4 | n%10) }
