package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/vmm-dev/vmm/api"
	"github.com/vmm-dev/vmm/machine"
)

// FirecrackerVersion is the Firecracker release whose API and command
// line vmm follows; GET /version and --version report it.
const FirecrackerVersion = "1.7.0"

// Firecracker's exit codes (FcExitCode, src/vmm/src/lib.rs).
const (
	exitOK               = 0
	exitGenericError     = 1
	exitBadConfiguration = 152
	exitArgParsing       = 153
	exitSIGHUP           = 156
)

// allowEmulatedEnv lets the API and --config-file paths boot where
// /dev/kvm has no hardware virtualization, as vmm run --allow-emulated
// does: Firecracker's command line has no place for a flag of ours.
const allowEmulatedEnv = "VMM_ALLOW_EMULATED"

// fcFlag is one of Firecracker's command-line arguments.
type fcFlag struct {
	name, help string
	value      bool // takes a value
}

var fcFlags = []fcFlag{
	{"api-sock", "Path to the unix socket of the API (default /run/firecracker.socket); an existing file is an error.", true},
	{"id", "MicroVM unique identifier (default anonymous-instance): 1 to 64 letters, digits or '-'.", true},
	{"config-file", "Path to a JSON file with the microVM configuration; the VM boots at once.", true},
	{"no-api", "Run without the API socket (needs --config-file).", false},
	{"boot-timer", "Accepted; the boot timer device is not emulated yet.", false},
	{"log-path", "Path to a file or FIFO for the log.", true},
	{"level", "Log level: Error, Warning, Info, Debug, Trace or Off.", true},
	{"module", "Log module filter (not supported yet).", true},
	{"show-level", "Write the level in each log line.", false},
	{"show-log-origin", "Write the file and line of origin in each log line.", false},
	{"metrics-path", "Path to a file or FIFO for the metrics.", true},
	{"http-api-max-payload-size", "Largest accepted API request body, in bytes (default 51200).", true},
	{"version", "Print the version and exit.", false},
	{"no-seccomp", "Accepted: vmm installs no seccomp filters yet (a later release will).", false},
	{"seccomp-filter", "Accepted and ignored: vmm installs no seccomp filters yet (a later release will).", true},
	{"start-time-us", "Process start time, from the jailer (accepted, unused).", true},
	{"start-time-cpu-us", "Process start CPU time, from the jailer (accepted, unused).", true},
	{"parent-cpu-time-us", "Parent process CPU time, from the jailer (accepted, unused).", true},
	{"metadata", "MMDS content file (MMDS is not supported yet: refused).", true},
	{"mmds-size-limit", "MMDS size limit (accepted, unused).", true},
	{"enable-pci", "Put the virtio devices on PCI (virtio-pci with MSI-X) instead of virtio-mmio; drops pci=off from the default boot arguments.", false},
	{"snapshot-version", "Print the snapshot data format version (not supported yet).", false},
	{"describe-snapshot", "Print a snapshot's data format version (not supported yet).", true},
}

var errArgs = errors.New("Arguments parsing error")

// parseFirecrackerArgs parses args as Firecracker's arg_parser does
// (src/utils/src/arg_parser.rs): every argument is --name, a value is the
// next word and may not start with --, a repeat is an error; --help and
// --version win over everything. --name=value is accepted too.
func parseFirecrackerArgs(args []string) (map[string]string, error) {
	known := map[string]fcFlag{}
	for _, f := range fcFlags {
		known[f.name] = f
	}
	got := map[string]string{}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "--help" || a == "--version" {
			return map[string]string{strings.TrimPrefix(a, "--"): ""}, nil
		}
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break // what follows is not ours, as in Firecracker
		}
		if !strings.HasPrefix(a, "--") {
			return nil, fmt.Errorf("%w: Found argument '%s' which wasn't expected, or isn't valid in this context.", errArgs, a)
		}
		name, value, hasValue := strings.Cut(a[2:], "=")
		f, ok := known[name]
		if !ok {
			return nil, fmt.Errorf("%w: Found argument '%s' which wasn't expected, or isn't valid in this context.", errArgs, name)
		}
		if _, dup := got[name]; dup {
			return nil, fmt.Errorf("%w: The argument '%s' was provided more than once.", errArgs, name)
		}
		switch {
		case f.value && !hasValue:
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "--") {
				return nil, fmt.Errorf("%w: The argument '%s' requires a value, but none was supplied.", errArgs, name)
			}
			i++
			value = args[i]
		case !f.value && hasValue:
			return nil, fmt.Errorf("%w: The argument '%s' takes no value.", errArgs, name)
		}
		got[name] = value
	}
	if _, ok := got["no-api"]; ok {
		if _, ok := got["config-file"]; !ok {
			return nil, fmt.Errorf("%w: Argument 'config-file' required, but not found.", errArgs)
		}
	}
	_, noSeccomp := got["no-seccomp"]
	_, filter := got["seccomp-filter"]
	if noSeccomp && filter {
		return nil, fmt.Errorf("%w: Argument 'no-seccomp' cannot be used together with argument 'seccomp-filter'.", errArgs)
	}
	return got, nil
}

