// Package tap opens Linux TAP interfaces (/dev/net/tun) as the host side
// of a virtual NIC: one read returns one Ethernet frame, one write sends
// one, each preceded by a struct virtio_net_hdr (IFF_VNET_HDR), so a
// virtio-net device passes guest headers through unchanged.
//
// The descriptor is non-blocking and registered with Go's poller: a
// goroutine waiting for frames holds no OS thread, and deadlines wake it.
package tap

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// TUNPath is the TUN/TAP clone device.
const TUNPath = "/dev/net/tun"

// VnetHdrSize is the size of struct virtio_net_hdr_v1 (with num_buffers),
// the header virtio 1.x devices use (virtio 1.2 §5.1.6).
const VnetHdrSize = 12

// Offload flags for SetOffload: what the kernel may hand us in frames it
// delivers (linux/if_tun.h TUN_F_*).
const (
	OffloadCSUM   = unix.TUN_F_CSUM    // partial checksums (NEEDS_CSUM)
	OffloadTSO4   = unix.TUN_F_TSO4    // TCP segmentation, IPv4
	OffloadTSO6   = unix.TUN_F_TSO6    // TCP segmentation, IPv6
	OffloadTSOECN = unix.TUN_F_TSO_ECN // TSO frames with CWR set
)

// Sentinel errors; callers branch on them with errors.Is.
var (
	// ErrNotTAP: an interface of that name exists and is not a TAP (a
	// bridge, a veth, a TUN, lo...), or is a multi-queue TAP.
	ErrNotTAP = errors.New("interface exists and is not a single-queue TAP")
	// ErrPermission: creating or configuring the TAP needs CAP_NET_ADMIN.
	ErrPermission = errors.New("permission denied: creating a TAP needs CAP_NET_ADMIN " +
		"(run as root, or create it beforehand with `ip tuntap add NAME mode tap user $USER`)")
	// ErrBusy: the TAP is already attached to another process.
	ErrBusy = errors.New("TAP is in use by another process")
	// ErrNoTUN: /dev/net/tun is missing (the tun module is not loaded).
	ErrNoTUN = errors.New(TUNPath + " is missing (load the tun module: modprobe tun)")
	// ErrName: the name does not fit IFNAMSIZ or contains a '/'.
	ErrName = errors.New("invalid interface name")
)

// Device is one open TAP queue.
type Device struct {
	file    *os.File
	fd      int
	name    string
	created bool
}

// Open attaches to the TAP interface name, creating it if it does not
// exist (name "" lets the kernel pick tapN). The interface is brought up.
//
// A TAP created here is not persistent: the kernel removes it when its last
// descriptor closes, so Close (or the process dying) cleans it up. An
// existing TAP, e.g. one made with `ip tuntap add`, is left as it was.
func Open(name string) (*Device, error) {
	if len(name) >= unix.IFNAMSIZ || containsSlash(name) {
		return nil, fmt.Errorf("open TAP %q: %w: at most %d bytes, no '/'", name, ErrName, unix.IFNAMSIZ-1)
	}
	fd, err := unix.Open(TUNPath, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) {
			return nil, fmt.Errorf("open TAP %q: %w: %w", name, ErrNoTUN, err)
		}
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return nil, fmt.Errorf("open TAP %q: %s: %w: %w", name, TUNPath, ErrPermission, err)
		}
		return nil, fmt.Errorf("open TAP %q: %s: %w", name, TUNPath, err)
	}
	d, err := attach(fd, name)
	if err != nil {
		return nil, errors.Join(err, closeFD(fd))
	}
	// A non-blocking descriptor makes os.NewFile register it with the poller.
	d.file = os.NewFile(uintptr(fd), "tap:"+d.name)
	if err := d.bringUp(); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

func closeFD(fd int) error {
	if err := unix.Close(fd); err != nil {
		return fmt.Errorf("close %s: %w", TUNPath, err)
	}
	return nil
}

func containsSlash(s string) bool {
	for i := range len(s) {
		if s[i] == '/' {
			return true
		}
	}
	return false
}

// attach runs TUNSETIFF. It first asks for a new interface only
// (IFF_TUN_EXCL fails with EBUSY if the name exists), which tells without a
// race whether this process created the interface; then it attaches to the
// existing one.
func attach(fd int, name string) (*Device, error) {
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	created := true
	ifr, err := setIFF(fd, name, flags|unix.IFF_TUN_EXCL)
	if errors.Is(err, unix.EBUSY) && name != "" {
		created = false
		ifr, err = setIFF(fd, name, flags)
	}
	if err != nil {
		return nil, ifaceError(name, created, err)
	}
	d := &Device{fd: fd, name: ifr.Name(), created: created}
	if err := setVnetHdrSize(fd, d.name, VnetHdrSize); err != nil {
		return nil, err
	}
	return d, nil
}

func setIFF(fd int, name string, flags uint16) (*unix.Ifreq, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return nil, err
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return nil, err
	}
	return ifr, nil
}

