package fs

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio/internal/confine"
)

// TestHostKernelClient serves the passthrough to this host's own Linux
// FUSE client through /dev/fuse (go-fuse's ordinary server, not virtio):
// the requests are the ones a Linux guest's fuse module sends, from
// ordinary programs. It needs root and /dev/fuse; the virtio path is
// covered by the other tests and the sandbox scenarios.
func TestHostKernelClient(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	dir, mnt := t.TempDir(), t.TempDir()
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	require.NoError(t, os.WriteFile(filepath.Join(dir, "data"), data, 0o644))
	p, err := newPassthrough(dir, false)
	require.NoError(t, err)
	defer p.close()
	confine.RaiseFileLimit() // as New does: a descriptor per inode the client holds
	srv, err := fuse.NewServer(p, mnt, &fuse.MountOptions{DirectMount: true, MaxWrite: MaxWrite, FsName: "vmmtest", Name: "vmmtest"})
	if err != nil {
		t.Skipf("cannot mount FUSE here: %v", err)
	}
	go srv.Serve()
	require.NoError(t, srv.WaitMount())
	defer func() { assert.NoError(t, srv.Unmount()) }()

	sh := func(script string) string {
		t.Helper()
		// The shell enters the mount itself: with cmd.Dir the forked
		// child would chdir into it before exec, still sharing this
		// process's memory (vfork), and wait on a FUSE request this
		// process serves. Seen once in CI: the child hung in fuse_access
		// under chdir until the test timed out.
		cmd := exec.Command("sh", "-ec", `cd "$0"; `+script, mnt)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s\n%s", script, out)
		return string(out)
	}
	got, err := os.ReadFile(filepath.Join(mnt, "data"))
	require.NoError(t, err)
	assert.Equal(t, md5.Sum(data), md5.Sum(got), "read through the kernel intact")
	sh(`echo "from the client" > new; mkdir -p d/e; ln new d/hard; ln -s ../new d/sym; mv d/e d/f; chmod 600 new`)
	b, err := os.ReadFile(filepath.Join(dir, "new"))
	require.NoError(t, err)
	assert.Equal(t, "from the client\n", string(b))
	fi, err := os.Stat(filepath.Join(dir, "new"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	assert.Equal(t, "from the client\n", sh(`cat d/sym`))
	assert.Equal(t, "2\n", sh(`stat -c %h d/hard`))
	assert.DirExists(t, filepath.Join(dir, "d", "f"))
	if err := unix.Setxattr(filepath.Join(dir, "new"), "user.probe", []byte("v"), 0); err == nil {
		v := make([]byte, 8)
		n, err := unix.Getxattr(filepath.Join(mnt, "new"), "user.probe", v)
		require.NoError(t, err)
		assert.Equal(t, "v", string(v[:n]))
	}
	sh(`dd if=/dev/zero of=sparse bs=1 count=1 seek=5368709120 2> /dev/null`)
	fi, err = os.Stat(filepath.Join(dir, "sparse"))
	require.NoError(t, err)
	assert.Equal(t, int64(5<<30+1), fi.Size())

	// A tree of files, as the find benchmark: find on the share
	// against find on the host directory. The passthrough holds one
	// descriptor per inode the client has not forgotten, so the tree
	// stays well within this process's RLIMIT_NOFILE.
	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	n := int(min(20000, lim.Cur/2))
	if testing.Short() {
		n = 2000
	}
	tree := filepath.Join(dir, "tree")
	for i := range n {
		sub := filepath.Join(tree, fmt.Sprintf("d%03d", i%100))
		if i < 100 {
			require.NoError(t, os.MkdirAll(sub, 0o755))
		}
		require.NoError(t, os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%05d", i)), nil, 0o644))
	}
	start := time.Now()
	hostCount := sh(`find ` + tree + ` -type f | wc -l`)
	hostFind := time.Since(start)
	start = time.Now()
	shareCount := sh(`find tree -type f | wc -l`)
	shareFind := time.Since(start)
	assert.Equal(t, hostCount, shareCount)
	t.Logf("metric: find over %d files: host %v, through FUSE %v", n, hostFind.Round(time.Millisecond), shareFind.Round(time.Millisecond))

	if !testing.Short() {
		big := filepath.Join(dir, "big")
		require.NoError(t, exec.Command("dd", "if=/dev/zero", "of="+big, "bs=1M", "count=256").Run())
		start = time.Now()
		sh(`cat ` + big + ` > /dev/null`)
		hostRead := time.Since(start)
		start = time.Now()
		sh(`cat big > /dev/null`)
		shareRead := time.Since(start)
		t.Logf("metric: 256 MiB read (first read through the mount): host %v, through FUSE %v (%.0f MiB/s)", hostRead.Round(time.Millisecond),
			shareRead.Round(time.Millisecond), 256/shareRead.Seconds())
	}
}
