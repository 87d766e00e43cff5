// Command vsockx moves deterministic streams through vmm's virtio-vsock
// device in the end-to-end scenarios, from either side:
//
//	vsockx guest-serve   PORT N BYTES SEND RECV   (guest: AF_VSOCK listener)
//	vsockx guest-connect PORT N BYTES SEND RECV   (guest: to CID 2, PORT)
//	vsockx host-serve    PATH N BYTES SEND RECV   (host: unix listener PATH)
//	vsockx host-connect  UDS PORT N BYTES SEND RECV (host: CONNECT PORT on UDS)
//
// Each of N concurrent connections sends BYTES of the stream seeded SEND,
// half-closes, and reads to EOF, checking it got BYTES of the stream
// seeded RECV. The last line says how many connections were right, as
// "key=value" words named after the mode and port (guest_serve_1234_ok=1;
// host-serve takes the port from PATH's "_N" suffix), prefixed "@@GUEST"
// in the guest; the exit status is 0 only if all were right.
package main

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vsockx:", err)
		os.Exit(1)
	}
}

// stream is the deterministic byte stream seeded seed, n bytes long.
type stream struct {
	r    *rand.Rand
	left int64
	buf  [8]byte
	have int
}

func newStream(seed uint64, n int64) *stream {
	return &stream{r: rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15+1)), left: n}
}

func (s *stream) Read(p []byte) (int, error) {
	if s.left == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && s.left > 0 {
		if s.have == 0 {
			binary.LittleEndian.PutUint64(s.buf[:], s.r.Uint64())
			s.have = 8
		}
		k := copy(p[n:], s.buf[8-s.have:])
		k = int(min(int64(k), s.left))
		s.have -= k
		s.left -= int64(k)
		n += k
	}
	return n, nil
}

func digest(seed uint64, n int64) string {
	h := md5.New()
	_, _ = io.Copy(h, newStream(seed, n))
	return hex.EncodeToString(h.Sum(nil))
}

// rw is one connection: a reader, a writer and a half-close.
type rw interface {
	io.ReadWriter
	CloseWrite() error
	Close() error
}

type result struct {
	in  int64
	ok  bool
	err error
}

// String spells the error out: fmt prints an unexported error field of a
// struct as a pointer.
func (r result) String() string {
	return fmt.Sprintf("{in:%d ok:%v err:%v}", r.in, r.ok, r.err)
}

// exchange sends the SEND stream while reading the other side's.
func exchange(c rw, bytesN int64, send uint64, want string) result {
	var werr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, werr = io.CopyBuffer(c, newStream(send, bytesN), make([]byte, 64<<10))
		if werr == nil {
			werr = c.CloseWrite()
		}
	}()
	h := md5.New()
	in, rerr := io.CopyBuffer(h, c, make([]byte, 64<<10))
	wg.Wait()
	err := errors.Join(werr, rerr, c.Close())
	got := hex.EncodeToString(h.Sum(nil))
	return result{in: in, ok: err == nil && in == bytesN && got == want, err: err}
}

// vconn is an AF_VSOCK stream on a raw descriptor (net.FileConn does not
// know the family).
type vconn struct{ fd int }

