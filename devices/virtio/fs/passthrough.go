package fs

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/vmm-dev/vmm/devices/virtio/internal/confine"
)

// Timeout is how long the guest may cache names and attributes. It is
// short so that a change made on the host shows in the guest within a
// second (no stale handles), long enough that `find` does not look up
// every name twice.
const Timeout = time.Second

// passthrough is a fuse.RawFileSystem over one host directory. Every
// inode the guest knows is an O_PATH descriptor of the host inode, and
// every operation is relative to one such descriptor with a single
// checked name component: no host path is ever resolved, so `..`,
// symlinks (never followed on the host) and renames of directories
// under a running operation cannot lead outside the share. Node IDs and
// file handles are looked up in tables and unknown ones are errors, not
// panics: the guest kernel is not trusted to send only IDs it was given.
type passthrough struct {
	fuse.RawFileSystem // ENOSYS for what is not implemented here

	readOnly bool

	mu      sync.Mutex
	nodes   map[uint64]*inode   // by node ID; 1 is the share root
	byHost  map[hostID]*inode   // the same host inode gets the same node ID (hard links)
	handles map[uint64]*fdRef   // open files and directories, by fh
	dirs    map[uint64]*dirRead // the readdir state of directory handles
	nextID  uint64
	nextFh  uint64
}

type hostID struct{ dev, ino uint64 }

// fdRef is a descriptor shared by the table and operations in flight:
// the last put closes it, so a FORGET or RELEASE racing with a READ on
// another queue can never make the READ use a closed (and perhaps
// reused) descriptor number.
type fdRef struct {
	fd   int
	refs atomic.Int64
}

func newFdRef(fd int) *fdRef {
	r := &fdRef{fd: fd}
	r.refs.Store(1)
	return r
}

func (r *fdRef) put() {
	if r.refs.Add(-1) == 0 {
		// close(2) on a descriptor this table owns fails only for EINTR
		// or EIO from a network filesystem; the descriptor is gone either way.
		_ = unix.Close(r.fd)
	}
}

type inode struct {
	*fdRef
	id      uint64
	host    hostID
	mode    uint32 // S_IFMT bits; an inode's type never changes
	nlookup uint64 // guarded by passthrough.mu
}

type dirRead struct {
	mu  sync.Mutex
	buf []byte
}

func newPassthrough(root string, readOnly bool) (*passthrough, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open share %s: %w", root, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return nil, fmt.Errorf("stat share %s: %w", root, err)
	}
	p := &passthrough{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		readOnly:      readOnly,
		nodes:         map[uint64]*inode{},
		byHost:        map[hostID]*inode{},
		handles:       map[uint64]*fdRef{},
		dirs:          map[uint64]*dirRead{},
		nextID:        fuse.FUSE_ROOT_ID + 1,
		nextFh:        1,
	}
	rootNode := &inode{fdRef: newFdRef(fd), id: fuse.FUSE_ROOT_ID, host: hostID{st.Dev, st.Ino}, mode: st.Mode & unix.S_IFMT, nlookup: 1}
	p.nodes[rootNode.id] = rootNode
	// The root is not entered in byHost: a LOOKUP of a bind mount of the
	// root inside the share gets its own ID, and FORGET never drops it.
	return p, nil
}

// close releases every descriptor; the device is reset and no operation
// runs any more.
func (p *passthrough) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, n := range p.nodes {
		n.put()
		delete(p.nodes, id)
	}
	clear(p.byHost)
	for fh, h := range p.handles {
		h.put()
		delete(p.handles, fh)
	}
	clear(p.dirs)
}

func (p *passthrough) String() string { return "vmm-virtiofs" }

// node returns the inode of a node ID with a reference the caller puts.
func (p *passthrough) node(id uint64) (*inode, fuse.Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, ok := p.nodes[id]
	if !ok {
		return nil, fuse.Status(unix.ESTALE)
	}
	n.refs.Add(1)
	return n, fuse.OK
}

func (p *passthrough) handle(fh uint64) (*fdRef, fuse.Status) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h, ok := p.handles[fh]
	if !ok {
		return nil, fuse.EBADF
	}
	h.refs.Add(1)
	return h, fuse.OK
}

