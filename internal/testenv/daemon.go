package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"google.golang.org/grpc"

	"github.com/lcdkit/libcontainerd/internal/dial"
	"github.com/lcdkit/libcontainerd/internal/proc"
)

const (
	// readyTimeout bounds how long a (re)started daemon may take to serve.
	readyTimeout = 15 * time.Second
	// stopTimeout bounds the graceful stop before SIGKILL.
	stopTimeout = 10 * time.Second
	// dirPrefix names the temp dirs, so a later run can sweep the ones a
	// killed run left behind.
	dirPrefix = "lcdtest-"
)

// disabledPlugins are the plugins that cannot work on these hosts: CRI (not
// used, slow, and `[plugins.cri] disable` is ignored by 1.6) and snapshotters
// whose init fails or skips here. Readiness requires every other plugin to
// initialise without error.
var disabledPlugins = []string{
	// CRI: one plugin up to 1.7; from 2.0 the gRPC service plus image and
	// runtime services and the pod sandbox controller that needs them,
	// which would all still start with the first disabled alone. Daemons
	// ignore the IDs they do not have.
	"io.containerd.grpc.v1.cri",
	"io.containerd.cri.v1.images",
	"io.containerd.cri.v1.runtime",
	"io.containerd.podsandbox.controller.v1.podsandbox",
	"io.containerd.snapshotter.v1.aufs",
	"io.containerd.snapshotter.v1.btrfs",
	"io.containerd.snapshotter.v1.devmapper",
	"io.containerd.snapshotter.v1.zfs",
}

// Daemon is a private containerd process on its own temp directories.
type Daemon struct {
	// Dir holds everything: config, root, state, socket, log, runc root.
	Dir string
	// Address is the daemon's gRPC socket.
	Address string
	// LogPath is the daemon's log file (appended across restarts).
	LogPath string

	child *proc.Child // the current daemon process
}

// StartDaemon creates the temp dirs and starts containerd, returning once it
// serves with every plugin initialised.
func StartDaemon() (*Daemon, error) {
	sweepStale()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		Dir:     dir,
		Address: filepath.Join(dir, "containerd.sock"),
		LogPath: filepath.Join(dir, "containerd.log"),
	}
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(d.configPath(), []byte(d.config()), 0o644); err != nil {
		return nil, err
	}
	if err := os.Mkdir(d.TempDir(), 0o700); err != nil {
		return nil, err
	}
	if err := d.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return d, nil
}

func (d *Daemon) configPath() string { return filepath.Join(d.Dir, "config.toml") }

// TempDir is the daemon's (and its shims') temp dir: containerd makes its
// ctrd-checkpoint* dirs there, and tests compare it before and after, so
// it is private to the daemon rather than the host's shared /tmp.
func (d *Daemon) TempDir() string { return filepath.Join(d.Dir, "tmp") }

// daemonEnv is this process's environment with the daemon's temp dir:
// containerd takes XDG_RUNTIME_DIR first when it is set.
func (d *Daemon) daemonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TMPDIR=") && !strings.HasPrefix(kv, "XDG_RUNTIME_DIR=") {
			env = append(env, kv)
		}
	}
	return append(env, "TMPDIR="+d.TempDir())
}

// RuncRoot is the runc state dir every test container must use: runc's
// default root is host-global.
func (d *Daemon) RuncRoot() string { return filepath.Join(d.Dir, "runc") }

