package aml

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMethodNotify encodes what iasl makes of
//
//	Method (_EVT, 1, Serialized) { Notify (\_SB_.VGEN, 0x80) }
func TestMethodNotify(t *testing.T) {
	got, err := Encode(Method{Name: "_EVT", Args: 1, Serialized: true, Terms: []Term{
		Notify{Object: `\_SB_.VGEN`, Value: Integer(0x80)},
	}})
	require.NoError(t, err)
	want := []byte{
		methodOp, 19, '_', 'E', 'V', 'T', 0x09,
		notifyOp, '\\', dualNamePrefix, '_', 'S', 'B', '_', 'V', 'G', 'E', 'N', bytePrefix, 0x80,
	}
	assert.Equal(t, want, got)
}

func TestMethodErrors(t *testing.T) {
	for name, term := range map[string]Term{
		"too many arguments":   Method{Name: "_EVT", Args: 8},
		"negative arguments":   Method{Name: "_EVT", Args: -1},
		"bad method name":      Method{Name: "evt"},
		"bad term in body":     Method{Name: "_EVT", Terms: []Term{nil}},
		"bad notify object":    Notify{Object: "vgen", Value: Integer(0x80)},
		"notify without value": Notify{Object: "VGEN"},
	} {
		_, err := Encode(term)
		assert.Error(t, err, name)
	}
}