// ifaceError explains a TUNSETIFF failure. The kernel answers EINVAL when
// the name belongs to an interface of another kind, or to a TAP whose
// IFF_MULTI_QUEUE setting differs from ours; EBUSY when a single-queue TAP
// already has a reader.
func ifaceError(name string, creating bool, err error) error {
	switch {
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return fmt.Errorf("TAP %q: %w: %w", name, ErrPermission, err)
	case errors.Is(err, unix.EINVAL) && !creating:
		return fmt.Errorf("TAP %q: %w (%s): %w", name, ErrNotTAP, describeInterface(name), err)
	case errors.Is(err, unix.EBUSY) && !creating:
		return fmt.Errorf("TAP %q: %w: %w", name, ErrBusy, err)
	}
	return fmt.Errorf("TAP %q: TUNSETIFF: %w", name, err)
}

// describeInterface says what kind of interface name is, from sysfs, for
// the ErrNotTAP message.
func describeInterface(name string) string {
	dir := "/sys/class/net/" + name
	flags, err := os.ReadFile(dir + "/tun_flags")
	switch {
	case err == nil:
		return fmt.Sprintf("a TUN/TAP device with tun_flags %s", trimNewline(flags))
	case !errors.Is(err, os.ErrNotExist):
		return "unknown kind"
	}
	if _, err := os.Stat(dir + "/bridge"); err == nil {
		return "a bridge"
	}
	if kind, err := os.ReadFile(dir + "/type"); err == nil {
		return fmt.Sprintf("not a TUN/TAP device, ARP type %s", trimNewline(kind))
	}
	return "not a TUN/TAP device"
}

func trimNewline(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return string(b)
}

// Name returns the interface name.
func (d *Device) Name() string { return d.name }

// Fd returns the non-blocking descriptor. Reads and writes on it move one
// frame each; use SyscallConn to wait for readiness through the poller.
func (d *Device) Fd() int { return d.fd }

// Created reports whether Open created the interface (and so whether it
// disappears on Close).
func (d *Device) Created() bool { return d.created }

// SyscallConn gives access to the descriptor under the poller: RawConn's
// Read and Write call their function again when the descriptor becomes
// ready after EAGAIN.
func (d *Device) SyscallConn() (syscall.RawConn, error) { return d.file.SyscallConn() }

// SetReadDeadline wakes a RawConn.Read waiting for a frame at t (a past t:
// now) with os.ErrDeadlineExceeded.
func (d *Device) SetReadDeadline(t time.Time) error { return d.file.SetReadDeadline(t) }

// SetWriteDeadline does the same for RawConn.Write.
func (d *Device) SetWriteDeadline(t time.Time) error { return d.file.SetWriteDeadline(t) }

// SetVnetHdrSize sets the size of the header before each frame
// (TUNSETVNETHDRSZ); Open sets VnetHdrSize.
func (d *Device) SetVnetHdrSize(n int) error {
	return d.control(func(fd int) error { return setVnetHdrSize(fd, d.name, n) })
}

func setVnetHdrSize(fd int, name string, n int) error {
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, n); err != nil {
		return fmt.Errorf("TAP %s: TUNSETVNETHDRSZ %d: %w", name, n, err)
	}
	return nil
}

// SetOffload tells the kernel which offloads the reader accepts in frames
// it delivers (TUNSETOFFLOAD, Offload* flags). The kernel ignores the TSO
// flags without OffloadCSUM.
func (d *Device) SetOffload(flags uint) error {
	return d.control(func(fd int) error {
		if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, int(flags)); err != nil {
			return fmt.Errorf("TAP %s: TUNSETOFFLOAD %#x: %w", d.name, flags, err)
		}
		return nil
	})
}

// Flags returns the interface's TUN flags as the kernel reports them
// (TUNGETIFF): IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_PERSIST...
func (d *Device) Flags() (uint16, error) {
	var flags uint16
	err := d.control(func(fd int) error {
		ifr, err := unix.NewIfreq("")
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
			return fmt.Errorf("TAP %s: TUNGETIFF: %w", d.name, err)
		}
		flags = ifr.Uint16()
		return nil
	})
	return flags, err
}

// control runs f on the descriptor while the file keeps it open.
func (d *Device) control(f func(fd int) error) error {
	rc, err := d.file.SyscallConn()
	if err != nil {
		return fmt.Errorf("TAP %s: %w", d.name, err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return fmt.Errorf("TAP %s: %w", d.name, err)
	}
	return ferr
}

// bringUp sets IFF_UP: a TAP that is down drops what the reader writes
// (EIO) and never has frames to read. Failing on an interface this process
// created is an error; on an existing one it is only logged, since a user
// without CAP_NET_ADMIN may own a TAP that someone else brings up.
func (d *Device) bringUp() error {
	up, err := IsUp(d.name)
	if err == nil && up {
		return nil
	}
	if err == nil {
		err = setUp(d.name)
	}
	if err != nil && d.created {
		return err
	}
	if err != nil {
		slog.Warn("TAP is down and cannot be brought up; frames will be dropped until it is",
			"tap", d.name, "err", err)
	}
	return nil
}

// Close releases the descriptor. A TAP that Open created disappears with
// it (it was not made persistent).
func (d *Device) Close() error {
	if err := d.file.Close(); err != nil {
		return fmt.Errorf("close TAP %s: %w", d.name, err)
	}
	return nil
}
