package p9

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/hugelgupf/p9/linux"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio/internal/confine"
)

// share is the host directory behind one device.
type share struct {
	root     string
	readOnly bool
	// xattrErr is the errno of the last failed GetXattr or ListXattrs:
	// hugelgupf/p9 answers every such failure of a Txattrwalk with
	// EINVAL, and conn.serve puts the real one back. Chains are served
	// one at a time, so it belongs to the request being answered.
	xattrErr atomic.Uint32

	mu    sync.Mutex
	files map[*file]struct{} // open files, closed at a reset
}

// closeAll closes every file the session holds.
func (s *share) closeAll() {
	s.mu.Lock()
	files := s.files
	s.files = map[*file]struct{}{}
	s.mu.Unlock()
	for f := range files {
		_ = f.Close() // close(2) of our own descriptors; gone either way
	}
}

// Attach implements p9.Attacher: every attach starts at the share root.
func (s *share) Attach() (p9.File, error) {
	fd, err := unix.Open(s.root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errno(err)
	}
	return s.newFile(fd)
}

// file is a p9.File over an O_PATH descriptor of one host inode; every
// operation is relative to it with one checked name (package confine),
// so no walk, symlink or rename leads outside the share.
type file struct {
	p9.DefaultWalkGetAttr
	s    *share
	fd   int    // O_PATH
	mode uint32 // S_IFMT; an inode's type never changes

	mu     sync.Mutex
	open   int // the opened descriptor after Open or Create, else -1
	closed bool
}

var _ p9.File = (*file)(nil)

func (s *share) newFile(fd int) (*file, error) {
	var st unix.Stat_t
	if err := confine.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return nil, errno(err)
	}
	f := &file{s: s, fd: fd, mode: st.Mode & unix.S_IFMT, open: -1}
	s.mu.Lock()
	if s.files != nil {
		s.files[f] = struct{}{}
	}
	s.mu.Unlock()
	return f, nil
}

// errno maps a host error to what p9 sends in Rlerror.
func errno(err error) error {
	var e unix.Errno
	if errors.As(err, &e) {
		return linux.Errno(e)
	}
	if err == nil {
		return nil
	}
	return linux.EIO
}

func qid(st *unix.Stat_t) p9.QID {
	m := p9.FileMode(st.Mode)
	return p9.QID{Type: m.QIDType(), Path: st.Ino, Version: uint32(st.Mtim.Nsec) ^ uint32(st.Mtim.Sec)}
}

func (f *file) stat() (unix.Stat_t, error) {
	var st unix.Stat_t
	err := confine.Fstat(f.fd, &st)
	return st, errno(err)
}

func (f *file) isDir() bool { return f.mode == unix.S_IFDIR }

func (f *file) roErr() error {
	if f.s.readOnly {
		return linux.EROFS
	}
	return nil
}

// Walk implements p9.File.
func (f *file) Walk(names []string) ([]p9.QID, p9.File, error) {
	if len(names) == 0 {
		fd, err := unix.FcntlInt(uintptr(f.fd), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, nil, errno(err)
		}
		nf, err := f.s.newFile(fd)
		if err != nil {
			return nil, nil, err
		}
		return nil, nf, nil
	}
	var qids []p9.QID
	cur, own := f, false
	for _, name := range names {
		if !cur.isDir() {
			if own {
				_ = cur.Close()
			}
			return nil, nil, linux.ENOTDIR
		}
		fd, err := confine.OpenBeneath(cur.fd, name, unix.O_PATH, 0)
		if own {
			_ = cur.Close()
		}
		if err != nil {
			return nil, nil, errno(err)
		}
		nf, err := f.s.newFile(fd)
		if err != nil {
			return nil, nil, err
		}
		st, err := nf.stat()
		if err != nil {
			_ = nf.Close()
			return nil, nil, err
		}
		qids = append(qids, qid(&st))
		cur, own = nf, true
	}
	return qids, cur, nil
}

