// Package aml encodes the small subset of ACPI Machine Language that a
// micro-VM's DSDT needs: scopes, devices, named objects, integers, strings,
// packages, buffers and resource templates (ACPI 6.4 §20.2, §6.4).
//
// Terms are plain values that append their own encoding, so a table reads
// like the ASL it stands for:
//
//	aml.Encode(aml.Scope{Name: `\_SB_`, Terms: []aml.Term{
//		aml.Device{Name: "COM1", Terms: []aml.Term{
//			aml.Name{Name: "_HID", Value: aml.EISAID("PNP0501")},
//		}},
//	}})
package aml

import (
	"errors"
	"fmt"
)

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrName reports a NameString that AML cannot express.
	ErrName = errors.New("aml: invalid name")
	// ErrTooLong reports an object longer than its length field can say.
	ErrTooLong = errors.New("aml: object too long")
	// ErrValue reports a value that the encoding does not allow.
	ErrValue = errors.New("aml: invalid value")
)

// Term is one AML object: it appends its encoding to b.
type Term interface {
	AppendAML(b []byte) ([]byte, error)
}

// Encode returns the concatenated encoding of terms, a TermList.
func Encode(terms ...Term) ([]byte, error) {
	return appendTerms(nil, terms)
}

func appendTerms(b []byte, terms []Term) ([]byte, error) {
	var err error
	for _, t := range terms {
		if t == nil {
			return nil, fmt.Errorf("%w: nil term", ErrValue)
		}
		if b, err = t.AppendAML(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Opcodes, ACPI 6.4 §20.2.
const (
	zeroOp       = 0x00
	oneOp        = 0x01
	nameOp       = 0x08
	bytePrefix   = 0x0a
	wordPrefix   = 0x0b
	dwordPrefix  = 0x0c
	stringPrefix = 0x0d
	qwordPrefix  = 0x0e
	scopeOp      = 0x10
	bufferOp     = 0x11
	packageOp    = 0x12
	extOpPrefix  = 0x5b
	deviceOp     = 0x82 // after extOpPrefix
)
