package supervisor

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/containerd/log"
	"github.com/lcdkit/libcontainerd/internal/errclass"
)

// criPlugins are the IDs of the plugins that make up CRI. They are disabled
// through disabled_plugins: containerd 1.6 ignores `[plugins.cri] disable =
// true`. Up to 1.7, CRI is the one gRPC plugin; 2.x keeps that ID for the
// gRPC service only and loads the image and runtime services and the pod
// sandbox controller (which needs both) as plugins of their own, which would
// still start (CNI setup, image store) with the first one alone disabled.
// Daemons ignore disabled IDs they do not have, so one list serves every
// version.
var criPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.cri.v1.images",
	"io.containerd.cri.v1.runtime",
	"io.containerd.podsandbox.controller.v1.podsandbox",
}

// DaemonOpt configures the daemon Start runs. Options are applied in order;
// an option that returns an error makes Start fail with InvalidParameter.
type DaemonOpt func(c *remote) error

// validLogLevels are the levels containerd's --log-level / [debug] level
// accept (logrus names; "warning" is logrus' spelling of "warn").
var validLogLevels = map[string]bool{
	"trace": true, "debug": true, "info": true, "warn": true, "warning": true,
	"error": true, "fatal": true, "panic": true,
}

// WithLogLevel sets containerd's log level ([debug] level), so that the
// daemon's log can follow the engine's. "" keeps containerd's default (info);
// anything but trace, debug, info, warn, error, fatal or panic is an error
// now rather than a daemon that refuses to start later.
func WithLogLevel(lvl string) DaemonOpt {
	return func(r *remote) error {
		lvl = strings.ToLower(strings.TrimSpace(lvl))
		if lvl != "" && !validLogLevels[lvl] {
			return fmt.Errorf("invalid containerd log level %q: want trace, debug, info, warn, error, fatal or panic", lvl)
		}
		r.logLevel = lvl
		return nil
	}
}

// WithLogFormat sets containerd's log format ([debug] format): log.TextFormat
// or log.JSONFormat, so that the daemon's log can be parsed like the
// engine's. "" keeps containerd's default (text).
func WithLogFormat(format log.OutputFormat) DaemonOpt {
	return func(r *remote) error {
		switch format {
		case "", log.TextFormat, log.JSONFormat:
			r.logFormat = format
			return nil
		}
		return fmt.Errorf("invalid containerd log format %q: want %q or %q", format, log.TextFormat, log.JSONFormat)
	}
}

// WithCRIDisabled disables containerd's CRI plugin, which an engine that is
// not a Kubernetes node does not need (and which is slow to start).
func WithCRIDisabled() DaemonOpt {
	return WithDisabledPlugins(criPlugins...)
}

// WithDisabledPlugins adds plugin IDs (such as
// "io.containerd.snapshotter.v1.btrfs") to disabled_plugins, for plugins that
// cannot work on the host and would only log init errors.
func WithDisabledPlugins(ids ...string) DaemonOpt {
	return func(r *remote) error {
		for _, id := range ids {
			if id = strings.TrimSpace(id); id == "" {
				return errors.New("empty plugin ID in disabled plugins")
			}
			r.disabledPlugins = append(r.disabledPlugins, strings.TrimSpace(id))
		}
		return nil
	}
}

// WithBinary sets the containerd executable (a path, or a name looked up in
// PATH), for hosts where it is not "containerd" on PATH. Start fails with
// NotFound if it cannot be found.
func WithBinary(path string) DaemonOpt {
	return func(r *remote) error {
		if path == "" {
			return errors.New("empty containerd binary path")
		}
		r.binary = path
		return nil
	}
}

// WithExtraConfig registers fn to edit the generated config before it is
// written, for settings this package has no option for. cfg is the whole
// TOML document: nested tables are map[string]interface{} values (create
// them when absent), e.g. cfg["plugins"] for plugin settings. Functions run in
// the order given, after the package has filled in its own keys.
func WithExtraConfig(fn func(cfg map[string]interface{})) DaemonOpt {
	return func(r *remote) error {
		if fn == nil {
			return errors.New("nil extra config function")
		}
		r.extraConfig = append(r.extraConfig, fn)
		return nil
	}
}

// WithHealthCheck tunes hang detection: every interval, IsServing is called
// with the given timeout; after failures consecutive failures the daemon is
// killed (SIGKILL) and restarted. The defaults are 500 ms, 1 s and 3. The
// timeout also bounds each readiness probe during start.
func WithHealthCheck(interval, timeout time.Duration, failures int) DaemonOpt {
	return func(r *remote) error {
		if interval <= 0 || timeout <= 0 || failures <= 0 {
			return fmt.Errorf("invalid health check (interval %s, timeout %s, failures %d): all must be positive", interval, timeout, failures)
		}
		r.healthInterval, r.healthTimeout, r.healthFailures = interval, timeout, failures
		return nil
	}
}

// WithStartTimeout bounds how long a (re)started daemon may take to serve
// (default 15 s). Past it the daemon is killed: Start fails, or a restart is
// retried after the backoff.
func WithStartTimeout(d time.Duration) DaemonOpt {
	return func(r *remote) error {
		if d <= 0 {
			return fmt.Errorf("invalid start timeout %s: must be positive", d)
		}
		r.startTimeout = d
		return nil
	}
}

// WithStopTimeout bounds the graceful stop on ctx cancel (default 10 s):
// SIGTERM, then SIGKILL once it has passed.
func WithStopTimeout(d time.Duration) DaemonOpt {
	return func(r *remote) error {
		if d <= 0 {
			return fmt.Errorf("invalid stop timeout %s: must be positive", d)
		}
		r.stopTimeout = d
		return nil
	}
}

// WithRestartBackoff sets the delay before a restart: it starts at min,
// doubles on each restart up to max, and goes back to min once a daemon has
// stayed up for a while. The defaults are 100 ms and 5 s.
func WithRestartBackoff(min, max time.Duration) DaemonOpt {
	return func(r *remote) error {
		if min <= 0 || max < min {
			return fmt.Errorf("invalid restart backoff (%s, %s): want 0 < min <= max", min, max)
		}
		r.backoffMin, r.backoffMax = min, max
		return nil
	}
}

// WithLogWriter sends the daemon's stdout and stderr to w instead of the
// engine's own stdout and stderr (where moby's supervisor sends them). w is
// written from other goroutines (unless it is an *os.File, which the daemon
// writes directly) and is not closed. It wins over WithLogFile.
func WithLogWriter(w io.Writer) DaemonOpt {
	return func(r *remote) error {
		if w == nil {
			return errors.New("nil log writer")
		}
		r.logWriter = w
		return nil
	}
}

// applyOpts runs opts on r, classifying a failure as InvalidParameter.
func (r *remote) applyOpts(opts []DaemonOpt) error {
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(r); err != nil {
			return errclass.InvalidParameter(fmt.Errorf("supervisor: %w", err))
		}
	}
	return nil
}

// WithLogFile sends the daemon's stdout and stderr to <stateDir>/containerd.log
// (appended to) instead of the engine's own stdout and stderr; an error
// starting the daemon then names the file.
func WithLogFile() DaemonOpt {
	return func(r *remote) error {
		r.logToFile = true
		return nil
	}
}