// StatFS implements p9.File.
func (f *file) StatFS() (p9.FSStat, error) {
	var st unix.Statfs_t
	if err := unix.Fstatfs(f.fd, &st); err != nil {
		return p9.FSStat{}, errno(err)
	}
	return p9.FSStat{
		Type: uint32(st.Type), BlockSize: uint32(st.Bsize), Blocks: st.Blocks, BlocksFree: st.Bfree,
		BlocksAvailable: st.Bavail, Files: st.Files, FilesFree: st.Ffree,
		FSID: uint64(uint32(st.Fsid.Val[0])) | uint64(uint32(st.Fsid.Val[1]))<<32, NameLength: uint32(st.Namelen),
	}, nil
}

// GetAttr implements p9.File.
func (f *file) GetAttr(p9.AttrMask) (p9.QID, p9.AttrMask, p9.Attr, error) {
	st, err := f.stat()
	if err != nil {
		return p9.QID{}, p9.AttrMask{}, p9.Attr{}, err
	}
	a := p9.Attr{
		Mode: p9.FileMode(st.Mode), UID: p9.UID(st.Uid), GID: p9.GID(st.Gid), NLink: p9.NLink(st.Nlink),
		RDev: p9.Dev(st.Rdev), Size: uint64(st.Size), BlockSize: uint64(st.Blksize), Blocks: uint64(st.Blocks),
		ATimeSeconds: uint64(st.Atim.Sec), ATimeNanoSeconds: uint64(st.Atim.Nsec),
		MTimeSeconds: uint64(st.Mtim.Sec), MTimeNanoSeconds: uint64(st.Mtim.Nsec),
		CTimeSeconds: uint64(st.Ctim.Sec), CTimeNanoSeconds: uint64(st.Ctim.Nsec),
	}
	mask := p9.AttrMask{Mode: true, NLink: true, UID: true, GID: true, RDev: true, ATime: true, MTime: true,
		CTime: true, INo: true, Size: true, Blocks: true}
	return qid(&st), mask, a, nil
}

// SetAttr implements p9.File.
func (f *file) SetAttr(valid p9.SetAttrMask, attr p9.SetAttr) error {
	if err := f.roErr(); err != nil {
		return err
	}
	if f.mode != unix.S_IFREG && f.mode != unix.S_IFDIR &&
		(valid.Permissions || valid.Size || valid.ATime || valid.MTime) {
		return linux.EOPNOTSUPP // would follow a symlink, or touch a device
	}
	path := confine.ProcPath(f.fd)
	if valid.Permissions {
		if err := unix.Chmod(path, uint32(attr.Permissions)&07777); err != nil {
			return errno(err)
		}
	}
	if valid.UID || valid.GID {
		u, g := -1, -1
		if valid.UID {
			u = int(attr.UID)
		}
		if valid.GID {
			g = int(attr.GID)
		}
		if err := unix.Fchownat(f.fd, "", u, g, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return errno(err)
		}
	}
	if valid.Size {
		if f.mode != unix.S_IFREG {
			return linux.EINVAL
		}
		if attr.Size > 1<<63-1 {
			return linux.EFBIG
		}
		if err := unix.Truncate(path, int64(attr.Size)); err != nil {
			return errno(err)
		}
	}
	if valid.ATime || valid.MTime {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		if valid.ATime {
			ts[0] = unix.Timespec{Nsec: unix.UTIME_NOW}
			if valid.ATimeNotSystemTime {
				ts[0] = unix.Timespec{Sec: int64(attr.ATimeSeconds), Nsec: int64(attr.ATimeNanoSeconds % 1e9)}
			}
		}
		if valid.MTime {
			ts[1] = unix.Timespec{Nsec: unix.UTIME_NOW}
			if valid.MTimeNotSystemTime {
				ts[1] = unix.Timespec{Sec: int64(attr.MTimeSeconds), Nsec: int64(attr.MTimeNanoSeconds % 1e9)}
			}
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, 0); err != nil {
			return errno(err)
		}
	}
	return nil
}

// Close implements p9.File.
func (f *file) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	f.s.mu.Lock()
	delete(f.s.files, f)
	f.s.mu.Unlock()
	err := unix.Close(f.fd)
	if f.open >= 0 {
		err = errors.Join(err, unix.Close(f.open))
		f.open = -1
	}
	return errno(err)
}

