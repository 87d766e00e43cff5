package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/vmm-dev/vmm/console"
	"github.com/vmm-dev/vmm/devices"
	"github.com/vmm-dev/vmm/devices/virtio/balloon"
	"github.com/vmm-dev/vmm/host"
	"github.com/vmm-dev/vmm/machine"
	"github.com/vmm-dev/vmm/vcpu"
)

// AppName and the version GET / reports.
const AppName = "Firecracker"

// MetricsPeriod is how often a running VM's metrics are written, as
// Firecracker's WRITE_METRICS_PERIOD_MS.
const MetricsPeriod = 60 * time.Second

// Options configure a Controller.
type Options struct {
	ID      string // instance ID (--id)
	Version string // vmm_version in GET /, firecracker_version in GET /version
	// Console receives the guest's serial output; nil discards it.
	Console io.Writer
	// ConsoleInput is a console spec for the guest's serial input
	// ("stdio" reads the process's stdin; "" or "none": nothing).
	ConsoleInput string
	// AllowEmulated boots even where /dev/kvm has no hardware
	// virtualization (tiny test guests only), like vmm run
	// --allow-emulated.
	AllowEmulated bool
	// EnablePCI puts the virtio devices on virtio-pci with MSI-X
	// (Firecracker's --enable-pci) instead of virtio-mmio.
	EnablePCI bool
	Log       *Log           // nil: a log that discards everything
	Metrics   *MetricsWriter // nil: fresh metrics, unconfigured
}

// Outcome is how the VM's run ended.
type Outcome struct {
	Action devices.PowerAction
	Err    error
	// Stopped holds where each vCPU was when a stop ended the run
	// (machine.StopStates): a guest stopped by a signal or a timeout then
	// says whether it hung in its own code or in the VMM.
	Stopped []vcpu.StopState
}

// Response is the answer to one request.
type Response struct {
	Status int    // 200, 204 or 400
	Body   []byte // JSON; nil for 204
}

// Controller applies requests to one VM, one at a time: the
// configuration before InstanceStart, the running machine after
// (Firecracker's PrebootApiController and RuntimeApiController in one).
type Controller struct {
	opts    Options
	log     *Log
	metrics *MetricsWriter

	mu      sync.Mutex // serializes Handle: requests are applied one at a time
	res     *VMResources
	started bool
	// paused: PATCH /vm paused the VM, or a load left it paused.
	paused bool
	// configured: a boot resource was set, so a snapshot load is refused.
	configured bool
	m          *machine.Machine
	lastDev    machine.DeviceStats // device counters at the last metrics flush
	logCfg     *Logger
	metCfg     *Metrics

	done     chan struct{} // closed when the run ended; outcome is set then
	outcome  Outcome
	stopOnce sync.Once
	stopped  chan struct{}
}

// NewController returns a controller for a VM not yet started.
func NewController(opts Options) *Controller {
	c := &Controller{opts: opts, res: NewVMResources(), log: opts.Log, metrics: opts.Metrics,
		done: make(chan struct{}), stopped: make(chan struct{})}
	c.res.PCI = opts.EnablePCI
	if c.log == nil {
		c.log = NewLog(opts.ID, nil, LevelOff)
	}
	if c.metrics == nil {
		c.metrics = NewMetricsWriter()
	}
	if c.opts.Console == nil {
		c.opts.Console = io.Discard
	}
	return c
}

// Done is closed when the VM stopped running (never before
// InstanceStart succeeded); Outcome then says how.
func (c *Controller) Done() <-chan struct{} { return c.done }

// Outcome is how the run ended; valid once Done is closed.
func (c *Controller) Outcome() Outcome {
	<-c.done
	return c.outcome
}

// FirstRun waits until the VM's boot vCPU first entered the guest (for a
// restored VM: ran again after the resume) and returns that moment; zero
// when there is no VM yet, or done closed first.
func (c *Controller) FirstRun(done <-chan struct{}) time.Time {
	c.mu.Lock()
	m := c.m
	c.mu.Unlock()
	if m == nil {
		return time.Time{}
	}
	select {
	case <-m.Started():
		return m.FirstRun()
	case <-done:
		return time.Time{}
	}
}

// Stop ends a running VM (Run returns machine.ErrStopped) and keeps a
// later InstanceStart from booting one.
func (c *Controller) Stop() {
	c.stopOnce.Do(func() { close(c.stopped) })
	c.mu.Lock()
	m := c.m
	c.mu.Unlock()
	if m != nil {
		m.Stop()
	}
}

// State is GET /'s state.
func (c *Controller) State() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state()
}