func (p *passthrough) addHandle(fd int, dir bool) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	fh := p.nextFh
	p.nextFh++
	p.handles[fh] = newFdRef(fd)
	if dir {
		p.dirs[fh] = &dirRead{}
	}
	return fh
}

func (p *passthrough) dropHandle(fh uint64) {
	p.mu.Lock()
	h, ok := p.handles[fh]
	delete(p.handles, fh)
	delete(p.dirs, fh)
	p.mu.Unlock()
	if ok {
		h.put()
	}
}

func checkName(name string) fuse.Status { return errno(confine.CheckName(name)) }

func errno(err error) fuse.Status {
	if err == nil {
		return fuse.OK
	}
	return fuse.ToStatus(err)
}

func procPath(fd int) string { return confine.ProcPath(fd) }

func openBeneath(dirfd int, name string, flags int, mode uint32) (int, error) {
	return confine.OpenBeneath(dirfd, name, flags, mode)
}

func fstat(fd int, st *unix.Stat_t) error { return confine.Fstat(fd, st) }

func fillAttr(a *fuse.Attr, st *unix.Stat_t) {
	*a = fuse.Attr{
		Ino: st.Ino, Size: uint64(st.Size), Blocks: uint64(st.Blocks),
		Atime: uint64(st.Atim.Sec), Atimensec: uint32(st.Atim.Nsec),
		Mtime: uint64(st.Mtim.Sec), Mtimensec: uint32(st.Mtim.Nsec),
		Ctime: uint64(st.Ctim.Sec), Ctimensec: uint32(st.Ctim.Nsec),
		Mode: st.Mode, Nlink: uint32(st.Nlink), Owner: fuse.Owner{Uid: st.Uid, Gid: st.Gid},
		Rdev: uint32(st.Rdev), Blksize: uint32(st.Blksize),
	}
}

// lookup finds name in parent and enters it in the tables with one more
// lookup count, filling out (FUSE_LOOKUP's reply, §5.11 carries it as is).
func (p *passthrough) lookup(parent *inode, name string, out *fuse.EntryOut) fuse.Status {
	if s := checkName(name); !s.Ok() {
		return s
	}
	if parent.mode != unix.S_IFDIR {
		return fuse.ENOTDIR
	}
	fd, err := openBeneath(parent.fd, name, unix.O_PATH, 0)
	if err != nil {
		return errno(err)
	}
	return p.enter(fd, out)
}

// enter takes ownership of the O_PATH descriptor fd.
func (p *passthrough) enter(fd int, out *fuse.EntryOut) fuse.Status {
	var st unix.Stat_t
	if err := fstat(fd, &st); err != nil {
		_ = unix.Close(fd)
		return errno(err)
	}
	key := hostID{st.Dev, st.Ino}
	p.mu.Lock()
	n, ok := p.byHost[key]
	if ok {
		n.nlookup++
		p.mu.Unlock()
		_ = unix.Close(fd) // the inode already has a descriptor
	} else {
		n = &inode{fdRef: newFdRef(fd), id: p.nextID, host: key, mode: st.Mode & unix.S_IFMT, nlookup: 1}
		p.nextID++
		p.nodes[n.id] = n
		p.byHost[key] = n
		p.mu.Unlock()
	}
	*out = fuse.EntryOut{NodeId: n.id}
	fillAttr(&out.Attr, &st)
	out.SetEntryTimeout(Timeout)
	out.SetAttrTimeout(Timeout)
	return fuse.OK
}

func (p *passthrough) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	parent, s := p.node(h.NodeId)
	if !s.Ok() {
		return s
	}
	defer parent.put()
	return p.lookup(parent, name, out)
}

func (p *passthrough) Forget(id, nlookup uint64) {
	if id == fuse.FUSE_ROOT_ID {
		return
	}
	p.mu.Lock()
	n, ok := p.nodes[id]
	if !ok {
		p.mu.Unlock()
		return
	}
	if nlookup < n.nlookup {
		n.nlookup -= nlookup
		p.mu.Unlock()
		return
	}
	delete(p.nodes, id)
	delete(p.byHost, n.host)
	p.mu.Unlock()
	n.put()
}

