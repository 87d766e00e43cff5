// Package confine holds the host-side rules both shared-directory
// devices (virtio-fs, virtio-9p) follow so that a guest reaches nothing
// outside its share: every host inode is held as an O_PATH descriptor,
// every lookup is one checked name relative to such a descriptor, opened
// with openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS),
// and no host path is ever built from guest input.
package confine

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// MaxName is the longest directory entry name (NAME_MAX).
const MaxName = 255

// CheckName accepts one path component as the guest may name a directory
// entry: not empty, not . or .., no '/' and no NUL. It returns EINVAL or
// ENAMETOOLONG otherwise.
func CheckName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return unix.EINVAL
	case len(name) > MaxName:
		return unix.ENAMETOOLONG
	case strings.ContainsAny(name, "/\x00"):
		return unix.EINVAL
	}
	return nil
}

// OpenBeneath opens one checked name inside the directory dirfd, refusing
// any symlink and any step outside dirfd.
func OpenBeneath(dirfd int, name string, flags int, mode uint32) (int, error) {
	if err := CheckName(name); err != nil {
		return -1, err
	}
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	if flags&unix.O_CREAT != 0 {
		how.Mode = uint64(mode & 07777)
	}
	for {
		fd, err := unix.Openat2(dirfd, name, &how)
		switch err {
		case unix.EINTR, unix.EAGAIN:
			continue
		case unix.ENOSYS:
			// Kernels before 5.6: one checked component with O_NOFOLLOW
			// cannot leave dirfd either.
			return unix.Openat(dirfd, name, flags|unix.O_CLOEXEC|unix.O_NOFOLLOW, mode&07777)
		}
		return fd, err
	}
}

// ProcPath names the inode behind one of vmm's own O_PATH descriptors for
// the calls that need a path or a real open file (open, chmod, truncate,
// utimes, xattrs). The magic link is vmm's descriptor, never a guest's
// path. Use it for regular files and directories only: on a symlink the
// call would follow the link's target.
func ProcPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// Fstat stats the inode of an O_PATH descriptor itself (a symlink is not
// followed).
func Fstat(fd int, st *unix.Stat_t) error {
	return unix.Fstatat(fd, "", st, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
}

// Openable says whether the guest may open an inode of type mode (S_IFMT
// bits) on the host: regular files and directories only. Device nodes
// would be host hardware, FIFOs and sockets could block a queue's worker,
// and symlinks are never followed. It returns the errno to answer.
func Openable(mode uint32, dir bool) error {
	switch {
	case dir && mode == unix.S_IFDIR, !dir && mode == unix.S_IFREG:
		return nil
	case mode == unix.S_IFDIR:
		return unix.EISDIR
	case dir:
		return unix.ENOTDIR
	case mode == unix.S_IFLNK:
		return unix.ELOOP
	}
	return unix.ENXIO
}

// MknodAllowed: only FIFOs, sockets and regular files may be made; a device
// node made by the guest would open host devices through the share.
func MknodAllowed(mode uint32) bool {
	switch mode & unix.S_IFMT {
	case unix.S_IFIFO, unix.S_IFSOCK, unix.S_IFREG:
		return true
	}
	return false
}

// OpenFlags keeps the open flags that make sense on the host and drops
// those that change what is opened or how vmm's own I/O behaves. On a
// read-only share it refuses writing opens with EROFS.
func OpenFlags(flags uint32, readOnly bool) (int, error) {
	f := int(flags) &^ (unix.O_CREAT | unix.O_EXCL | unix.O_NOCTTY | unix.O_DIRECT | unix.O_ASYNC |
		unix.O_PATH | unix.O_TMPFILE | unix.O_NOFOLLOW | unix.O_DIRECTORY)
	if readOnly && (f&unix.O_ACCMODE != unix.O_RDONLY || f&unix.O_TRUNC != 0) {
		return 0, unix.EROFS
	}
	return f | unix.O_CLOEXEC, nil
}

// Link makes name in dirfd a hard link of the inode behind the O_PATH
// descriptor fd. linkat(AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; without
// it the inode is named through ProcPath, which is safe for anything but
// a symlink (the link would be followed).
func Link(fd int, isSymlink bool, dirfd int, name string) error {
	if err := CheckName(name); err != nil {
		return err
	}
	err := unix.Linkat(fd, "", dirfd, name, unix.AT_EMPTY_PATH)
	if err == unix.ENOENT && !isSymlink {
		err = unix.Linkat(unix.AT_FDCWD, ProcPath(fd), dirfd, name, unix.AT_SYMLINK_FOLLOW)
	}
	return err
}

var raiseOnce sync.Once

// RaiseFileLimit lifts RLIMIT_NOFILE as far as it goes (to fs.nr_open
// when vmm may raise the hard limit, else to the hard limit), once per
// process: a share holds one O_PATH descriptor per inode the guest has
// looked up and not forgotten, and a guest walking a tree of 100,000
// files keeps as many. What the limit still refuses the guest gets as
// EMFILE on its lookups.
func RaiseFileLimit() {
	raiseOnce.Do(func() {
		var lim unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			return
		}
		want := lim.Max
		if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
			if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && n > want {
				want = n
			}
		}
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: want, Max: want}) != nil {
			// Not allowed above the hard limit: up to it, then.
			_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: lim.Max, Max: lim.Max})
		}
	})
}