func (c *Controller) state() string {
	if c.started && c.paused {
		return StatePaused
	}
	if c.started {
		return StateRunning
	}
	return StateNotStarted
}

// Handle applies one request and answers it.
func (c *Controller) Handle(r Request) Response {
	c.mu.Lock()
	defer c.mu.Unlock()
	body, err := c.apply(r)
	if err == nil && bootResource(r) {
		c.configured = true
	}
	if err != nil {
		c.log.Errorf("Received Error. Status code: 400 Bad Request. Message: %v", err)
		return Response{Status: http.StatusBadRequest, Body: mustJSON(Fault{FaultMessage: err.Error()})}
	}
	if body == nil {
		return Response{Status: http.StatusNoContent}
	}
	return Response{Status: http.StatusOK, Body: mustJSON(body)}
}

// preBoot marks the requests allowed only before InstanceStart.
func preBoot(r Request) bool {
	switch r.(type) {
	case PutMachineConfig, PatchMachineConfig, PutBootSource, PutDrive, PutNetworkInterface,
		PutEntropy, PutVsock, PutBalloon, PutLogger, PutMetrics, InstanceStart:
		return true
	}
	return false
}

// apply returns the value to answer with (nil: 204) or the error.
func (c *Controller) apply(r Request) (any, error) {
	if c.started && preBoot(r) {
		return nil, fault(msgPostBoot)
	}
	switch r := r.(type) {
	case GetInstanceInfo:
		return InstanceInfo{ID: c.opts.ID, State: c.state(), VMMVersion: c.opts.Version, AppName: AppName}, nil
	case GetVersion:
		return Version{FirecrackerVersion: c.opts.Version}, nil
	case GetMachineConfig:
		return c.res.Machine, nil
	case GetVMConfig:
		full := c.res.Full()
		full.Logger, full.Metrics = c.logCfg, c.metCfg
		return full, nil
	case PutMachineConfig:
		return nil, c.res.SetMachineConfig(r.Config)
	case PatchMachineConfig:
		return nil, c.res.UpdateMachineConfig(r.Update)
	case PutBootSource:
		return nil, c.res.SetBootSource(r.Source)
	case PutDrive:
		return nil, c.res.InsertDrive(r.Drive)
	case PutNetworkInterface:
		return nil, c.res.InsertNetworkInterface(r.Iface)
	case PutEntropy:
		return nil, c.res.SetEntropy(r.Entropy)
	case PutVsock:
		return nil, c.res.SetVsock(r.Vsock)
	case PutBalloon:
		return nil, c.res.SetBalloon(r.Balloon)
	case GetBalloon:
		if c.res.Balloon == nil {
			return nil, fault("%s", msgNoBalloon)
		}
		return *c.res.Balloon, nil
	case PatchBalloon:
		return nil, c.patchBalloon(r.Update)
	case GetBalloonStats:
		return c.balloonStats()
	case PatchBalloonStats:
		return nil, c.patchBalloonStats(r.Update)
	case PatchDrive:
		if !c.started {
			return nil, fault(msgPreBoot)
		}
		return nil, c.patchDrive(r.Update)
	case PatchNetworkInterface:
		if !c.started {
			return nil, fault(msgPreBoot)
		}
		return nil, c.patchNetworkInterface(r.Update)
	case PutLogger:
		return nil, c.configureLogger(r.Logger)
	case PutMetrics:
		if err := c.metrics.Configure(r.Metrics.MetricsPath); err != nil {
			return nil, err
		}
		m := r.Metrics
		c.metCfg = &m
		return nil, nil
	case InstanceStart:
		return nil, c.start()
	case SendCtrlAltDel:
		if !c.started {
			return nil, fault(msgPreBoot)
		}
		if err := c.m.SendCtrlAltDel(); err != nil {
			return nil, fault("%v", err)
		}
		return nil, nil
	case FlushMetrics:
		return nil, c.flushMetrics()
	case PatchVM:
		return nil, c.patchVM(r.State)
	case SnapshotCreate:
		return nil, c.createSnapshot(r.Params)
	case SnapshotLoad:
		return nil, c.loadSnapshot(r.Params)
	case Unsupported:
		return nil, fault("%s", r.Reason)
	}
	return nil, fmt.Errorf("%w: unhandled request %s", ErrBadRequest, r.kind())
}