func (p *passthrough) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	n, s := p.node(in.NodeId)
	if !s.Ok() {
		return s
	}
	defer n.put()
	var st unix.Stat_t
	if err := fstat(n.fd, &st); err != nil {
		return errno(err)
	}
	fillAttr(&out.Attr, &st)
	out.SetTimeout(Timeout)
	return fuse.OK
}

func (p *passthrough) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	if p.readOnly {
		return fuse.EROFS
	}
	n, s := p.node(in.NodeId)
	if !s.Ok() {
		return s
	}
	defer n.put()
	if n.mode != unix.S_IFREG && n.mode != unix.S_IFDIR && in.Valid&^(fuse.FATTR_UID|fuse.FATTR_GID|fuse.FATTR_LOCKOWNER|fuse.FATTR_CTIME) != 0 {
		// Only ownership changes work on a symlink without following it.
		return fuse.Status(unix.EOPNOTSUPP)
	}
	path := procPath(n.fd)
	if mode, ok := in.GetMode(); ok {
		if err := unix.Chmod(path, mode&07777); err != nil {
			return errno(err)
		}
	}
	uid, uok := in.GetUID()
	gid, gok := in.GetGID()
	if uok || gok {
		u, g := -1, -1
		if uok {
			u = int(uid)
		}
		if gok {
			g = int(gid)
		}
		if err := unix.Fchownat(n.fd, "", u, g, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return errno(err)
		}
	}
	if size, ok := in.GetSize(); ok {
		if n.mode != unix.S_IFREG {
			return fuse.EINVAL
		}
		if size > 1<<63-1 {
			return fuse.Status(unix.EFBIG)
		}
		if err := unix.Truncate(path, int64(size)); err != nil {
			return errno(err)
		}
	}
	if in.Valid&(fuse.FATTR_ATIME|fuse.FATTR_MTIME|fuse.FATTR_ATIME_NOW|fuse.FATTR_MTIME_NOW) != 0 {
		ts := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, {Nsec: unix.UTIME_OMIT}}
		switch {
		case in.Valid&fuse.FATTR_ATIME_NOW != 0:
			ts[0].Nsec = unix.UTIME_NOW
		case in.Valid&fuse.FATTR_ATIME != 0:
			ts[0] = unix.Timespec{Sec: int64(in.Atime), Nsec: int64(in.Atimensec % 1e9)}
		}
		switch {
		case in.Valid&fuse.FATTR_MTIME_NOW != 0:
			ts[1].Nsec = unix.UTIME_NOW
		case in.Valid&fuse.FATTR_MTIME != 0:
			ts[1] = unix.Timespec{Sec: int64(in.Mtime), Nsec: int64(in.Mtimensec % 1e9)}
		}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, 0); err != nil {
			return errno(err)
		}
	}
	var st unix.Stat_t
	if err := fstat(n.fd, &st); err != nil {
		return errno(err)
	}
	fillAttr(&out.Attr, &st)
	out.SetTimeout(Timeout)
	return fuse.OK
}

// inDir runs a modifying operation on one checked name in a directory node.
func (p *passthrough) inDir(id uint64, name string, op func(dirfd int) error) fuse.Status {
	if p.readOnly {
		return fuse.EROFS
	}
	if s := checkName(name); !s.Ok() {
		return s
	}
	dir, s := p.node(id)
	if !s.Ok() {
		return s
	}
	defer dir.put()
	if dir.mode != unix.S_IFDIR {
		return fuse.ENOTDIR
	}
	return errno(op(dir.fd))
}

// created enters a just-made name and gives it the caller's ownership:
// vmm runs as root and the guest's user should own what it makes.
func (p *passthrough) created(h *fuse.InHeader, parent uint64, name string, out *fuse.EntryOut) fuse.Status {
	dir, s := p.node(parent)
	if !s.Ok() {
		return s
	}
	defer dir.put()
	fd, err := openBeneath(dir.fd, name, unix.O_PATH, 0)
	if err != nil {
		return errno(err)
	}
	if s := chownCaller(fd, h); !s.Ok() {
		_ = unix.Close(fd)
		return s
	}
	return p.enter(fd, out)
}