func firecrackerHelp(w io.Writer) {
	fmt.Fprintf(w, "Firecracker v%s (vmm: a Firecracker-compatible micro-VM monitor)\n\n", FirecrackerVersion)
	fmt.Fprintf(w, "Usage: firecracker [--api-sock PATH] [--id ID] [--config-file FILE [--no-api]] [ARGS...]\n"+
		"       vmm firecracker ARGS...\n\n")
	flags := append([]fcFlag{}, fcFlags...)
	sort.Slice(flags, func(i, j int) bool { return flags[i].name < flags[j].name })
	for _, f := range flags {
		arg := "--" + f.name
		if f.value {
			arg += " <" + f.name + ">"
		}
		fmt.Fprintf(w, "%s: %s\n", arg, f.help)
	}
	fmt.Fprintf(w, "\nSeccomp filtering comes in a later release: --no-seccomp and --seccomp-filter are accepted,\n"+
		"and no filter is installed either way. The process exits 0 when the guest powers off or\n"+
		"reboots (Firecracker itself keeps running after a guest power-off). Where /dev/kvm lacks\n"+
		"hardware virtualization, InstanceStart is refused unless %s=1 (tiny test guests only).\n", allowEmulatedEnv)
}

func firecrackerCommand() *cli.Command {
	return &cli.Command{
		Name:            "firecracker",
		Usage:           "take Firecracker's command line and serve its API (also: run vmm as `firecracker`)",
		ArgsUsage:       "[--api-sock PATH] [--id ID] [--config-file FILE] ...",
		SkipFlagParsing: true,
		Action: func(c *cli.Context) error {
			if code := runFirecracker(c.Args().Slice()); code != 0 {
				return cli.Exit("", code)
			}
			return nil
		},
	}
}

// fcRun is one Firecracker-style process: the API socket, a config file,
// or both.
type fcRun struct {
	id            string
	socket        string // "" with --no-api
	configFile    string
	maxPayload    int64
	logger        api.Logger
	metricsPath   string
	allowEmulated bool
	enablePCI     bool
	console       io.Writer
	consoleInput  string
	// load, when set, restores a snapshot at start (vmm restore).
	load *api.SnapshotLoadParams
}

// runFirecracker is Firecracker's main: it returns the exit status.
func runFirecracker(args []string) int {
	got, err := parseFirecrackerArgs(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n\nFor more information try --help.\n", err)
		return exitArgParsing
	}
	if _, ok := got["help"]; ok {
		firecrackerHelp(os.Stdout)
		return exitOK
	}
	if _, ok := got["version"]; ok {
		fmt.Printf("Firecracker v%s\n\n", FirecrackerVersion)
		return exitOK
	}
	fail := func(code int, format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "Error: "+format+"\n", a...)
		return code
	}
	for _, refused := range []struct{ flag, why string }{
		{"metadata", "MMDS is not supported yet"},
		{"snapshot-version", "--snapshot-version is not supported yet"},
		{"describe-snapshot", "--describe-snapshot is not supported yet"},
		{"module", "log module filters are not supported yet"},
	} {
		if _, ok := got[refused.flag]; ok {
			return fail(exitGenericError, "--%s: %s", refused.flag, refused.why)
		}
	}
	r := fcRun{id: "anonymous-instance", socket: "/run/firecracker.socket", maxPayload: api.DefaultMaxPayload,
		allowEmulated: os.Getenv(allowEmulatedEnv) == "1", console: os.Stdout, consoleInput: "stdio"}
	if v, ok := got["id"]; ok {
		r.id = v
	}
	if !validInstanceID(r.id) {
		return fail(exitGenericError, "Invalid instance ID %q: 1 to 64 letters, digits or '-'", r.id)
	}
	if v, ok := got["api-sock"]; ok {
		r.socket = v
	}
	_, r.enablePCI = got["enable-pci"]
	if _, ok := got["no-api"]; ok {
		r.socket = ""
	}
	r.configFile = got["config-file"]
	if v, ok := got["http-api-max-payload-size"]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return fail(exitGenericError, "'http-api-max-payload-size' parameter expected to be a positive number of bytes, not %q", v)
		}
		r.maxPayload = n
	}
	if v, ok := got["log-path"]; ok {
		r.logger.LogPath = &v
	}
	if v, ok := got["level"]; ok {
		if _, err := api.ParseLevel(v); err != nil {
			return fail(exitBadConfiguration, "%v", err)
		}
		r.logger.Level = &v
	}
	if _, ok := got["show-level"]; ok {
		t := true
		r.logger.ShowLevel = &t
	}
	if _, ok := got["show-log-origin"]; ok {
		t := true
		r.logger.ShowLogOrigin = &t
	}
	r.metricsPath = got["metrics-path"]
	return r.serve()
}