// Open implements p9.File.
func (f *file) Open(mode p9.OpenFlags) (p9.QID, uint32, error) {
	if err := confine.Openable(f.mode, f.isDir()); err != nil {
		return p9.QID{}, 0, errno(err)
	}
	flags, err := confine.OpenFlags(uint32(mode), f.s.readOnly)
	if err != nil {
		return p9.QID{}, 0, errno(err)
	}
	if f.isDir() {
		flags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC
	}
	fd, err := unix.Open(confine.ProcPath(f.fd), flags, 0)
	if err != nil {
		return p9.QID{}, 0, errno(err)
	}
	if err := f.setOpen(fd); err != nil {
		return p9.QID{}, 0, err
	}
	st, err := f.stat()
	if err != nil {
		return p9.QID{}, 0, err
	}
	return qid(&st), 0, nil
}

func (f *file) setOpen(fd int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.open >= 0 || f.closed {
		_ = unix.Close(fd)
		return linux.EBADF
	}
	f.open = fd
	return nil
}

// opened runs op on the opened descriptor; the server does not Close a
// file while an operation on it runs (fid references), but a lock keeps
// that true whatever the server does.
func (f *file) opened(op func(fd int) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.open < 0 {
		return linux.EBADF
	}
	return op(f.open)
}

// ReadAt implements p9.File.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, linux.EINVAL
	}
	var n int
	err := f.opened(func(fd int) error {
		for n < len(p) {
			k, err := unix.Pread(fd, p[n:], off+int64(n))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				if n > 0 {
					return nil
				}
				return errno(err)
			}
			if k == 0 {
				return nil
			}
			n += k
		}
		return nil
	})
	return n, err
}

// WriteAt implements p9.File.
func (f *file) WriteAt(p []byte, off int64) (int, error) {
	if err := f.roErr(); err != nil {
		return 0, err
	}
	if off < 0 {
		return 0, linux.EINVAL
	}
	var n int
	err := f.opened(func(fd int) error {
		for n < len(p) {
			k, err := unix.Pwrite(fd, p[n:], off+int64(n))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				if n > 0 {
					return nil
				}
				return errno(err)
			}
			n += k
		}
		return nil
	})
	return n, err
}

// FSync implements p9.File.
func (f *file) FSync() error {
	return f.opened(func(fd int) error { return errno(unix.Fsync(fd)) })
}

// xattrPath gives the path for the xattr calls: regular files and
// directories only (confine.ProcPath).
func (f *file) xattrPath() (string, error) {
	if f.mode != unix.S_IFREG && f.mode != unix.S_IFDIR {
		return "", linux.EOPNOTSUPP
	}
	return confine.ProcPath(f.fd), nil
}

// SetXattr implements p9.File.
func (f *file) SetXattr(attr string, data []byte, flags p9.XattrFlags) error {
	if err := f.roErr(); err != nil {
		return err
	}
	p, err := f.xattrPath()
	if err != nil {
		return err
	}
	return errno(unix.Setxattr(p, attr, data, int(flags)))
}

// xattrFailed records err for conn.serve (share.xattrErr) and returns it.
func (f *file) xattrFailed(err error) error {
	var e linux.Errno
	if errors.As(err, &e) {
		f.s.xattrErr.Store(uint32(e))
	} else {
		f.s.xattrErr.Store(uint32(linux.EIO))
	}
	return err
}

// GetXattr implements p9.File.
func (f *file) GetXattr(attr string) ([]byte, error) {
	p, err := f.xattrPath()
	if err != nil {
		return nil, f.xattrFailed(err)
	}
	n, err := unix.Getxattr(p, attr, nil)
	if err != nil {
		return nil, f.xattrFailed(errno(err))
	}
	buf := make([]byte, n)
	n, err = unix.Getxattr(p, attr, buf)
	if err != nil {
		return nil, f.xattrFailed(errno(err))
	}
	return buf[:n], nil
}

