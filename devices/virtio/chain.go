package virtio

import (
	"encoding/binary"
	"fmt"

	"github.com/vmm-dev/vmm/memory"
)

// Chain is one descriptor chain taken from the available ring, resolved to
// host slices of guest RAM. The slices alias guest memory: the guest can
// change their contents at any time, so a device copies what it validates.
type Chain struct {
	// Head is the chain's first descriptor index, returned through Push.
	Head uint16
	// Readable holds the device-readable buffers in chain order.
	Readable [][]byte
	// Writable holds the device-writable buffers in chain order; they all
	// follow the readable ones (virtio 1.2 §2.7.4.2).
	Writable [][]byte
}

// ReadableLen returns the total size of the readable buffers.
func (c *Chain) ReadableLen() uint64 { return totalLen(c.Readable) }

// WritableLen returns the total size of the writable buffers.
func (c *Chain) WritableLen() uint64 { return totalLen(c.Writable) }

func totalLen(bufs [][]byte) uint64 {
	var n uint64
	for _, b := range bufs {
		n += uint64(len(b))
	}
	return n
}

// descriptor is a struct virtq_desc copied out of guest memory, so the
// guest cannot change it between the checks and the use (virtio 1.2 §2.7.5).
type descriptor struct {
	addr  uint64
	len   uint32
	flags uint16
	next  uint16
}

func loadDescriptor(table []byte, i uint32) descriptor {
	b := table[DescriptorSize*i : DescriptorSize*(i+1)]
	return descriptor{
		addr:  binary.LittleEndian.Uint64(b[0:]),
		len:   binary.LittleEndian.Uint32(b[8:]),
		flags: binary.LittleEndian.Uint16(b[12:]),
		next:  binary.LittleEndian.Uint16(b[14:]),
	}
}

// readChain walks the chain at head into c. Every buffer counts against
// the queue size, the longest chain a driver may build (§2.7.5.3.1); that
// bound also ends any loop, direct or indirect, since each step yields a
// buffer or the one allowed jump into an indirect table.
func (q *Queue) readChain(head uint16, c *Chain) error {
	c.Head = head
	c.Readable = c.Readable[:0]
	c.Writable = c.Writable[:0]
	table, entries := q.desc, uint32(q.size)
	idx, indirect := uint32(head), false
	for {
		if idx >= entries {
			return fmt.Errorf("%w: next index %d past a table of %d", ErrDescriptorChain, idx, entries)
		}
		d := loadDescriptor(table, idx)
		if d.flags&DescFlagIndirect != 0 {
			t, err := q.indirectTable(d, indirect)
			if err != nil {
				return err
			}
			// §2.7.5.3.2: the WRITE flag of the descriptor that points at
			// a table is ignored.
			table, entries, idx, indirect = t, d.len/DescriptorSize, 0, true
			continue
		}
		if len(c.Readable)+len(c.Writable) >= int(q.size) {
			return fmt.Errorf("%w: longer than the queue size %d (a loop?)", ErrDescriptorChain, q.size)
		}
		buf, err := q.mem.Slice(memory.GuestAddr(d.addr), uint64(d.len))
		if err != nil {
			return fmt.Errorf("%w: %w", ErrBufferAddress, err)
		}
		if d.flags&DescFlagWrite != 0 {
			// The device may write all of it: in the VMM's dirty log
			// from now on (memory.MarkDirty), for Diff snapshots.
			q.mem.MarkDirty(memory.GuestAddr(d.addr), uint64(d.len))
			c.Writable = append(c.Writable, buf)
		} else {
			if len(c.Writable) != 0 {
				return fmt.Errorf("%w: descriptor %d", ErrDescriptorOrder, idx)
			}
			c.Readable = append(c.Readable, buf)
		}
		if d.flags&DescFlagNext == 0 {
			return nil
		}
		idx = uint32(d.next)
	}
}

// indirectTable checks d against §2.7.5.3.1 and maps the table it names.
func (q *Queue) indirectTable(d descriptor, nested bool) ([]byte, error) {
	switch {
	case !q.indirect:
		return nil, fmt.Errorf("%w: VIRTIO_F_INDIRECT_DESC was not negotiated", ErrIndirect)
	case nested:
		return nil, fmt.Errorf("%w: indirect descriptor inside an indirect table", ErrIndirect)
	case d.flags&DescFlagNext != 0:
		return nil, fmt.Errorf("%w: both INDIRECT and NEXT set", ErrIndirect)
	case d.len == 0 || d.len%DescriptorSize != 0:
		return nil, fmt.Errorf("%w: table length %d is not a positive multiple of %d", ErrIndirect, d.len, DescriptorSize)
	}
	t, err := q.mem.Slice(memory.GuestAddr(d.addr), uint64(d.len))
	if err != nil {
		return nil, fmt.Errorf("%w: table: %w", ErrBufferAddress, err)
	}
	return t, nil
}