func chownCaller(fd int, h *fuse.InHeader) fuse.Status {
	if unix.Geteuid() != 0 {
		return fuse.OK // an unprivileged vmm owns what it makes
	}
	return errno(unix.Fchownat(fd, "", int(h.Uid), int(h.Gid), unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW))
}

func (p *passthrough) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	if s := p.inDir(in.NodeId, name, func(d int) error { return unix.Mkdirat(d, name, in.Mode&^in.Umask&07777) }); !s.Ok() {
		return s
	}
	return p.created(&in.InHeader, in.NodeId, name, out)
}

// Mknod makes only FIFOs, sockets and regular files: a device node made
// by the guest would let it open host devices through the share.
func (p *passthrough) Mknod(_ <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if !confine.MknodAllowed(in.Mode) {
		return fuse.EPERM
	}
	mode := in.Mode&unix.S_IFMT | in.Mode&^in.Umask&07777
	if s := p.inDir(in.NodeId, name, func(d int) error { return unix.Mknodat(d, name, mode, 0) }); !s.Ok() {
		return s
	}
	return p.created(&in.InHeader, in.NodeId, name, out)
}

func (p *passthrough) Symlink(_ <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	// The target is only stored: the host never follows a link here.
	if len(target) >= unix.PathMax || strings.IndexByte(target, 0) >= 0 || target == "" {
		return fuse.EINVAL
	}
	if s := p.inDir(h.NodeId, name, func(d int) error { return unix.Symlinkat(target, d, name) }); !s.Ok() {
		return s
	}
	return p.created(h, h.NodeId, name, out)
}

func (p *passthrough) Readlink(_ <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	n, s := p.node(h.NodeId)
	if !s.Ok() {
		return nil, s
	}
	defer n.put()
	if n.mode != unix.S_IFLNK {
		return nil, fuse.EINVAL
	}
	buf := make([]byte, unix.PathMax)
	k, err := unix.Readlinkat(n.fd, "", buf)
	if err != nil {
		return nil, errno(err)
	}
	return buf[:k], fuse.OK
}

func (p *passthrough) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return p.inDir(h.NodeId, name, func(d int) error { return unix.Unlinkat(d, name, 0) })
}

func (p *passthrough) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return p.inDir(h.NodeId, name, func(d int) error { return unix.Unlinkat(d, name, unix.AT_REMOVEDIR) })
}

func (p *passthrough) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if in.Flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return fuse.EINVAL // RENAME_WHITEOUT makes a device node
	}
	if s := checkName(newName); !s.Ok() {
		return s
	}
	dst, s := p.node(in.Newdir)
	if !s.Ok() {
		return s
	}
	defer dst.put()
	if dst.mode != unix.S_IFDIR {
		return fuse.ENOTDIR
	}
	return p.inDir(in.NodeId, oldName, func(d int) error {
		return unix.Renameat2(d, oldName, dst.fd, newName, uint(in.Flags))
	})
}

func (p *passthrough) Link(_ <-chan struct{}, in *fuse.LinkIn, name string, out *fuse.EntryOut) fuse.Status {
	old, s := p.node(in.Oldnodeid)
	if !s.Ok() {
		return s
	}
	defer old.put()
	if old.mode == unix.S_IFDIR {
		return fuse.EPERM
	}
	// The source is a node of this share, so a hard link can only join
	// two names inside it.
	if s := p.inDir(in.NodeId, name, func(d int) error {
		return confine.Link(old.fd, old.mode == unix.S_IFLNK, d, name)
	}); !s.Ok() {
		return s
	}
	dir, s := p.node(in.NodeId)
	if !s.Ok() {
		return s
	}
	defer dir.put()
	fd, err := openBeneath(dir.fd, name, unix.O_PATH, 0)
	if err != nil {
		return errno(err)
	}
	return p.enter(fd, out)
}

func (p *passthrough) Access(_ <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	n, s := p.node(in.NodeId)
	if !s.Ok() {
		return s
	}
	defer n.put()
	if in.Mask&unix.W_OK != 0 && p.readOnly {
		return fuse.EROFS
	}
	if n.mode == unix.S_IFLNK {
		return fuse.OK
	}
	return errno(unix.Faccessat(unix.AT_FDCWD, procPath(n.fd), in.Mask&7, 0))
}

