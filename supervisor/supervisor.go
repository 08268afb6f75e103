package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/log"
	"github.com/lcdkit/libcontainerd/internal/dial"
	"github.com/lcdkit/libcontainerd/internal/errclass"
)

// Defaults; each has an option.
const (
	defaultBinary         = "containerd"
	defaultStartTimeout   = 15 * time.Second
	defaultStopTimeout    = 10 * time.Second
	defaultHealthInterval = 500 * time.Millisecond
	defaultHealthTimeout  = time.Second
	defaultHealthFailures = 3
	defaultBackoffMin     = 100 * time.Millisecond
	defaultBackoffMax     = 5 * time.Second

	// healthyPeriod is how long a daemon must have served for the restart
	// backoff to start again from its minimum.
	healthyPeriod = 10 * time.Second
	// readyPoll is the pause between readiness probes of a starting daemon.
	readyPoll = 20 * time.Millisecond
)

// Daemon is a running supervisor, as moby's libcontainerd/supervisor
// returns it. The value Start returns also has a PID() int method (see PID).
type Daemon interface {
	// WaitTimeout waits until the supervisor has fully stopped after the
	// context given to Start was cancelled: the daemon is gone and its pid
	// file and sockets removed. It returns an error if that takes longer
	// than the given duration.
	WaitTimeout(time.Duration) error
	// Address is the daemon's gRPC socket path, for containerd.New.
	Address() string
}

// PID returns the pid of the containerd process d currently supervises, or 0
// while there is none (between a crash and the restart, after the stop) or
// if d does not come from Start. It is for diagnostics and tests: the pid
// changes on every restart.
func PID(d Daemon) int {
	if p, ok := d.(interface{ PID() int }); ok {
		return p.PID()
	}
	return 0
}

// remote is the supervisor: its settings (filled by the options) and the
// state of the goroutine that runs the daemon.
type remote struct {
	// Settings.
	binary          string
	logLevel        string
	logFormat       log.OutputFormat
	disabledPlugins []string
	extraConfig     []func(map[string]interface{})
	healthInterval  time.Duration
	healthTimeout   time.Duration
	healthFailures  int
	startTimeout    time.Duration
	stopTimeout     time.Duration
	backoffMin      time.Duration
	backoffMax      time.Duration
	logWriter       io.Writer
	logToFile       bool // WithLogFile

	// Paths.
	rootDir, stateDir string
	configFile        string
	pidFile           string
	address           string

	ownLog *os.File      // the default log file, closed at the end
	done   chan struct{} // closed when the supervisor has stopped

	mu  sync.Mutex
	pid int
}

// Start starts containerd on rootDir and stateDir, or adopts the one the pid
// file in stateDir names if it is a containerd running on this config and
// serves. It returns once the daemon serves (bounded by WithStartTimeout) and
// supervises it until ctx is cancelled (an adopted daemon keeps the config
// it was started with until it is restarted): a daemon that exits or stops
// answering health checks is restarted, with backoff. Cancelling ctx stops
// the daemon (SIGTERM, then SIGKILL after WithStopTimeout) and removes the
// pid file and sockets; Daemon.WaitTimeout waits for that.
//
// Errors are classified: bad options or directories are InvalidParameter, a
// missing containerd binary NotFound, a daemon that does not come up System.
// On error nothing is left running.
func Start(ctx context.Context, rootDir, stateDir string, opts ...DaemonOpt) (Daemon, error) {
	r, err := newRemote(rootDir, stateDir, opts)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if err := r.makeDirs(); err != nil {
		return nil, err
	}
	if err := r.writeConfig(); err != nil {
		return nil, err
	}
	if r.logWriter == nil && r.logToFile {
		path := filepath.Join(r.stateDir, logFileName)
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, dirError("state", r.stateDir, fmt.Errorf("open daemon log: %w", err))
		}
		r.ownLog, r.logWriter = f, f
	}
	p, err := r.first(ctx)
	if err != nil {
		r.closeLog()
		return nil, err
	}
	go r.supervise(ctx, p)
	return r, nil
}

// newRemote applies the defaults and opts, derives the paths and finds the
// binary; it touches nothing on disk.
func newRemote(rootDir, stateDir string, opts []DaemonOpt) (*remote, error) {
	r := &remote{
		binary:         defaultBinary,
		healthInterval: defaultHealthInterval,
		healthTimeout:  defaultHealthTimeout,
		healthFailures: defaultHealthFailures,
		startTimeout:   defaultStartTimeout,
		stopTimeout:    defaultStopTimeout,
		backoffMin:     defaultBackoffMin,
		backoffMax:     defaultBackoffMax,
		done:           make(chan struct{}),
	}
	if err := r.applyOpts(opts); err != nil {
		return nil, err
	}
	if err := r.setPaths(rootDir, stateDir); err != nil {
		return nil, err
	}
	if err := r.findBinary(); err != nil {
		return nil, err
	}
	return r, nil
}

