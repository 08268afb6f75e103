package testenv

import (
	"context"
	"errors"
	"fmt"
	"github.com/containerd/log"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	runcoptions "github.com/containerd/containerd/runtime/v2/runc/options"
	"go.uber.org/goleak"

	"github.com/lcdkit/libcontainerd/internal/rootfs"
)

// shimExitTimeout bounds the wait for the shims of just-deleted tasks to
// exit at the end of a test binary.
const shimExitTimeout = 10 * time.Second

// Env is what an integration test binary shares: one daemon, one rootfs.
type Env struct {
	*Daemon
	// Rootfs is a read-only busybox root filesystem for every test container.
	Rootfs string

	mu         sync.Mutex
	namespaces []string
	nsCounter  atomic.Int64
}

// Requirements lists what the suite needs and is missing on this host; an
// empty result means it can run.
func Requirements() []string {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (run the tests as root)")
	}
	bins := []string{"containerd", "containerd-shim-runc-v2", "runc"}
	if dir, err := BinDir(); err != nil {
		missing = append(missing, err.Error())
	} else if dir != "" {
		bins = []string{"runc"} // BinDir checked the other two
	}
	for _, bin := range bins {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin+" (run `make deps`)")
		}
	}
	if _, err := os.Stat(rootfs.BusyboxPath); err != nil {
		missing = append(missing, rootfs.BusyboxPath+" from busybox-static (run `make deps`)")
	}
	return missing
}

// Main runs m against a private containerd and returns the exit code for
// os.Exit. setup, if non-nil, runs once the env is up. When the host cannot
// run the suite it fails (exit 1) with the reason: never a silent skip.
func Main(m *testing.M, setup func(*Env)) int {
	// LCD_LOG_LEVEL=debug shows what the library decides, with its reasons.
	if level := os.Getenv("LCD_LOG_LEVEL"); level != "" {
		if err := log.SetLevel(level); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: LCD_LOG_LEVEL: %v\n", err)
			return 1
		}
	}
	if err := UseBinDir(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: integration tests cannot run: %v\n", err)
		return 1
	}
	if missing := Requirements(); len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: integration tests cannot run, missing: %s\n", strings.Join(missing, "; "))
		return 1
	}
	env, err := New()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: start test environment: %v\n", err)
		if env != nil {
			env.PrintLog(os.Stderr)
		}
		return 1
	}
	fmt.Fprintf(os.Stderr, "testenv: private containerd %s pid %d on %s\n", env.daemonVersion(), env.PID(), env.Address)
	if setup != nil {
		setup(env)
	}
	code := m.Run()
	if code != 0 {
		env.PrintLog(os.Stderr)
	}
	if err := env.Cleanup(); err != nil {
		fmt.Fprintf(os.Stderr, "testenv: cleanup: %v\n", err)
		code = 1
	}
	// A shim left running outlives containerd and the run (parent 1):
	// every one of this binary's must be gone once its tasks are.
	if err := env.CheckShims(shimExitTimeout); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		code = 1
	}
	env.Stop()
	// Every goroutine a test started (event streams, IO copiers, gRPC
	// connections) must be gone once its clients are closed.
	if err := goleak.Find(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: goroutines leaked: %v\n", err)
		code = 1
	}
	return code
}

// daemonVersion is what the daemon says it is, for the log: which daemon a
// run tested is the first thing to know when the suite runs on several.
func (e *Env) daemonVersion() string {
	cli, err := e.Client()
	if err != nil {
		return "(version unknown: " + err.Error() + ")"
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := cli.Version(ctx)
	if err != nil {
		return "(version unknown: " + err.Error() + ")"
	}
	return v.Version
}

// New starts a daemon and builds the rootfs.
func New() (*Env, error) {
	d, err := StartDaemon()
	if err != nil {
		return nil, err
	}
	env := &Env{Daemon: d, Rootfs: filepath.Join(d.Dir, "rootfs")}
	if err := rootfs.Build(env.Rootfs); err != nil {
		d.Kill()
		d.Stop()
		return nil, fmt.Errorf("build rootfs: %w", err)
	}
	return env, nil
}

var nsUnsafe = regexp.MustCompile(`[^a-zA-Z0-9]+`)

// Namespace returns a fresh containerd namespace for t: the cgroup path
// /<ns>/<id> is host-global, so every test gets its own, and so does every
// test binary (the pid in the name): two suites running at once on one host
// (two checkouts, or test-compat beside make test) would otherwise share
// /lcd-1-testx/c1, and one run's kill of its task (runc signals the whole
// cgroup) would kill the other's container.
func (e *Env) Namespace(t testing.TB) string {
	name := strings.Trim(nsUnsafe.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(name) > 40 {
		name = strings.TrimRight(name[:40], "-")
	}
	ns := fmt.Sprintf("lcd%d-%d-%s", os.Getpid(), e.nsCounter.Add(1), name)
	e.mu.Lock()
	e.namespaces = append(e.namespaces, ns)
	e.mu.Unlock()
	return ns
}

// Context returns a namespaced context for t, cancelled when t ends, and the
// namespace's name.
func (e *Env) Context(t testing.TB) (context.Context, string) {
	ns := e.Namespace(t)
	ctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), ns))
	t.Cleanup(cancel)
	return ctx, ns
}

// RuncOptions returns runc options with the env's private runc root.
func (e *Env) RuncOptions() *runcoptions.Options {
	return &runcoptions.Options{Root: e.RuncRoot()}
}

// SpecOpts build a spec that runs args in the shared read-only rootfs.
func (e *Env) SpecOpts(args ...string) []oci.SpecOpts {
	return []oci.SpecOpts{
		oci.WithRootFSPath(e.Rootfs),
		oci.WithRootFSReadonly(),
		oci.WithDefaultPathEnv,
		oci.WithProcessArgs(args...),
	}
}

// PrintLog copies the daemon's log to w.
func (e *Env) PrintLog(w io.Writer) {
	f, err := os.Open(e.LogPath)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(w, "---- containerd log (%s) ----\n", e.LogPath)
	_, _ = io.Copy(w, f)
	fmt.Fprintln(w, "---- end of containerd log ----")
}

// Cleanup kills and deletes every task and container in the namespaces
// handed out, so no shim outlives the run.
func (e *Env) Cleanup() error {
	cli, err := e.Client()
	if err != nil {
		return err
	}
	defer cli.Close()
	e.mu.Lock()
	nss := append([]string(nil), e.namespaces...)
	e.mu.Unlock()
	var errs []error
	for _, ns := range nss {
		ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), ns), 30*time.Second)
		errs = append(errs, removeAll(ctx, cli))
		cancel()
	}
	return errors.Join(errs...)
}

func removeAll(ctx context.Context, cli *containerd.Client) error {
	ctrs, err := cli.Containers(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range ctrs {
		if task, err := c.Task(ctx, nil); err == nil {
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil {
				errs = append(errs, fmt.Errorf("delete task %s: %w", c.ID(), err))
			}
		}
		if err := c.Delete(ctx); err != nil {
			errs = append(errs, fmt.Errorf("delete container %s: %w", c.ID(), err))
		}
	}
	return errors.Join(errs...)
}