func openable(n *inode, dir bool) fuse.Status { return errno(confine.Openable(n.mode, dir)) }

func (p *passthrough) openFlags(flags uint32) (int, fuse.Status) {
	f, err := confine.OpenFlags(flags, p.readOnly)
	return f, errno(err)
}

func (p *passthrough) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n, s := p.node(in.NodeId)
	if !s.Ok() {
		return s
	}
	defer n.put()
	if s := openable(n, false); !s.Ok() {
		return s
	}
	flags, s := p.openFlags(in.Flags)
	if !s.Ok() {
		return s
	}
	fd, err := unix.Open(procPath(n.fd), flags, 0)
	if err != nil {
		return errno(err)
	}
	out.Fh = p.addHandle(fd, false)
	return fuse.OK
}

func (p *passthrough) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	flags, s := p.openFlags(in.Flags)
	if !s.Ok() {
		return s
	}
	if in.Mode&unix.S_IFMT != 0 && in.Mode&unix.S_IFMT != unix.S_IFREG {
		return fuse.EINVAL
	}
	var fd int
	if s := p.inDir(in.NodeId, name, func(d int) error {
		var err error
		fd, err = openBeneath(d, name, flags|unix.O_CREAT|int(in.Flags&unix.O_EXCL), in.Mode&^in.Umask&07777)
		return err
	}); !s.Ok() {
		return s
	}
	// The node is the inode just opened, not whatever the name holds now.
	pfd, err := unix.Open(procPath(fd), unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		_ = unix.Close(fd)
		return errno(err)
	}
	if s := chownCaller(pfd, &in.InHeader); !s.Ok() {
		_ = unix.Close(fd)
		_ = unix.Close(pfd)
		return s
	}
	if s := p.enter(pfd, &out.EntryOut); !s.Ok() {
		_ = unix.Close(fd)
		return s
	}
	out.Fh = p.addHandle(fd, false)
	return fuse.OK
}

// fdRead is a READ's result: preadv straight into the guest's buffers
// (go-fuse's ProtocolServer asks for Readv when the reply spans several
// descriptors, as Linux's virtio-fs driver posts one page each), with a
// reference on the handle until go-fuse calls Done.
type fdRead struct {
	h    *fdRef
	off  int64
	size int
}

func (r *fdRead) Size() int { return r.size }
func (r *fdRead) Done()     { r.h.put() }

func (r *fdRead) Bytes(buf []byte) ([]byte, fuse.Status) {
	buf = buf[:min(len(buf), r.size)]
	n, err := preadFull(r.h.fd, buf, r.off)
	if err != nil {
		return nil, errno(err)
	}
	return buf[:n], fuse.OK
}

// Readv implements go-fuse's withReadv.
func (r *fdRead) Readv(dst [][]byte) (int, fuse.Status) {
	total := 0
	for len(dst) > 0 && total < r.size {
		n, err := unix.Preadv(r.h.fd, dst, r.off+int64(total))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if total > 0 {
				break
			}
			return 0, errno(err)
		}
		if n == 0 {
			break
		}
		total += n
		for n > 0 && len(dst) > 0 {
			k := min(n, len(dst[0]))
			dst[0] = dst[0][k:]
			n -= k
			if len(dst[0]) == 0 {
				dst = dst[1:]
			}
		}
	}
	return total, fuse.OK
}

func preadFull(fd int, buf []byte, off int64) (int, error) {
	total := 0
	for total < len(buf) {
		n, err := unix.Pread(fd, buf[total:], off+int64(total))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if total > 0 {
				return total, nil
			}
			return 0, err
		}
		if n == 0 {
			break
		}
		total += n
	}
	return total, nil
}

func (p *passthrough) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	if in.Offset > 1<<63-1 {
		return nil, fuse.EINVAL
	}
	h, s := p.handle(in.Fh)
	if !s.Ok() {
		return nil, s
	}
	return &fdRead{h: h, off: int64(in.Offset), size: min(int(in.Size), len(buf))}, fuse.OK
}