func (c vconn) Read(p []byte) (int, error) {
	for {
		n, err := unix.Read(c.fd, p)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 && len(p) > 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

func (c vconn) Write(p []byte) (int, error) {
	done := 0
	for done < len(p) {
		n, err := unix.Write(c.fd, p[done:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return done, err
		}
		done += n
	}
	return done, nil
}

func (c vconn) CloseWrite() error { return unix.Shutdown(c.fd, unix.SHUT_WR) }
func (c vconn) Close() error      { return unix.Close(c.fd) }

type unixRW struct{ *net.UnixConn }

func args(a []string, n int) ([]int64, error) {
	if len(a) != n {
		return nil, fmt.Errorf("want %d numbers, got %q", n, a)
	}
	v := make([]int64, n)
	for i, s := range a {
		x, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", s, err)
		}
		v[i] = x
	}
	return v, nil
}

func run(a []string) error {
	if len(a) < 1 {
		return errors.New("usage: vsockx guest-serve|guest-connect|host-serve|host-connect ...")
	}
	mode, a := a[0], a[1:]
	label := ""
	start := time.Now()
	var results []result
	var err error
	switch mode {
	case "guest-serve", "guest-connect":
		if len(a) != 5 {
			return fmt.Errorf("%s PORT N BYTES SEND RECV", mode)
		}
		var v []int64
		if v, err = args(a, 5); err != nil {
			return err
		}
		label = a[0]
		results, err = guest(mode == "guest-serve", uint32(v[0]), int(v[1]), v[2], uint64(v[3]), uint64(v[4]))
	case "host-serve":
		if len(a) != 5 {
			return errors.New("host-serve PATH N BYTES SEND RECV")
		}
		var v []int64
		if v, err = args(a[1:], 4); err != nil {
			return err
		}
		label = a[0][strings.LastIndex(a[0], "_")+1:]
		results, err = hostServe(a[0], int(v[0]), v[1], uint64(v[2]), uint64(v[3]))
	case "host-connect":
		if len(a) != 6 {
			return errors.New("host-connect UDS PORT N BYTES SEND RECV")
		}
		var v []int64
		if v, err = args(a[1:], 5); err != nil {
			return err
		}
		label = a[1]
		results, err = hostConnect(a[0], uint32(v[0]), int(v[1]), v[2], uint64(v[3]), uint64(v[4]))
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		return err
	}
	ok, in := 0, int64(0)
	var errs []string
	for _, r := range results {
		in += r.in
		if r.ok {
			ok++
		} else if r.err != nil && len(errs) < 3 {
			errs = append(errs, strings.ReplaceAll(r.err.Error(), " ", "_"))
		}
	}
	prefix := ""
	if strings.HasPrefix(mode, "guest") {
		prefix = "@@GUEST "
	}
	// One key set per mode and port, e.g. guest_serve_1234_ok.
	key := strings.ReplaceAll(mode, "-", "_") + "_" + label
	fmt.Printf("%s%s_ok=%d %s_n=%d %s_in=%d %s_ms=%d %s_err=%s\n", prefix, key, ok, key, len(results),
		key, in, key, time.Since(start).Milliseconds(), key, strings.Join(append(errs, "none")[:1], ","))
	if ok != len(results) {
		os.Exit(2)
	}
	return nil
}

func guest(serve bool, port uint32, n int, bytesN int64, send, recv uint64) ([]result, error) {
	want := digest(recv, bytesN)
	results := make([]result, n)
	var wg sync.WaitGroup
	if serve {
		l, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("vsock socket: %w", err)
		}
		defer unix.Close(l)
		if err := unix.Bind(l, &unix.SockaddrVM{CID: unix.VMADDR_CID_ANY, Port: port}); err != nil {
			return nil, fmt.Errorf("bind vsock port %d: %w", port, err)
		}
		if err := unix.Listen(l, 64); err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		fmt.Printf("@@GUEST vsock_listening port=%d\n", port)
		for i := range n {
			fd, _, err := unix.Accept(l)
			if err != nil {
				return nil, fmt.Errorf("accept: %w", err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = exchange(vconn{fd}, bytesN, send, want)
			}()
		}
		wg.Wait()
		return results, nil
	}
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err == nil {
				err = unix.Connect(fd, &unix.SockaddrVM{CID: unix.VMADDR_CID_HOST, Port: port})
			}
			if err != nil {
				results[i] = result{err: fmt.Errorf("connect to CID 2 port %d: %w", port, err)}
				return
			}
			results[i] = exchange(vconn{fd}, bytesN, send, want)
		}()
	}
	wg.Wait()
	return results, nil
}

func hostServe(path string, n int, bytesN int64, send, recv uint64) ([]result, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return serve(l, n, bytesN, send, recv)
}

// serve takes n connections on l, each exchanging streams. PATH exists
// from bind(2) but refuses connections until listen(2): a caller that
// must not race the listener listens first and hands it here.
func serve(l *net.UnixListener, n int, bytesN int64, send, recv uint64) ([]result, error) {
	want := digest(recv, bytesN)
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		c, err := l.AcceptUnix()
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = exchange(unixRW{c}, bytesN, send, want)
		}()
	}
	wg.Wait()
	return results, nil
}

// hostConnect retries until the guest's listener answers: the guest may
// still be booting.
func hostConnect(uds string, port uint32, n int, bytesN int64, send, recv uint64) ([]result, error) {
	want := digest(recv, bytesN)
	results := make([]result, n)
	var wg sync.WaitGroup
	deadline := time.Now().Add(180 * time.Second)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := dialGuest(uds, port)
				if err == nil {
					results[i] = exchange(unixRW{c}, bytesN, send, want)
					return
				}
				if time.Now().After(deadline) {
					results[i] = result{err: err}
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return results, nil
}

// dialGuest runs Firecracker's handshake: "CONNECT <port>\n", then
// "OK <host_port>\n" before the stream.
func dialGuest(uds string, port uint32) (*net.UnixConn, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: uds, Net: "unix"})
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(c, "CONNECT %d\n", port); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var line []byte
	var b [1]byte
	for len(line) < 32 {
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return nil, errors.Join(fmt.Errorf("no OK: %w", err), c.Close())
		}
		if b[0] == '\n' {
			break
		}
		line = append(line, b[0])
	}
	_ = c.SetReadDeadline(time.Time{})
	if !bytes.HasPrefix(line, []byte("OK ")) {
		return nil, errors.Join(fmt.Errorf("answer %q", line), c.Close())
	}
	return c, nil
}
