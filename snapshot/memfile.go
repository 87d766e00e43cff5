package snapshot

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// PageSize is the unit of the memory file and of KVM's dirty log.
const PageSize = 4096

// ErrMemoryFile reports a memory file that cannot back the snapshot's
// guest RAM.
var ErrMemoryFile = errors.New("unusable guest memory file")

// WriteMemory writes guest RAM, its regions back to back, to path: a
// file exactly as long as the RAM. With dirty nil every page is written
// (a Full snapshot), except all-zero pages, which stay holes that read
// back as zeros. With dirty set (a Diff snapshot), only the pages whose
// bit is set in dirty[region] (one bit per page, as KVM_GET_DIRTY_LOG
// gives them) are written, at their offsets, and everything else is a
// hole: MergeDiff lays such a file over a full one.
func WriteMemory(path string, regions [][]byte, dirty [][]uint64) (written int64, err error) {
	if dirty != nil && len(dirty) != len(regions) {
		return 0, fmt.Errorf("write guest memory: %d dirty bitmaps for %d regions", len(dirty), len(regions))
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("write guest memory: %w", err)
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	var total int64
	for _, r := range regions {
		total += int64(len(r))
	}
	if err := f.Truncate(total); err != nil {
		return 0, fmt.Errorf("write guest memory %s: size %d: %w", path, total, err)
	}
	var off int64
	for i, r := range regions {
		for p := 0; p < len(r)/PageSize; p++ {
			page := r[p*PageSize : (p+1)*PageSize]
			if dirty != nil {
				if w := p / 64; w >= len(dirty[i]) || dirty[i][w]&(1<<(p%64)) == 0 {
					continue
				}
			} else if allZero(page) {
				continue
			}
			if _, err := f.WriteAt(page, off+int64(p*PageSize)); err != nil {
				return written, fmt.Errorf("write guest memory %s at %#x: %w", path, off+int64(p*PageSize), err)
			}
			written += PageSize
		}
		off += int64(len(r))
	}
	return written, f.Sync()
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// MergeDiff writes the data extents of the sparse diff file over base, so
// that base then holds the later snapshot's memory. Both files must be
// the same size.
func MergeDiff(base, diff string) error {
	d, err := os.Open(diff)
	if err != nil {
		return fmt.Errorf("merge memory diff: %w", err)
	}
	defer d.Close()
	b, err := os.OpenFile(base, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("merge memory diff: %w", err)
	}
	defer b.Close()
	ds, err := d.Stat()
	if err != nil {
		return fmt.Errorf("merge memory diff: %w", err)
	}
	bs, err := b.Stat()
	if err != nil {
		return fmt.Errorf("merge memory diff: %w", err)
	}
	if ds.Size() != bs.Size() {
		return fmt.Errorf("merge memory diff: %w: diff %s is %d bytes, base %s %d", ErrMemoryFile, diff, ds.Size(), base, bs.Size())
	}
	fd := int(d.Fd())
	for off := int64(0); off < ds.Size(); {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // no data after off
		}
		if err != nil {
			return fmt.Errorf("merge memory diff %s: SEEK_DATA: %w", diff, err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("merge memory diff %s: SEEK_HOLE: %w", diff, err)
		}
		if _, err := io.Copy(io.NewOffsetWriter(b, start), io.NewSectionReader(d, start, end-start)); err != nil {
			return fmt.Errorf("merge memory diff %s at %#x: %w", diff, start, err)
		}
		off = end
	}
	return b.Sync()
}

// OpenMemory opens a memory file for a restore and checks that it is
// exactly size bytes long.
func OpenMemory(path string, size uint64) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMemoryFile, err)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%w: %w", ErrMemoryFile, err), f.Close())
	}
	if uint64(st.Size()) != size {
		return nil, errors.Join(fmt.Errorf("%w: %s is %d bytes, the snapshot's guest has %d bytes of RAM",
			ErrMemoryFile, path, st.Size(), size), f.Close())
	}
	return f, nil
}
