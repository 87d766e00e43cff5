package console

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// terminalState returns fd's terminal attributes, or an error when fd is
// not a terminal.
func terminalState(fd int) (*unix.Termios, error) {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("get terminal attributes of fd %d: %w", fd, err)
	}
	return t, nil
}

// rawMode returns old with the changes of cfmakeraw(3): no line editing,
// echo, signals from keys (Ctrl-C goes to the guest), input CR/NL
// translation or flow control, 8-bit characters, and no output
// processing: the guest's tty layer already sends "\r\n", and a full-screen
// program in the guest expects "\n" to move down only.
func rawMode(old *unix.Termios) *unix.Termios {
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP |
		unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	return &raw
}

func setTerminalState(fd int, t *unix.Termios) error {
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("set terminal attributes of fd %d: %w", fd, err)
	}
	return nil
}