// findBinary resolves the containerd executable once, so that restarts run
// the same file.
func (r *remote) findBinary() error {
	path, err := exec.LookPath(r.binary)
	if err != nil {
		err = fmt.Errorf("supervisor: containerd binary not found: %w; install containerd (make deps) or use WithBinary", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return errclass.NotFound(err)
		}
		return errclass.InvalidParameter(err)
	}
	r.binary = path
	return nil
}

// first adopts the daemon in the pid file or starts one, and returns it
// serving.
func (r *remote) first(ctx context.Context) (*daemonProc, error) {
	logger := log.G(ctx).WithField("state", r.stateDir)
	if pid := r.readPidFile(); pid > 0 {
		p, why := r.adopt(pid)
		if p == nil {
			logger.WithField("pid", pid).Debugf("supervisor: not adopting the daemon in the pid file: %s", why)
		} else if err := r.waitReady(ctx, p); err != nil {
			// Ours (it runs on our config) but not serving: replace it.
			logger.WithError(err).WithField("pid", pid).Warn("supervisor: adopted containerd does not serve; killing it")
			r.kill(ctx, p)
			p.release()
			if ctx.Err() != nil {
				return nil, fmt.Errorf("supervisor: %w", ctx.Err())
			}
		} else {
			logger.WithField("pid", pid).Info("supervisor: adopted running containerd")
			r.setPID(p.pid)
			return p, nil
		}
	}
	// Nobody else may be serving on our socket: the new daemon would take
	// it over, and share (and block on) the same metadata database.
	if r.probe(ctx) == nil {
		return nil, errclass.Conflict(fmt.Errorf("supervisor: a containerd that is not in %s already serves on %s", r.pidFile, r.address))
	}
	p, err := r.startServing(ctx)
	if err != nil {
		return nil, err
	}
	logger.WithField("pid", p.pid).Info("supervisor: started containerd")
	return p, nil
}

// startServing starts a child and waits until it serves; on failure the
// child is killed and reaped.
func (r *remote) startServing(ctx context.Context) (*daemonProc, error) {
	p, err := r.startChild()
	if err != nil {
		return nil, errclass.System(fmt.Errorf("supervisor: %w", err))
	}
	if err := r.writePidFile(p.pid); err != nil {
		r.kill(ctx, p)
		return nil, dirError("state", r.stateDir, fmt.Errorf("write pid file: %w", err))
	}
	if err := r.waitReady(ctx, p); err != nil {
		r.kill(ctx, p)
		r.removeFiles()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("supervisor: %w", ctx.Err())
		}
		return nil, errclass.System(fmt.Errorf("supervisor: %w%s", err, r.logHint()))
	}
	r.setPID(p.pid)
	return p, nil
}

func (r *remote) logHint() string {
	if r.ownLog != nil {
		return "; see " + r.ownLog.Name()
	}
	return ""
}

// waitReady polls until p serves, exits, ctx ends or the start timeout
// passes.
func (r *remote) waitReady(ctx context.Context, p *daemonProc) error {
	deadline := time.NewTimer(r.startTimeout)
	defer deadline.Stop()
	for {
		err := r.probe(ctx)
		if err == nil {
			p.started = time.Now()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited:
			return fmt.Errorf("containerd (pid %d) %s during startup", p.pid, p.status)
		case <-deadline.C:
			return fmt.Errorf("containerd (pid %d) not serving on %s after %s: %v", p.pid, r.address, r.startTimeout, err)
		case <-time.After(readyPoll): // polling another process: nothing to wait on
		}
	}
}

// probe asks the daemon whether it serves, within the health timeout.
func (r *remote) probe(ctx context.Context) error {
	cli, err := dial.Serving(ctx, r.address, r.healthTimeout)
	if err != nil {
		return err
	}
	return cli.Close()
}