// validInstanceID is Firecracker's validate_instance_id.
func validInstanceID(id string) bool {
	if len(id) < 1 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if c != '-' && !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func (r fcRun) serve() int {
	fail := func(code int, err error) int {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		return code
	}
	log := api.NewLog(r.id, os.Stderr, api.LevelWarning)
	defer log.Close()
	metrics := api.NewMetricsWriter()
	defer metrics.Close()
	ctl := api.NewController(api.Options{ID: r.id, Version: FirecrackerVersion, Console: r.console,
		ConsoleInput: r.consoleInput, AllowEmulated: r.allowEmulated, EnablePCI: r.enablePCI, Log: log, Metrics: metrics})
	if r.logger != (api.Logger{}) {
		if err := ctl.ConfigureLogger(r.logger); err != nil {
			return fail(exitGenericError, err)
		}
	}
	if r.metricsPath != "" {
		if err := metrics.Configure(r.metricsPath); err != nil {
			return fail(exitGenericError, err)
		}
	}

	// Registered before anything starts, as in vmm run: a signal during
	// set-up still tears the VM down (a TAP it created disappears).
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	var srv *api.Server
	if r.socket != "" {
		ln, err := api.Listen(r.socket)
		if err != nil {
			return fail(exitGenericError, err)
		}
		srv = api.NewServer(ctl, ln, r.maxPayload)
		defer srv.Close()
		go func() {
			if err := srv.Serve(); err != nil {
				log.Errorf("API server: %v", err)
			}
		}()
	}
	if r.configFile != "" {
		data, err := os.ReadFile(r.configFile)
		if err != nil {
			return fail(exitGenericError, fmt.Errorf("Unable to open or read from the configuration file: %w", err))
		}
		if err := ctl.LoadConfig(data); err != nil {
			return fail(exitBadConfiguration, err)
		}
		if resp := ctl.Handle(api.InstanceStart{}); resp.Status >= 300 {
			return fail(exitGenericError, fmt.Errorf("Could not start the microVM from the configuration file: %s", resp.Body))
		}
	}
	if r.load != nil {
		start := time.Now()
		if resp := ctl.Handle(api.SnapshotLoad{Params: *r.load}); resp.Status >= 300 {
			return fail(exitGenericError, fmt.Errorf("%s", faultText(resp.Body)))
		}
		fmt.Fprintf(os.Stderr, "vmm: snapshot %s loaded in %v\n", r.load.SnapshotPath, time.Since(start).Round(time.Microsecond))
		if r.load.ResumeVM {
			// The guest's next instruction: when the boot vCPU enters
			// KVM_RUN again, just after the load's Resume.
			go func() {
				if at := ctl.FirstRun(ctl.Done()); !at.IsZero() {
					fmt.Fprintf(os.Stderr, "vmm: snapshot: the guest runs again %v after the load began, at unix-ns=%d\n",
						at.Sub(start).Round(time.Microsecond), at.UnixNano())
				}
			}()
		}
	}

	var stoppedBy os.Signal
	for {
		select {
		case sig := <-sigs:
			if stoppedBy == nil {
				stoppedBy = sig
				ctl.Stop()
			}
			if ctl.State() == api.StateNotStarted {
				return signalStatus(sig)
			}
		case <-ctl.Done():
			out := ctl.Outcome()
			switch {
			case stoppedBy != nil:
				for _, st := range out.Stopped {
					fmt.Fprintf(os.Stderr, "vmm: stopped: %v\n", st)
				}
				return signalStatus(stoppedBy)
			case errors.Is(out.Err, machine.ErrStopped):
				return exitOK // the console's quit key: the user's choice
			case out.Err != nil:
				return fail(exitGenericError, out.Err)
			}
			return exitOK
		}
	}
}

// signalStatus is the exit status for a stop by signal: Firecracker's
// for SIGHUP, the shell's 128+n for the others (Firecracker leaves
// SIGINT and SIGTERM to their default action, which the shell reports
// as 128+n).
func signalStatus(sig os.Signal) int {
	s, ok := sig.(syscall.Signal)
	switch {
	case !ok:
		return exitGenericError
	case s == syscall.SIGHUP:
		return exitSIGHUP
	}
	fmt.Fprintf(os.Stderr, "vmm: stopped by signal: %v\n", s)
	return 128 + int(s)
}