// ListXattrs implements p9.File.
func (f *file) ListXattrs() ([]string, error) {
	p, err := f.xattrPath()
	if err != nil {
		return nil, f.xattrFailed(err)
	}
	n, err := unix.Listxattr(p, nil)
	if err != nil {
		return nil, f.xattrFailed(errno(err))
	}
	buf := make([]byte, n)
	n, err = unix.Listxattr(p, buf)
	if err != nil {
		return nil, f.xattrFailed(errno(err))
	}
	var names []string
	for start, i := 0, 0; i < n; i++ {
		if buf[i] == 0 {
			if i > start {
				names = append(names, string(buf[start:i]))
			}
			start = i + 1
		}
	}
	return names, nil
}

// RemoveXattr implements p9.File.
func (f *file) RemoveXattr(attr string) error {
	if err := f.roErr(); err != nil {
		return err
	}
	p, err := f.xattrPath()
	if err != nil {
		return err
	}
	return errno(unix.Removexattr(p, attr))
}

// Lock implements p9.File: locks are the guest's own business (its
// kernel serializes its processes); nothing is taken on the host.
func (f *file) Lock(int, p9.LockType, p9.LockFlags, uint64, uint64, string) (p9.LockStatus, error) {
	return p9.LockStatusOK, nil
}

// inDir checks a modifying operation on one name in this directory.
func (f *file) inDir(name string) error {
	if err := f.roErr(); err != nil {
		return err
	}
	if !f.isDir() {
		return linux.ENOTDIR
	}
	return errno(confine.CheckName(name))
}

// chown gives what the guest made to its caller: vmm runs as root.
func chown(fd int, uid p9.UID, gid p9.GID) error {
	if unix.Geteuid() != 0 {
		return nil
	}
	u, g := int(uid), int(gid)
	if !uid.Ok() {
		u = -1
	}
	if !gid.Ok() {
		g = -1
	}
	return errno(unix.Fchownat(fd, "", u, g, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW))
}

// made stats and chowns a name just made in f.
func (f *file) made(name string, uid p9.UID, gid p9.GID) (p9.QID, error) {
	fd, err := confine.OpenBeneath(f.fd, name, unix.O_PATH, 0)
	if err != nil {
		return p9.QID{}, errno(err)
	}
	defer unix.Close(fd)
	if err := chown(fd, uid, gid); err != nil {
		return p9.QID{}, err
	}
	var st unix.Stat_t
	if err := confine.Fstat(fd, &st); err != nil {
		return p9.QID{}, errno(err)
	}
	return qid(&st), nil
}

// Create implements p9.File.
func (f *file) Create(name string, flags p9.OpenFlags, perm p9.FileMode, uid p9.UID, gid p9.GID) (p9.File, p9.QID, uint32, error) {
	if err := f.inDir(name); err != nil {
		return nil, p9.QID{}, 0, err
	}
	of, err := confine.OpenFlags(uint32(flags), f.s.readOnly)
	if err != nil {
		return nil, p9.QID{}, 0, errno(err)
	}
	fd, err := confine.OpenBeneath(f.fd, name, of|unix.O_CREAT|unix.O_EXCL, uint32(perm.Permissions()))
	if err != nil {
		return nil, p9.QID{}, 0, errno(err)
	}
	// The new file is the inode just opened, whatever the name holds now.
	pfd, err := unix.Open(confine.ProcPath(fd), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = unix.Close(fd)
		return nil, p9.QID{}, 0, errno(err)
	}
	nf, err := f.s.newFile(pfd)
	if err != nil {
		_ = unix.Close(fd)
		return nil, p9.QID{}, 0, err
	}
	nf.open = fd
	if err := chown(pfd, uid, gid); err != nil {
		_ = nf.Close()
		return nil, p9.QID{}, 0, err
	}
	st, err := nf.stat()
	if err != nil {
		_ = nf.Close()
		return nil, p9.QID{}, 0, err
	}
	return nf, qid(&st), 0, nil
}

// Mkdir implements p9.File.
func (f *file) Mkdir(name string, perm p9.FileMode, uid p9.UID, gid p9.GID) (p9.QID, error) {
	if err := f.inDir(name); err != nil {
		return p9.QID{}, err
	}
	if err := unix.Mkdirat(f.fd, name, uint32(perm.Permissions())); err != nil {
		return p9.QID{}, errno(err)
	}
	return f.made(name, uid, gid)
}

