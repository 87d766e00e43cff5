package tap

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// IsUp reports whether the interface name has IFF_UP set (SIOCGIFFLAGS).
func IsUp(name string) (bool, error) {
	var up bool
	err := withInetSocket(func(s int) error {
		flags, err := ifFlags(s, name)
		up = flags&unix.IFF_UP != 0
		return err
	})
	return up, err
}

// setUp sets IFF_UP on name, keeping its other flags (SIOCSIFFLAGS). The
// interface ioctls need a socket of any family; AF_INET is always there.
func setUp(name string) error {
	return withInetSocket(func(s int) error {
		flags, err := ifFlags(s, name)
		if err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return fmt.Errorf("interface %q: %w", name, err)
		}
		ifr.SetUint16(flags | unix.IFF_UP)
		if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
				return fmt.Errorf("bring up %s: %w: %w", name, ErrPermission, err)
			}
			return fmt.Errorf("bring up %s: SIOCSIFFLAGS: %w", name, err)
		}
		return nil
	})
}

func ifFlags(s int, name string) (uint16, error) {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return 0, fmt.Errorf("interface %q: %w", name, err)
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return 0, fmt.Errorf("interface %s: SIOCGIFFLAGS: %w", name, err)
	}
	return ifr.Uint16(), nil
}

func withInetSocket(f func(s int) error) error {
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for interface ioctls: %w", err)
	}
	ferr := f(s)
	if err := unix.Close(s); err != nil && ferr == nil {
		ferr = fmt.Errorf("close socket: %w", err)
	}
	return ferr
}