func (d *Daemon) config() string {
	quoted := make([]string, len(disabledPlugins))
	for i, p := range disabledPlugins {
		quoted[i] = strconv.Quote(p)
	}
	return fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = [%s]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  level = "debug"
`, filepath.Join(d.Dir, "root"), filepath.Join(d.Dir, "state"), strings.Join(quoted, ", "),
		d.Address, d.Address+".ttrpc")
}

// Start starts containerd on the daemon's dirs (again, after Kill) and waits
// until it serves.
func (d *Daemon) Start() error {
	logFile, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	bin, err := DaemonBinary()
	if err != nil {
		logFile.Close()
		return err
	}
	cmd := exec.Command(bin, "--config", d.configPath())
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = d.daemonEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// proc.Start: the daemon dies with the test binary, even on kill -9.
	child, err := proc.Start(cmd)
	logFile.Close() // the child has its own copy
	if err != nil {
		return fmt.Errorf("start containerd: %w", err)
	}
	d.child = child
	if err := d.waitReady(); err != nil {
		d.Kill()
		return err
	}
	return nil
}

// PID is the running daemon's process id.
func (d *Daemon) PID() int { return d.child.Pid() }

// waitReady polls until the daemon answers IsServing and reports no plugin
// with an init error, within readyTimeout.
func (d *Daemon) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-d.child.Exited():
			return fmt.Errorf("containerd exited during startup (log: %s)", d.LogPath)
		default:
		}
		if lastErr = d.probe(); lastErr == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond) // polling an external process: nothing to await
	}
	return fmt.Errorf("containerd not ready after %s: %w", readyTimeout, lastErr)
}

func (d *Daemon) probe() error {
	cli, err := dial.Serving(context.Background(), d.Address, time.Second)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := ListPlugins(ctx, cli)
	if err != nil {
		return err
	}
	for _, p := range resp.Plugins {
		if PluginFailed(p.InitErr.GetMessage()) {
			return fmt.Errorf("plugin %s.%s failed to init: %s", p.Type, p.ID, p.InitErr.Message)
		}
	}
	return nil
}

// PluginFailed reports whether a plugin's init error (its message; "" for
// none) is a failure. A plugin that chose to skip itself is not: from 1.7 on
// containerd reports those with an init error that says "skip plugin" (the
// blockfile snapshotter without a scratch file, tracing without an
// endpoint), which `ctr plugins ls` shows as "skip", not "error" (it looks
// for the same text).
func PluginFailed(initErr string) bool {
	return initErr != "" && !strings.Contains(initErr, "skip plugin")
}

// Kill sends SIGKILL to the daemon (not its shims, which survive as they
// would in a crash) and waits until it is reaped.
func (d *Daemon) Kill() {
	if d.child == nil {
		return
	}
	_ = d.child.Cmd.Process.Signal(syscall.SIGKILL)
	<-d.child.Exited()
}

// Restart kills the daemon and starts it again on the same dirs.
func (d *Daemon) Restart() error {
	d.Kill()
	return d.Start()
}

// Stop stops the daemon (SIGTERM, then SIGKILL after a bound) and removes its
// dirs. Call Cleanup first to get rid of tasks and shims.
func (d *Daemon) Stop() {
	if d.child != nil {
		_ = d.child.Cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.child.Exited():
		case <-time.After(stopTimeout):
			d.Kill()
		}
	}
	_ = os.RemoveAll(d.Dir)
}

// Client dials the daemon with dial.Options(extra...).
func (d *Daemon) Client(extra ...grpc.DialOption) (*containerd.Client, error) {
	return containerd.New(d.Address,
		containerd.WithTimeout(5*time.Second),
		containerd.WithDialOpts(dial.Options(extra...)),
		containerd.WithDefaultRuntime("io.containerd.runc.v2"))
}

// reapContainers force-deletes the containers a killed run left in its
// private runc root, then kills their shims (which outlive containerd by
// design), so a test binary killed with -9 leaks nothing for long.
func reapContainers(dir string) {
	nsDirs, _ := filepath.Glob(filepath.Join(dir, "runc", "*"))
	for _, root := range nsDirs {
		out, err := exec.Command("runc", "--root", root, "list", "-q").Output()
		if err != nil {
			continue
		}
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("runc", "--root", root, "delete", "--force", id).Run()
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), "containerd-shim") || !strings.Contains(string(b), dir+"/") {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// sweepStale removes temp dirs of earlier runs whose owner is gone (a test
// binary killed with -9 cannot clean up after itself).
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			reapContainers(dir)
			_ = os.RemoveAll(dir)
		}
	}
}
