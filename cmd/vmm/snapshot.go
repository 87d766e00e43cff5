package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vmm-dev/vmm/api"
	"github.com/vmm-dev/vmm/console"
	"github.com/vmm-dev/vmm/snapshot"
)

// The snapshot commands speak the API's language: `vmm snapshot create`
// is PATCH /vm and PUT /snapshot/create sent to a running VMM's API
// socket (`vmm firecracker --api-sock`), `vmm restore` is a new VMM
// process that starts with PUT /snapshot/load, with the same field
// names as flags.

func snapshotCommand() *cli.Command {
	sock := &cli.StringFlag{Name: "api-sock", Required: true, Usage: "the running VMM's API `SOCKET` (vmm firecracker --api-sock)"}
	return &cli.Command{
		Name:  "snapshot",
		Usage: "pause, snapshot and resume a VM through its API socket; merge memory diffs",
		Subcommands: []*cli.Command{
			{
				Name:  "create",
				Usage: "pause the VM, write its snapshot, resume it (PATCH /vm, PUT /snapshot/create)",
				Flags: []cli.Flag{sock,
					&cli.StringFlag{Name: "snapshot-path", Required: true, Usage: "the state file to write, `PATH`"},
					&cli.StringFlag{Name: "mem-file-path", Required: true, Usage: "the guest memory file to write, `PATH`"},
					&cli.StringFlag{Name: "snapshot-type", Value: "Full", Usage: "`TYPE`: Full, or Diff (pages dirtied since the last snapshot; needs track_dirty_pages)"},
					&cli.BoolFlag{Name: "leave-paused", Usage: "leave the VM paused afterwards"},
				},
				Action: snapshotCreate,
			},
			{
				Name:   "pause",
				Usage:  "pause the VM (PATCH /vm {\"state\": \"Paused\"})",
				Flags:  []cli.Flag{sock},
				Action: func(c *cli.Context) error { return patchVM(c.String("api-sock"), api.VMStatePaused) },
			},
			{
				Name:   "resume",
				Usage:  "resume the VM (PATCH /vm {\"state\": \"Resumed\"})",
				Flags:  []cli.Flag{sock},
				Action: func(c *cli.Context) error { return patchVM(c.String("api-sock"), api.VMStateResumed) },
			},
			{
				Name:      "merge",
				Usage:     "lay a Diff snapshot's memory file over the Full one it follows",
				ArgsUsage: "FULL_MEM_FILE DIFF_MEM_FILE",
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return fmt.Errorf("%w: want FULL_MEM_FILE DIFF_MEM_FILE", errBadFlag)
					}
					return snapshot.MergeDiff(c.Args().Get(0), c.Args().Get(1))
				},
			},
		},
	}
}

func restoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "restore",
		Usage:     "run a VM from a snapshot in a new VMM (PUT /snapshot/load)",
		ArgsUsage: " ",
		Description: "restore maps the memory file copy-on-write (MAP_PRIVATE: many restores of one snapshot\n" +
			"share its pages), loads the state file and runs the VM until it powers off, like vmm run.\n" +
			"With --api-sock it serves the API too, so the restored VM can be paused and snapshotted.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "snapshot-path", Required: true, Usage: "the state file, `PATH`"},
			&cli.StringFlag{Name: "mem-file-path", Required: true, Usage: "the guest memory file, `PATH` (mem_backend File)"},
			&cli.BoolFlag{Name: "paused", Usage: "leave the VM paused (resume it with vmm snapshot resume; needs --api-sock)"},
			&cli.BoolFlag{Name: "track-dirty-pages", Usage: "log guest writes, for Diff snapshots of the restored VM"},
			&cli.StringSliceFlag{Name: "network-override", Usage: "give the interface IFACE_ID another host TAP, `IFACE_ID=TAP` (repeatable; network_overrides)"},
			&cli.StringFlag{Name: "vsock-override", Usage: "the vsock device's host socket, `UDS_PATH`, instead of the snapshot's (vsock_override)"},
			&cli.StringFlag{Name: "api-sock", Usage: "serve the API on `SOCKET`"},
			&cli.StringFlag{Name: "console", Value: "stdio", Usage: "where the serial console goes, `MODE`: stdio, none, or file=PATH"},
			&cli.BoolFlag{Name: "allow-emulated", Usage: "run even where KVM has no hardware virtualization (tiny test guests only)"},
		},
		Action: restore,
	}
}

func restore(c *cli.Context) error {
	if c.Bool("paused") && !c.IsSet("api-sock") {
		return fmt.Errorf("%w: --paused needs --api-sock, or nothing could ever resume the VM", errBadFlag)
	}
	var overrides []api.NetworkOverride
	for _, o := range c.StringSlice("network-override") {
		id, tap, ok := strings.Cut(o, "=")
		if !ok || id == "" || tap == "" {
			return fmt.Errorf("%w: --network-override %q: want IFACE_ID=TAP", errBadFlag, o)
		}
		overrides = append(overrides, api.NetworkOverride{IfaceID: id, HostDevName: tap})
	}
	out, err := console.Output(c.String("console"))
	if err != nil {
		return err
	}
	defer out.Close()
	r := fcRun{id: "anonymous-instance", socket: c.String("api-sock"), maxPayload: api.DefaultMaxPayload,
		allowEmulated: c.Bool("allow-emulated"), console: out, consoleInput: c.String("console"),
		load: &api.SnapshotLoadParams{
			SnapshotPath:     c.String("snapshot-path"),
			MemBackend:       &api.MemoryBackend{BackendType: "File", BackendPath: c.String("mem-file-path")},
			TrackDirtyPages:  c.Bool("track-dirty-pages"),
			ResumeVM:         !c.Bool("paused"),
			NetworkOverrides: overrides,
		}}
	if p := c.String("vsock-override"); p != "" {
		r.load.VsockOverride = &api.VsockOverride{UDSPath: p}
	}
	if code := r.serve(); code != 0 {
		return cli.Exit("", code)
	}
	return nil
}

func snapshotCreate(c *cli.Context) error {
	sock := c.String("api-sock")
	if err := patchVM(sock, api.VMStatePaused); err != nil {
		return err
	}
	start := time.Now()
	body := api.SnapshotCreateParams{SnapshotPath: c.String("snapshot-path"), MemFilePath: c.String("mem-file-path"),
		SnapshotType: c.String("snapshot-type")}
	err := apiCall(sock, http.MethodPut, "/snapshot/create", body)
	if err == nil {
		fmt.Printf("vmm: %s snapshot written in %v: %s, %s\n", body.SnapshotType,
			time.Since(start).Round(time.Microsecond), body.SnapshotPath, body.MemFilePath)
	}
	if !c.Bool("leave-paused") {
		// Resumed even when the snapshot failed: the VM was running.
		if rerr := patchVM(sock, api.VMStateResumed); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}

func patchVM(sock, state string) error {
	return apiCall(sock, http.MethodPatch, "/vm", api.VMState{State: state})
}

// apiCall sends one request to a VMM's API socket; a 4xx or 5xx answer
// becomes an error carrying its fault_message.
func apiCall(sock, method, path string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	req, err := http.NewRequest(method, "http://localhost"+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s", method, path, faultText(got))
	}
	return nil
}

// faultText is a fault body's message, or the body itself.
func faultText(body []byte) string {
	var f api.Fault
	if json.Unmarshal(body, &f) == nil && f.FaultMessage != "" {
		return f.FaultMessage
	}
	return string(body)
}