func (p *passthrough) Writev(_ <-chan struct{}, in *fuse.WriteIn, data [][]byte) (uint32, fuse.Status) {
	if p.readOnly {
		return 0, fuse.EROFS
	}
	if in.Offset > 1<<63-1 {
		return 0, fuse.EINVAL
	}
	h, s := p.handle(in.Fh)
	if !s.Ok() {
		return 0, s
	}
	defer h.put()
	// The header's size bounds the write; the payload bounds the header.
	want := int(in.Size)
	var iov [][]byte
	for _, b := range data {
		if want == 0 {
			break
		}
		b = b[:min(len(b), want)]
		want -= len(b)
		iov = append(iov, b)
	}
	total := 0
	for len(iov) > 0 {
		n, err := unix.Pwritev(h.fd, iov, int64(in.Offset)+int64(total))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if total > 0 {
				break
			}
			return 0, errno(err)
		}
		if n == 0 {
			break
		}
		total += n
		for n > 0 && len(iov) > 0 {
			k := min(n, len(iov[0]))
			iov[0] = iov[0][k:]
			n -= k
			if len(iov[0]) == 0 {
				iov = iov[1:]
			}
		}
	}
	return uint32(total), fuse.OK
}

func (p *passthrough) Write(c <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	return p.Writev(c, in, [][]byte{data})
}

func (p *passthrough) Lseek(_ <-chan struct{}, in *fuse.LseekIn, out *fuse.LseekOut) fuse.Status {
	if in.Whence != unix.SEEK_DATA && in.Whence != unix.SEEK_HOLE && in.Whence != unix.SEEK_SET && in.Whence != unix.SEEK_END && in.Whence != unix.SEEK_CUR {
		return fuse.EINVAL
	}
	h, s := p.handle(in.Fh)
	if !s.Ok() {
		return s
	}
	defer h.put()
	off, err := unix.Seek(h.fd, int64(in.Offset), int(in.Whence))
	if err != nil {
		return errno(err)
	}
	out.Offset = uint64(off)
	return fuse.OK
}

func (p *passthrough) Release(_ <-chan struct{}, in *fuse.ReleaseIn) { p.dropHandle(in.Fh) }
func (p *passthrough) ReleaseDir(in *fuse.ReleaseIn)                 { p.dropHandle(in.Fh) }

func (p *passthrough) Flush(_ <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	h, s := p.handle(in.Fh)
	if !s.Ok() {
		return s
	}
	h.put()
	return fuse.OK
}

func (p *passthrough) Fsync(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	h, s := p.handle(in.Fh)
	if !s.Ok() {
		return s
	}
	defer h.put()
	if in.FsyncFlags&1 != 0 { // FUSE_FSYNC_FDATASYNC
		return errno(unix.Fdatasync(h.fd))
	}
	return errno(unix.Fsync(h.fd))
}

func (p *passthrough) FsyncDir(c <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return p.Fsync(c, in)
}

func (p *passthrough) Fallocate(_ <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	if p.readOnly {
		return fuse.EROFS
	}
	if in.Offset > 1<<63-1 || in.Length > 1<<63-1 {
		return fuse.EINVAL
	}
	h, s := p.handle(in.Fh)
	if !s.Ok() {
		return s
	}
	defer h.put()
	return errno(unix.Fallocate(h.fd, in.Mode, int64(in.Offset), int64(in.Length)))
}

func (p *passthrough) StatFs(_ <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	n, s := p.node(h.NodeId)
	if !s.Ok() {
		return s
	}
	defer n.put()
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(n.fd, &st); err != nil {
		return errno(err)
	}
	out.FromStatfsT(&st)
	return fuse.OK
}

func (p *passthrough) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n, s := p.node(in.NodeId)
	if !s.Ok() {
		return s
	}
	defer n.put()
	if s := openable(n, true); !s.Ok() {
		return s
	}
	fd, err := unix.Open(procPath(n.fd), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return errno(err)
	}
	out.Fh = p.addHandle(fd, true)
	return fuse.OK
}

func (p *passthrough) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return p.readDir(in, out, false)
}

func (p *passthrough) ReadDirPlus(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return p.readDir(in, out, true)
}

