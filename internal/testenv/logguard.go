package testenv

import (
	"strings"
	"sync"
	"testing"

	"github.com/containerd/log"
)

// What an operator sees of a containerd restart, freeze or kill: no
// error-level line, and warnings only where someone may need to act. These
// are the library's warnings that may show during such an outage, each a
// thing the library gave up on or cannot fix alone (docs/operations.md lists
// them with what to do).
var AllowedOutageWarnings = []string{
	// The process whose stdin the caller closed did not get EOF: the shim
	// was out of reach when the close was asked for.
	"failed to close stdin",
	"failed to close exec stdin",
}

// LogGuard records what the library (and the dependencies that log through
// logrus, ttrpc among them) logs at warning level and above while a test
// runs, and fails the test on any error-level line and on any warning not in
// AllowedOutageWarnings. Install it at the start of a test that restarts,
// freezes or kills containerd.
func LogGuard(t testing.TB) {
	t.Helper()
	installGuard.Do(func() { log.L.Logger.AddHook(guard) })
	guard.mu.Lock()
	guard.armed, guard.bad = true, nil
	guard.mu.Unlock()
	t.Cleanup(func() {
		guard.mu.Lock()
		guard.armed = false
		lines := guard.bad
		guard.mu.Unlock()
		for _, l := range lines {
			t.Errorf("an outage logged %s", l)
		}
	})
}

// One hook for the process (logrus keeps hooks for good), armed while a
// guarded test runs; the suite's tests do not run in parallel.
var (
	installGuard sync.Once
	guard        = &logGuard{}
)

type logGuard struct {
	mu    sync.Mutex
	armed bool
	bad   []string
}

func (g *logGuard) Levels() []log.Level {
	return []log.Level{log.PanicLevel, log.FatalLevel, log.ErrorLevel, log.WarnLevel}
}

func (g *logGuard) Fire(e *log.Entry) error {
	// The library's own lines carry module=libcontainerd; ttrpc's start
	// with "ttrpc:". A test's own backend errors are its own business.
	if e.Data["module"] != "libcontainerd" && !strings.HasPrefix(e.Message, "ttrpc:") {
		return nil
	}
	if e.Message == "failed to process event" {
		return nil // the test's backend said so
	}
	if e.Level == log.WarnLevel {
		for _, ok := range AllowedOutageWarnings {
			if strings.HasPrefix(e.Message, ok) {
				return nil
			}
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.armed {
		line := e.Level.String() + ": " + e.Message
		if err, ok := e.Data["error"]; ok {
			line += " (" + strings.TrimSpace(toString(err)) + ")"
		}
		g.bad = append(g.bad, line)
	}
	return nil
}

func toString(v any) string {
	if err, ok := v.(error); ok {
		return err.Error()
	}
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}