// Symlink implements p9.File: the target is only stored; the host never
// follows a link in a share.
func (f *file) Symlink(target, name string, uid p9.UID, gid p9.GID) (p9.QID, error) {
	if err := f.inDir(name); err != nil {
		return p9.QID{}, err
	}
	if target == "" || len(target) >= unix.PathMax {
		return p9.QID{}, linux.EINVAL
	}
	if err := unix.Symlinkat(target, f.fd, name); err != nil {
		return p9.QID{}, errno(err)
	}
	return f.made(name, uid, gid)
}

// Link implements p9.File: target is a file of this share (a fid the
// guest walked to), so the link joins two names inside it.
func (f *file) Link(target p9.File, name string) error {
	if err := f.inDir(name); err != nil {
		return err
	}
	t, ok := target.(*file)
	if !ok || t.s != f.s {
		return linux.EXDEV
	}
	if t.isDir() {
		return linux.EPERM
	}
	return errno(confine.Link(t.fd, t.mode == unix.S_IFLNK, f.fd, name))
}

// Mknod implements p9.File.
func (f *file) Mknod(name string, mode p9.FileMode, _, _ uint32, uid p9.UID, gid p9.GID) (p9.QID, error) {
	if err := f.inDir(name); err != nil {
		return p9.QID{}, err
	}
	if !confine.MknodAllowed(uint32(mode)) {
		return p9.QID{}, linux.EPERM
	}
	if err := unix.Mknodat(f.fd, name, uint32(mode.FileType())|uint32(mode.Permissions()), 0); err != nil {
		return p9.QID{}, errno(err)
	}
	return f.made(name, uid, gid)
}

// Rename implements p9.File: Linux's client uses RENAMEAT first, and
// falls back to RENAME only when the server answers EOPNOTSUPP.
func (f *file) Rename(p9.File, string) error { return linux.EOPNOTSUPP }

// Renamed implements p9.File: nothing to update, descriptors follow
// their inodes.
func (f *file) Renamed(p9.File, string) {}

// RenameAt implements p9.File.
func (f *file) RenameAt(oldName string, newDir p9.File, newName string) error {
	if err := f.inDir(oldName); err != nil {
		return err
	}
	d, ok := newDir.(*file)
	if !ok || d.s != f.s {
		return linux.EXDEV
	}
	if err := d.inDir(newName); err != nil {
		return err
	}
	return errno(unix.Renameat(f.fd, oldName, d.fd, newName))
}

// UnlinkAt implements p9.File.
func (f *file) UnlinkAt(name string, flags uint32) error {
	if err := f.inDir(name); err != nil {
		return err
	}
	return errno(unix.Unlinkat(f.fd, name, int(flags&unix.AT_REMOVEDIR)))
}

// Readdir implements p9.File: entries from the host offset the guest
// gives (the last entry's offset; 0 at the start), about count bytes of
// them (the server trims the reply to count).
func (f *file) Readdir(offset uint64, count uint32) (p9.Dirents, error) {
	if offset > 1<<63-1 {
		return nil, linux.EINVAL
	}
	var ents p9.Dirents
	err := f.opened(func(fd int) error {
		if _, err := unix.Seek(fd, int64(offset), unix.SEEK_SET); err != nil {
			return errno(err)
		}
		buf := make([]byte, min(max(int(count), 512), 64<<10))
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return errno(err)
		}
		for b := buf[:n]; len(b) >= 19; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			reclen := int(uint16(b[16]) | uint16(b[17])<<8)
			if reclen < 19 || reclen > len(b) {
				return linux.EIO
			}
			name := b[19:reclen]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			ino := le64(b[0:])
			typ := p9.FileMode(uint32(b[18]) << 12).QIDType()
			ents = append(ents, p9.Dirent{QID: p9.QID{Type: typ, Path: ino}, Offset: le64(b[8:]), Type: typ, Name: string(name)})
			b = b[reclen:]
		}
		return nil
	})
	return ents, err
}

func le64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

// Readlink implements p9.File.
func (f *file) Readlink() (string, error) {
	if f.mode != unix.S_IFLNK {
		return "", linux.EINVAL
	}
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(f.fd, "", buf)
	if err != nil {
		return "", errno(err)
	}
	return string(buf[:n]), nil
}
