// Command fcapi is a Firecracker API client for level-1 scripts, which
// have no HTTP client that speaks over a unix socket (busybox has none):
//
//	fcapi call SOCK METHOD PATH [BODY]   one request; prints "CODE BODY"
//	fcapi wait SOCK SECONDS              poll GET / until it answers
//
// call exits 0 on a 2xx answer, 1 otherwise; wait prints the
// milliseconds it waited ("waited_ms=N") and exits 1 if the socket never
// answered.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fcapi:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: fcapi call SOCK METHOD PATH [BODY] | fcapi wait SOCK SECONDS")

func run(args []string) error {
	if len(args) < 1 {
		return errUsage
	}
	switch args[0] {
	case "call":
		if len(args) != 4 && len(args) != 5 {
			return errUsage
		}
		body := ""
		if len(args) == 5 {
			body = args[4]
		}
		code, resp, err := call(client(args[1], 30*time.Second), args[2], args[3], body)
		if err != nil {
			return err
		}
		fmt.Printf("%d %s\n", code, strings.TrimSpace(resp))
		if code/100 != 2 {
			return fmt.Errorf("%s %s: HTTP %d", args[2], args[3], code)
		}
		return nil
	case "wait":
		if len(args) != 3 {
			return errUsage
		}
		secs, err := strconv.ParseFloat(args[2], 64)
		if err != nil {
			return fmt.Errorf("wait: seconds %q: %w", args[2], err)
		}
		ms, err := wait(args[1], time.Duration(secs*float64(time.Second)))
		if err != nil {
			return err
		}
		fmt.Printf("waited_ms=%d\n", ms)
		return nil
	}
	return errUsage
}

func client(sock string, timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}},
	}
}

func call(c *http.Client, method, path, body string) (int, string, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://localhost"+path, r)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	return resp.StatusCode, string(b), nil
}

// wait polls GET / every millisecond until it answers 200.
func wait(sock string, limit time.Duration) (int64, error) {
	start := time.Now()
	c := client(sock, time.Second)
	for time.Since(start) < limit {
		if code, _, err := call(c, "GET", "/", ""); err == nil && code == http.StatusOK {
			return time.Since(start).Milliseconds(), nil
		}
		time.Sleep(time.Millisecond)
	}
	return 0, fmt.Errorf("wait: %s did not answer GET / within %v", sock, limit)
}