// patchDrive changes a running drive's rate limiter. Requests waiting
// for tokens re-check at once, so a limit lifted takes effect without a
// reboot.
func (c *Controller) patchDrive(u DriveUpdate) error {
	i := c.res.driveIndex(u.DriveID)
	if i < 0 {
		return fault("Unable to patch the block device: no drive with drive_id %q.", u.DriveID)
	}
	d := &c.res.Drives[i]
	if u.PathOnHost != nil && *u.PathOnHost != d.PathOnHost {
		// Firecracker's BlockDeviceUpdate: the new file backs the drive
		// from now on, and the guest is told its size may have changed.
		if err := c.m.SwapDisk(i, *u.PathOnHost); err != nil {
			return fault("Unable to patch the block device: %v", err)
		}
		d.PathOnHost = *u.PathOnHost
	}
	if u.RateLimiter != nil {
		rl := patchLimiter(d.RateLimiter, u.RateLimiter)
		if err := c.m.SetDiskRateLimit(i, limiterConfig(rl)); err != nil {
			return fault("Unable to patch the block device: %v", err)
		}
		d.RateLimiter = rl
	}
	return nil
}

// patchNetworkInterface changes a running interface's rate limiters.
func (c *Controller) patchNetworkInterface(u NetworkInterfaceUpdate) error {
	i := c.res.nicIndex(u.IfaceID)
	if i < 0 {
		return fault("Unable to patch the network interface: no interface with iface_id %q.", u.IfaceID)
	}
	n := &c.res.NICs[i]
	rx, tx := patchLimiter(n.RxRateLimiter, u.RxRateLimiter), patchLimiter(n.TxRateLimiter, u.TxRateLimiter)
	rxCfg, txCfg := limiterConfig(rx), limiterConfig(tx)
	if err := c.m.SetNICRateLimit(i, &rxCfg, &txCfg); err != nil {
		return fault("Unable to patch the network interface: %v", err)
	}
	n.RxRateLimiter, n.TxRateLimiter = rx, tx
	return nil
}

const msgNoBalloon = "No balloon device configured."

// patchBalloon changes the target: before boot in the configuration,
// after it on the running device, whose driver then inflates or
// deflates.
func (c *Controller) patchBalloon(u BalloonUpdate) error {
	b := c.res.Balloon
	if b == nil {
		return fault("%s", msgNoBalloon)
	}
	if u.AmountMiB > c.res.Machine.MemSizeMiB {
		return fault("Amount of pages requested for the balloon (%d MiB) is greater than the guest memory (%d MiB).", u.AmountMiB, c.res.Machine.MemSizeMiB)
	}
	if c.started {
		if err := c.m.SetBalloonTarget(u.AmountMiB); err != nil {
			return fault("Unable to update the balloon: %v", err)
		}
	}
	b.AmountMiB = u.AmountMiB
	return nil
}

func (c *Controller) patchBalloonStats(u BalloonStatsUpdate) error {
	b := c.res.Balloon
	if b == nil {
		return fault("%s", msgNoBalloon)
	}
	if c.started {
		if err := c.m.SetBalloonStatsInterval(time.Duration(u.StatsPollingIntervalS) * time.Second); err != nil {
			return fault("Unable to update the balloon statistics: %v", err)
		}
	}
	b.StatsPollingIntervalS = u.StatsPollingIntervalS
	return nil
}

// balloonStats answers GET /balloon/statistics from the running device.
func (c *Controller) balloonStats() (any, error) {
	b := c.res.Balloon
	switch {
	case b == nil:
		return nil, fault("%s", msgNoBalloon)
	case b.StatsPollingIntervalS == 0:
		return nil, fault("Statistics for the balloon device are not enabled.")
	case !c.started:
		return nil, fault(msgPreBoot)
	}
	st, err := c.m.Balloon()
	if err != nil {
		return nil, fault("%v", err)
	}
	const pagesPerMiB = 1 << 20 / balloon.PageSize
	out := BalloonStats{TargetPages: st.TargetPages, ActualPages: st.ActualPages,
		TargetMiB: st.TargetPages / pagesPerMiB, ActualMiB: st.ActualPages / pagesPerMiB}
	for tag, field := range map[int]**uint64{
		balloon.TagSwapIn: &out.SwapIn, balloon.TagSwapOut: &out.SwapOut,
		balloon.TagMajFlt: &out.MajorFaults, balloon.TagMinFlt: &out.MinorFaults,
		balloon.TagMemFree: &out.FreeMemory, balloon.TagMemTot: &out.TotalMemory,
		balloon.TagAvail: &out.AvailableMemory, balloon.TagCaches: &out.DiskCaches,
		balloon.TagHTLBPgAlloc: &out.HugetlbAllocations, balloon.TagHTLBPgFail: &out.HugetlbFailures,
	} {
		if st.Stats.Valid[tag] {
			v := st.Stats.Values[tag]
			*field = &v
		}
	}
	return out, nil
}

