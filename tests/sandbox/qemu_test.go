package sandbox

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseQEMUMajor(t *testing.T) {
	m, err := parseQEMUMajor("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright")
	require.NoError(t, err)
	assert.Equal(t, 10, m)
	m, err = parseQEMUMajor("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n")
	require.NoError(t, err)
	assert.Equal(t, 7, m)
	_, err = parseQEMUMajor("bash: qemu: command not found")
	assert.Error(t, err)
}

func TestIsBookworm(t *testing.T) {
	assert.True(t, isBookworm("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n"))
	assert.True(t, isBookworm("VERSION_CODENAME=\"bookworm\""))
	assert.False(t, isBookworm("VERSION_CODENAME=trixie\n"))
	assert.False(t, isBookworm("ID=fedora\n"))
}

func TestBackportVersion(t *testing.T) {
	madison := ` qemu-system-x86 | 1:10.0.2+ds-2+deb13u1~bpo12+1 | http://deb.debian.org/debian bookworm-backports/main amd64 Packages
 qemu-system-x86 | 1:9.2.1+ds-1~bpo12+1 | http://deb.debian.org/debian bookworm-backports/main amd64 Packages
 qemu-system-x86 | 1:7.2+dfsg-7+deb12u18+b3 | http://deb.debian.org/debian bookworm/main amd64 Packages
`
	v, err := backportVersion(madison)
	require.NoError(t, err)
	assert.Equal(t, "1:10.0.2+ds-2+deb13u1~bpo12+1", v)
	_, err = backportVersion(" qemu-system-x86 | 1:7.2+dfsg-7 | http://deb.debian.org/debian bookworm/main amd64 Packages\n")
	assert.Error(t, err, "only the system suite")
}