// readDir lists the directory from the host offset the guest gives (the
// d_off of the last entry it got; 0 at the start), as many entries as
// fit in the reply.
func (p *passthrough) readDir(in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	if in.Offset > 1<<63-1 {
		return fuse.EINVAL
	}
	h, s := p.handle(in.Fh)
	if !s.Ok() {
		return s
	}
	defer h.put()
	p.mu.Lock()
	d, ok := p.dirs[in.Fh]
	var dirNode *inode
	if plus {
		dirNode = p.nodes[in.NodeId]
	}
	p.mu.Unlock()
	if !ok {
		return fuse.ENOTDIR
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := unix.Seek(h.fd, int64(in.Offset), unix.SEEK_SET); err != nil {
		return errno(err)
	}
	if d.buf == nil {
		d.buf = make([]byte, 32<<10)
	}
	for {
		n, err := unix.Getdents(h.fd, d.buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return errno(err)
		}
		if n == 0 {
			return fuse.OK
		}
		for b := d.buf[:n]; len(b) >= 19; {
			// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
			reclen := int(uint16(b[16]) | uint16(b[17])<<8)
			if reclen < 19 || reclen > len(b) {
				return fuse.EIO
			}
			ino := le64(b[0:])
			off := le64(b[8:])
			typ := uint32(b[18])
			name := b[19:reclen]
			if i := indexNUL(name); i >= 0 {
				name = name[:i]
			}
			e := fuse.DirEntry{Name: string(name), Ino: ino, Off: off, Mode: typ << 12}
			if !plus {
				if !out.AddDirEntry(e) {
					return fuse.OK
				}
			} else {
				eo := out.AddDirLookupEntry(e)
				if eo == nil {
					return fuse.OK
				}
				if e.Name != "." && e.Name != ".." && dirNode != nil {
					// An entry gone since getdents keeps node ID 0,
					// which the guest skips.
					var entry fuse.EntryOut
					if p.lookup(dirNode, e.Name, &entry).Ok() {
						*eo = entry
					}
				}
			}
			b = b[reclen:]
		}
	}
}

func le64(b []byte) uint64 {
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// xattrPath is where the xattr calls go: regular files and directories
// only, for the reason procPath gives.
func (p *passthrough) xattrNode(id uint64) (*inode, fuse.Status) {
	n, s := p.node(id)
	if !s.Ok() {
		return nil, s
	}
	if n.mode != unix.S_IFREG && n.mode != unix.S_IFDIR {
		n.put()
		return nil, fuse.Status(unix.EOPNOTSUPP)
	}
	return n, fuse.OK
}

func (p *passthrough) GetXAttr(_ <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	n, s := p.xattrNode(h.NodeId)
	if !s.Ok() {
		return 0, s
	}
	defer n.put()
	k, err := unix.Getxattr(procPath(n.fd), attr, dest)
	if err != nil {
		return 0, errno(err)
	}
	return uint32(k), fuse.OK
}

func (p *passthrough) ListXAttr(_ <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	n, s := p.xattrNode(h.NodeId)
	if !s.Ok() {
		return 0, s
	}
	defer n.put()
	k, err := unix.Listxattr(procPath(n.fd), dest)
	if err != nil {
		return 0, errno(err)
	}
	return uint32(k), fuse.OK
}

func (p *passthrough) SetXAttr(_ <-chan struct{}, in *fuse.SetXAttrIn, attr string, data []byte) fuse.Status {
	if p.readOnly {
		return fuse.EROFS
	}
	n, s := p.xattrNode(in.NodeId)
	if !s.Ok() {
		return s
	}
	defer n.put()
	data = data[:min(len(data), int(in.Size))]
	return errno(unix.Setxattr(procPath(n.fd), attr, data, int(in.Flags)))
}

func (p *passthrough) RemoveXAttr(_ <-chan struct{}, h *fuse.InHeader, attr string) fuse.Status {
	if p.readOnly {
		return fuse.EROFS
	}
	n, s := p.xattrNode(h.NodeId)
	if !s.Ok() {
		return s
	}
	defer n.put()
	return errno(unix.Removexattr(procPath(n.fd), attr))
}