// supervise keeps a daemon running until ctx is cancelled, then stops it.
// p is the serving daemon Start returned.
func (r *remote) supervise(ctx context.Context, p *daemonProc) {
	defer close(r.done)
	logger := log.G(ctx).WithField("state", r.stateDir)
	delay := r.backoffMin
	for {
		if p != nil {
			reason := r.watch(ctx, p)
			if ctx.Err() != nil {
				r.shutdown(ctx, p)
				return
			}
			if time.Since(p.started) >= healthyPeriod {
				delay = r.backoffMin
			}
			p.release()
			r.setPID(0)
			logger.WithFields(log.Fields{"pid": p.pid, "reason": reason, "delay": delay}).
				Warn("supervisor: containerd stopped; restarting")
			p = nil
		}
		select {
		case <-ctx.Done():
			r.shutdown(ctx, nil)
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, r.backoffMax)
		np, err := r.startServing(ctx)
		if err != nil {
			if ctx.Err() == nil {
				logger.WithError(err).WithField("delay", delay).Error("supervisor: restarting containerd failed; retrying")
			}
			continue
		}
		p = np
		logger.WithField("pid", p.pid).Info("supervisor: restarted containerd")
	}
}

// watch returns why p must be replaced: it exited, or it failed
// healthFailures health checks in a row (it is then killed first). It
// returns "" when ctx ends.
func (r *remote) watch(ctx context.Context, p *daemonProc) string {
	tick := time.NewTicker(r.healthInterval)
	defer tick.Stop()
	failures := 0
	for {
		select {
		case <-ctx.Done():
			return ""
		case <-p.exited:
			return p.status
		case <-tick.C:
		}
		err := r.probe(ctx)
		if ctx.Err() != nil {
			return ""
		}
		if err == nil {
			failures = 0
			continue
		}
		failures++
		log.G(ctx).WithError(err).WithFields(log.Fields{"pid": p.pid, "failures": failures}).
			Warn("supervisor: containerd health check failed")
		if failures < r.healthFailures {
			continue
		}
		reason := fmt.Sprintf("hung: %d health checks failed in a row (last: %v); killed", failures, err)
		r.kill(ctx, p)
		return reason
	}
}

// kill sends SIGKILL and waits until p is gone, for at most the stop
// timeout (a process in uninterruptible sleep may take longer).
func (r *remote) kill(ctx context.Context, p *daemonProc) {
	if err := p.signal(syscall.SIGKILL); err != nil {
		log.G(ctx).WithError(err).WithField("pid", p.pid).Error("supervisor: cannot kill containerd")
	}
	t := time.NewTimer(r.stopTimeout)
	defer t.Stop()
	select {
	case <-p.exited:
	case <-t.C:
		log.G(ctx).WithField("pid", p.pid).Errorf("supervisor: containerd still alive %s after SIGKILL", r.stopTimeout)
	}
}

// shutdown stops p (if any) gracefully, then removes the pid file and
// sockets, unless the daemon could not be stopped.
func (r *remote) shutdown(ctx context.Context, p *daemonProc) {
	defer r.closeLog()
	defer r.setPID(0)
	if p == nil {
		r.removeFiles()
		return
	}
	defer p.release()
	logger := log.G(ctx).WithField("pid", p.pid)
	_ = p.signal(syscall.SIGTERM)
	grace := time.NewTimer(r.stopTimeout)
	defer grace.Stop()
	select {
	case <-p.exited:
		r.removeFiles()
		return
	case <-grace.C:
	}
	logger.Warnf("supervisor: containerd did not stop within %s; killing it", r.stopTimeout)
	_ = p.signal(syscall.SIGKILL)
	grace.Reset(r.stopTimeout)
	select {
	case <-p.exited:
		r.removeFiles()
	case <-grace.C:
		logger.Error("supervisor: containerd did not die after SIGKILL; leaving its pid file")
	}
}

// removeFiles removes what only a running daemon needs.
func (r *remote) removeFiles() {
	for _, f := range []string{r.pidFile, r.address, r.address + ttrpcSuffix} {
		_ = os.Remove(f)
	}
}

func (r *remote) closeLog() {
	if r.ownLog != nil {
		_ = r.ownLog.Close()
	}
}

func (r *remote) setPID(pid int) {
	r.mu.Lock()
	r.pid = pid
	r.mu.Unlock()
}

// PID is the pid of the daemon currently supervised, 0 while there is none.
func (r *remote) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pid
}

// Address is the daemon's gRPC socket path.
func (r *remote) Address() string { return r.address }

// WaitTimeout waits up to d for the supervisor to stop after ctx
// cancellation.
func (r *remote) WaitTimeout(d time.Duration) error {
	select {
	case <-r.done: // stopped already: nil whatever d is
		return nil
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.done:
		return nil
	case <-t.C:
		return errclass.Unavailable(fmt.Errorf("supervisor: timed out after %s waiting for containerd to stop", d))
	}
}