func (c *Controller) configureLogger(l Logger) error {
	s := LogSettings{Path: l.LogPath, ShowLevel: l.ShowLevel, ShowLogOrigin: l.ShowLogOrigin}
	if l.Level != nil {
		lv, err := parseLevel(*l.Level)
		if err != nil {
			return err
		}
		s.Level = &lv
	}
	if l.Module != nil && *l.Module != "" {
		return fault("logger module filters are not supported yet: module %q", *l.Module)
	}
	if err := c.log.Configure(s); err != nil {
		return err
	}
	c.logCfg = &l
	return nil
}

// ConfigureLogger applies --log-path, --level, --show-level and
// --show-log-origin, before any request.
func (c *Controller) ConfigureLogger(l Logger) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.configureLogger(l)
}

func (c *Controller) flushMetrics() error {
	extra := map[string]any{}
	if c.m != nil {
		st := c.m.Stats()
		exits := map[string]uint64{}
		for k, v := range st.Exits {
			exits[k] = v
		}
		extra["vcpu"] = map[string]any{"exits": exits}
		dev := c.m.DeviceStats()
		var drives, ifaces []string
		for _, d := range c.res.Drives {
			drives = append(drives, d.DriveID)
		}
		for _, n := range c.res.NICs {
			ifaces = append(ifaces, n.IfaceID)
		}
		for k, v := range deviceMetrics(dev, c.lastDev, drives, ifaces) {
			extra[k] = v
		}
		if c.metrics.Configured() {
			c.lastDev = dev
		}
	}
	return c.metrics.Flush(extra)
}

// start builds the VM from the collected configuration with
// machine.New, the one builder, and runs it on a goroutine of its own.
func (c *Controller) start() error {
	select {
	case <-c.stopped:
		return fault("the VMM is stopping")
	default:
	}
	cfg, err := c.res.MachineConfig()
	if err != nil {
		return err
	}
	cfg.Console = c.opts.Console
	m, err := machine.New(cfg)
	if err != nil {
		return fault("Failed to start the microVM: %v", err)
	}
	// As in vmm run: checked after the configuration proved good, so
	// bad input is reported as such on every host.
	if !c.opts.AllowEmulated {
		if virt, err := host.Detect(); err == nil && !virt.Hardware() {
			err := errors.Join(m.Close())
			return fault("Failed to start the microVM: %v: %s%s", host.ErrNoHardwareVirt, virt.Explanation(), errText(err))
		}
	}
	spec := c.opts.ConsoleInput
	if spec == "" {
		spec = "none"
	}
	in, err := console.Open(spec, console.Options{Sink: m.Console().Receive, Quit: m.Stop, Stdin: os.Stdin})
	if err != nil {
		return fault("Failed to start the microVM: %v%s", err, errText(m.Close()))
	}
	c.m, c.started = m, true
	c.log.Infof("Successfully started microvm")
	go c.run(m, in)
	return nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return " (and: " + err.Error() + ")"
}

// run runs the machine to its end, writes metrics every MetricsPeriod
// meanwhile, and reports the outcome.
func (c *Controller) run(m *machine.Machine, in *console.Input) {
	select {
	case <-c.stopped: // Stop came while InstanceStart was building
		m.Stop()
	default:
	}
	tick := time.NewTicker(MetricsPeriod)
	ran := make(chan struct{})
	go func() {
		for {
			select {
			case <-tick.C:
				c.mu.Lock()
				if err := c.flushMetrics(); err != nil {
					c.log.Warnf("periodic metrics: %v", err)
				}
				c.mu.Unlock()
			case <-ran:
				return
			}
		}
	}()
	action, err := m.Run()
	close(ran)
	tick.Stop()
	stopped := m.StopStates()
	errs := []error{err, in.Close()}
	c.mu.Lock()
	if ferr := c.flushMetrics(); ferr != nil {
		c.log.Warnf("final metrics: %v", ferr)
	}
	errs = append(errs, m.Close())
	c.mu.Unlock()
	if err == nil {
		c.log.Infof("guest asked to %v: the VMM exits", action)
	} else {
		c.log.Errorf("the microVM stopped: %v", err)
	}
	c.outcome = Outcome{Action: action, Err: errors.Join(errs...), Stopped: stopped}
	close(c.done)
}

// Resources returns the configuration, for tests and the config file.
func (c *Controller) Resources() *VMResources {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.res
}
