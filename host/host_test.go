package host

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestCPUFlag(t *testing.T) {
	for _, tc := range []struct {
		name, cpuinfo, want string
	}{
		{"intel", "processor\t: 0\nflags\t\t: fpu vme vmx sse\n", "vmx"},
		{"amd", "processor\t: 0\nflags\t\t: fpu svm lm\n", "svm"},
		{"none", "processor\t: 0\nflags\t\t: fpu sse hypervisor\n", ""},
		{"substring is not a flag", "flags\t\t: vmxnot svmish\n", ""},
		{"no flags line", "processor\t: 0\n", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, cpuFlag([]byte(tc.cpuinfo)))
		})
	}
}

func TestDetectOnThisHost(t *testing.T) {
	v, err := Detect()
	if err != nil {
		t.Skipf("no /proc/cpuinfo: %v", err)
	}
	t.Logf("virtualization: %+v (hardware: %v)", v, v.Hardware())
	if !v.Hardware() {
		assert.Contains(t, v.Explanation(), "cannot boot")
	}
}
