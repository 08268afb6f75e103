package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/log"
	toml "github.com/pelletier/go-toml"
	"go.uber.org/goleak"

	"github.com/lcdkit/libcontainerd/internal/proc"
	"github.com/lcdkit/libcontainerd/internal/testenv"
	"github.com/lcdkit/libcontainerd/internal/testutil"
)

// TestMain runs the suite against the containerd LCD_CONTAINERD_BIN names
// (see testenv.BinDirEnv), or the host's: its directory goes first on PATH, so
// the daemons the tests start (and their shims) are that version.
func TestMain(m *testing.M) {
	if err := testenv.UseBinDir(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m)
}

// hostPlugins are the plugins that cannot initialise on this host; with them
// (and CRI) disabled, every plugin must come up without an init error.
var hostPlugins = []string{
	"io.containerd.snapshotter.v1.aufs",
	"io.containerd.snapshotter.v1.btrfs",
	"io.containerd.snapshotter.v1.devmapper",
	"io.containerd.snapshotter.v1.zfs",
}

// requireHost fails (never skips) a test that needs a real containerd when
// the host cannot provide one.
func requireHost(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("supervisor tests run a real containerd and must run as root")
	}
	if _, err := testenv.DaemonBinary(); err != nil {
		t.Fatalf("no containerd to run (%v): install it with `make deps`", err)
	}
}

// daemonBinary is the containerd the tests run, given to Start explicitly
// (WithBinary) so the test says which daemon it supervises.
func daemonBinary() string {
	bin, err := testenv.DaemonBinary()
	if err != nil {
		return "containerd" // requireHost reports it
	}
	return bin
}

// testDirs returns short root and state dirs (the socket path must fit).
func testDirs(t *testing.T) (root, state string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "sv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "r"), filepath.Join(dir, "s")
}

// testOpts keep the suite fast: quick health checks and restarts.
func testOpts(extra ...DaemonOpt) []DaemonOpt {
	return append([]DaemonOpt{
		WithLogFile(),
		WithBinary(daemonBinary()),
		WithCRIDisabled(),
		WithDisabledPlugins(hostPlugins...),
		WithLogLevel("debug"),
		WithHealthCheck(100*time.Millisecond, 500*time.Millisecond, 3),
		WithRestartBackoff(50*time.Millisecond, 500*time.Millisecond),
		WithStopTimeout(5 * time.Second),
	}, extra...)
}

type running struct {
	d      Daemon
	cancel context.CancelFunc
	state  string
}

// start starts a supervisor and stops it at cleanup (dumping the daemon log
// if the test failed).
func start(t *testing.T, root, state string, opts ...DaemonOpt) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := Start(ctx, root, state, testOpts(opts...)...)
	if err != nil {
		cancel()
		dumpLog(t, state)
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := d.WaitTimeout(20 * time.Second); err != nil {
			t.Errorf("WaitTimeout at cleanup: %v", err)
		}
		if t.Failed() {
			dumpLog(t, state)
		}
	})
	return &running{d: d, cancel: cancel, state: state}
}

func dumpLog(t *testing.T, state string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, logFileName))
	if err != nil {
		return
	}
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	t.Logf("containerd log (tail):\n%s", b)
}

// checkServing asserts that containerd serves on addr and that no plugin
// failed to initialise.
func checkServing(t *testing.T, addr string) {
	t.Helper()
	cli, err := containerd.New(addr, containerd.WithTimeout(2*time.Second))
	if err != nil {
		t.Fatalf("connect to %s: %v", addr, err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ok, err := cli.IsServing(ctx)
	if err != nil || !ok {
		t.Fatalf("IsServing = %v, %v; want true", ok, err)
	}
	resp, err := testenv.ListPlugins(ctx, cli)
	if err != nil {
		t.Fatalf("list plugins: %v", err)
	}
	for _, p := range resp.Plugins {
		if testenv.PluginFailed(p.InitErr.GetMessage()) {
			t.Errorf("plugin %s.%s failed to init: %s", p.Type, p.ID, p.InitErr.Message)
		}
		for _, cri := range criPlugins {
			if p.Type+"."+p.ID == cri {
				t.Errorf("CRI plugin %s is loaded although disabled", cri)
			}
		}
	}
}

// waitNewPID polls (another process: nothing to wait on) until the
// supervisor runs a daemon other than old, and returns its pid.
func waitNewPID(t *testing.T, d Daemon, old int, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if pid := PID(d); pid != 0 && pid != old {
			return pid
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("daemon (pid %d) not replaced within %s", old, within)
	return 0
}

// gone reports whether pid no longer exists (or is a zombie).
func gone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the ")" closing the command name.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z' || s[i+2] == 'X'
	}
	return false
}

// runsConfig reports whether pid is a process started on configFile (so that
// cleanup never signals a recycled pid).
func runsConfig(pid int, configFile string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && bytes.Contains(b, []byte(configFile))
}

func readPid(t *testing.T, state string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, pidFileName))
	if err != nil {
		t.Fatalf("read pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	return pid
}

func isClass[T any](err error) bool {
	var target T
	return errors.As(err, &target)
}

type (
	invalidParameter interface{ InvalidParameter() }
	notFound         interface{ NotFound() }
	systemErr        interface{ System() }
)

func TestStartServes(t *testing.T) {
	requireHost(t)
	root, state := testDirs(t)
	r := start(t, root, state)

	if want := filepath.Join(state, "containerd.sock"); r.d.Address() != want {
		t.Errorf("Address() = %q, want %q", r.d.Address(), want)
	}
	checkServing(t, r.d.Address())
	pid := PID(r.d)
	if pid <= 0 {
		t.Fatalf("PID() = %d", pid)
	}
	if got := readPid(t, state); got != pid {
		t.Errorf("pid file says %d, PID() %d", got, pid)
	}
	wantExe, _ := filepath.EvalSymlinks(daemonBinary())
	if exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); err != nil || exe != wantExe {
		t.Errorf("daemon %d runs %q (%v), want %s", pid, exe, err, wantExe)
	}
	configFile := filepath.Join(state, "containerd.toml")
	if !runsConfig(pid, configFile) {
		t.Errorf("daemon %d does not run on %s", pid, configFile)
	}
	if _, err := os.Stat(filepath.Join(state, logFileName)); err != nil {
		t.Errorf("daemon log: %v", err)
	}

	tree, err := toml.LoadFile(configFile)
	if err != nil {
		t.Fatalf("parse config: %v", err)
	}
	for key, want := range map[string]interface{}{
		"version":       int64(2),
		"root":          filepath.Join(root, "daemon"),
		"state":         filepath.Join(state, "daemon"),
		"grpc.address":  filepath.Join(state, "containerd.sock"),
		"ttrpc.address": filepath.Join(state, "containerd.sock.ttrpc"),
		"debug.level":   "debug",
	} {
		if got := tree.Get(key); got != want {
			t.Errorf("config %s = %#v, want %#v", key, got, want)
		}
	}
	disabled, _ := tree.Get("disabled_plugins").([]interface{})
	var want []interface{}
	for _, p := range append(append([]string(nil), criPlugins...), hostPlugins...) {
		want = append(want, p)
	}
	if fmt.Sprint(disabled) != fmt.Sprint(want) {
		t.Errorf("config disabled_plugins = %v, want CRI's %v then %v", disabled, criPlugins, hostPlugins)
	}
	if tree.Has("debug.format") {
		t.Errorf("config has debug.format although none was given")
	}
	for _, d := range []string{root, state} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o711 {
			t.Errorf("dir %s: %v %v, want mode 0711", d, fi.Mode(), err)
		}
	}
}

func TestRestartAfterKill(t *testing.T) {
	requireHost(t)
	root, state := testDirs(t)
	r := start(t, root, state)
	old := PID(r.d)

	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	pid := waitNewPID(t, r.d, old, 10*time.Second)
	checkServing(t, r.d.Address())
	if got := readPid(t, state); got != pid {
		t.Errorf("pid file says %d after restart, PID() %d", got, pid)
	}
	if !gone(old) {
		t.Errorf("old daemon %d still exists", old)
	}
}

func TestRestartAfterHang(t *testing.T) {
	requireHost(t)
	root, state := testDirs(t)
	r := start(t, root, state)
	old := PID(r.d)
	configFile := filepath.Join(state, configFileName)
	t.Cleanup(func() {
		if runsConfig(old, configFile) && !gone(old) {
			_ = syscall.Kill(old, syscall.SIGCONT)
			_ = syscall.Kill(old, syscall.SIGKILL)
		}
	})

	if err := syscall.Kill(old, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// 3 failed checks at 100 ms intervals with a 500 ms timeout, then a
	// restart: well under 5 s.
	began := time.Now()
	waitNewPID(t, r.d, old, 10*time.Second)
	t.Logf("hang detected and daemon replaced in %s", time.Since(began).Round(time.Millisecond))
	checkServing(t, r.d.Address())
	if !gone(old) {
		t.Errorf("hung daemon %d was not killed", old)
	}
}

// handStart starts containerd on the config Start would write, as a previous
// incarnation of the engine would have left it, and records it in the pid
// file. The returned channel is closed once it has been reaped.
func handStart(t *testing.T, root, state string) (int, <-chan struct{}) {
	t.Helper()
	r, err := newRemote(root, state, testOpts())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.makeDirs(); err != nil {
		t.Fatal(err)
	}
	if err := r.writeConfig(); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.OpenFile(filepath.Join(state, logFileName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(r.binary, "--config", r.configFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	child, err := proc.Start(cmd)
	logFile.Close() // the child has its own copy
	if err != nil {
		t.Fatal(err)
	}
	pid, reaped := child.Pid(), child.Exited()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-reaped
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := r.waitReady(ctx, &daemonProc{pid: pid, exited: reaped}); err != nil {
		t.Fatalf("hand-started containerd: %v", err)
	}
	if err := r.writePidFile(pid); err != nil {
		t.Fatal(err)
	}
	return pid, reaped
}

func TestAdoptThenRestart(t *testing.T) {
	requireHost(t)
	root, state := testDirs(t)
	adopted, reaped := handStart(t, root, state)

	r := start(t, root, state)
	if got := PID(r.d); got != adopted {
		t.Fatalf("PID() = %d, want the adopted %d", got, adopted)
	}
	checkServing(t, r.d.Address())

	// Not our child: the supervisor sees its death through the pidfd.
	if err := syscall.Kill(adopted, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reaped:
	case <-time.After(10 * time.Second):
		t.Fatal("hand-started daemon not reaped")
	}
	pid := waitNewPID(t, r.d, adopted, 10*time.Second)
	checkServing(t, r.d.Address())
	if got := readPid(t, state); got != pid {
		t.Errorf("pid file says %d, PID() %d", got, pid)
	}

	// The replacement is our own child, stopped on cancel.
	r.cancel()
	if err := r.d.WaitTimeout(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !gone(pid) {
		t.Errorf("daemon %d still runs after cancel", pid)
	}
}

func TestAdoptedHangIsReplaced(t *testing.T) {
	requireHost(t)
	root, state := testDirs(t)
	adopted, reaped := handStart(t, root, state)
	t.Cleanup(func() { _ = syscall.Kill(adopted, syscall.SIGCONT) })

	r := start(t, root, state)
	if got := PID(r.d); got != adopted {
		t.Fatalf("PID() = %d, want the adopted %d", got, adopted)
	}
	if err := syscall.Kill(adopted, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitNewPID(t, r.d, adopted, 10*time.Second)
	select {
	case <-reaped: // killed through the pidfd
	case <-time.After(10 * time.Second):
		t.Fatal("hung adopted daemon was not killed")
	}
	checkServing(t, r.d.Address())
}

func TestStalePidFileNotAdopted(t *testing.T) {
	requireHost(t)
	root, state := testDirs(t)
	if err := os.MkdirAll(state, 0o711); err != nil {
		t.Fatal(err)
	}
	// A live process that is not containerd: the test binary itself.
	self := os.Getpid()
	if err := os.WriteFile(filepath.Join(state, pidFileName), []byte(strconv.Itoa(self)), 0o644); err != nil {
		t.Fatal(err)
	}
	r := start(t, root, state)
	if pid := PID(r.d); pid == self || pid <= 0 {
		t.Fatalf("PID() = %d: adopted a process that is not containerd", pid)
	}
	checkServing(t, r.d.Address())
}

func TestStopOnCancel(t *testing.T) {
	requireHost(t)
	root, state := testDirs(t)
	r := start(t, root, state)
	pid := PID(r.d)

	began := time.Now()
	r.cancel()
	if err := r.d.WaitTimeout(20 * time.Second); err != nil {
		t.Fatalf("WaitTimeout: %v", err)
	}
	t.Logf("stopped in %s", time.Since(began).Round(time.Millisecond))
	if !gone(pid) {
		t.Errorf("daemon %d still exists after WaitTimeout", pid)
	}
	if got := PID(r.d); got != 0 {
		t.Errorf("PID() = %d after stop, want 0", got)
	}
	for _, f := range []string{pidFileName, socketFileName, socketFileName + ttrpcSuffix} {
		if _, err := os.Stat(filepath.Join(state, f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed: %v", f, err)
		}
	}
	if err := r.d.WaitTimeout(0); err != nil {
		t.Errorf("WaitTimeout after stop: %v", err)
	}
	goleak.VerifyNone(t)
}

func TestWaitTimeoutWhileRunning(t *testing.T) {
	requireHost(t)
	root, state := testDirs(t)
	r := start(t, root, state)
	if err := r.d.WaitTimeout(50 * time.Millisecond); err == nil {
		t.Fatal("WaitTimeout returned nil while the supervisor runs")
	}
}

func TestLogWriterFormatAndExtraConfig(t *testing.T) {
	requireHost(t)
	root, state := testDirs(t)
	var out testutil.SyncBuffer
	r := start(t, root, state,
		WithLogWriter(&out),
		WithLogFormat(log.JSONFormat),
		WithExtraConfig(func(cfg map[string]interface{}) {
			cfg["oom_score"] = int64(-500)
			cfg["plugins"] = map[string]interface{}{
				"io.containerd.gc.v1.scheduler": map[string]interface{}{"pause_threshold": 0.03},
			}
		}))
	checkServing(t, r.d.Address())

	tree, err := toml.LoadFile(filepath.Join(state, configFileName))
	if err != nil {
		t.Fatal(err)
	}
	if got := tree.Get("oom_score"); got != int64(-500) {
		t.Errorf("oom_score = %#v", got)
	}
	if got := tree.GetPath([]string{"plugins", "io.containerd.gc.v1.scheduler", "pause_threshold"}); got != 0.03 {
		t.Errorf("gc pause_threshold = %#v", got)
	}
	if got := tree.Get("debug.format"); got != "json" {
		t.Errorf("debug.format = %#v", got)
	}
	if _, err := os.Stat(filepath.Join(state, logFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("log file created although a writer was given: %v", err)
	}
	r.cancel()
	if err := r.d.WaitTimeout(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, `"level":"debug"`) {
		t.Errorf("log writer got no JSON debug lines: %.500q", s)
	}
}

func TestMissingBinary(t *testing.T) {
	root, state := testDirs(t)
	d, err := Start(context.Background(), root, state, WithBinary("/nonexistent/containerd"))
	if err == nil {
		t.Fatalf("Start succeeded with a missing binary (%s)", d.Address())
	}
	if !isClass[notFound](err) {
		t.Errorf("error %q (%T) is not NotFound", err, err)
	}
	if !strings.Contains(err.Error(), "containerd binary not found") || !strings.Contains(err.Error(), "/nonexistent/containerd") {
		t.Errorf("unclear error: %v", err)
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir created although Start failed early: %v", err)
	}
	goleak.VerifyNone(t)
}

func TestInvalidDirs(t *testing.T) {
	root, state := testDirs(t)
	file := filepath.Join(filepath.Dir(root), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	long := "/tmp/" + strings.Repeat("x", 100)
	bin := fakeDaemon(t, "exit 1") // never reached: the dirs are checked first
	for _, tc := range []struct {
		name        string
		root, state string
		want        string
	}{
		{"state is a file", root, file, "not a directory"},
		{"state under a file", root, filepath.Join(file, "s"), "not a directory"},
		{"root is a file", file, state, "not a directory"},
		{"cannot be created", root, "/proc/sv-test", "/proc/sv-test"},
		{"empty", "", state, "must both be set"},
		{"socket too long", root, long, "socket path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(context.Background(), tc.root, tc.state, WithBinary(bin))
			if err == nil {
				t.Fatal("Start succeeded")
			}
			if !isClass[invalidParameter](err) {
				t.Errorf("error %q (%T) is not InvalidParameter", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
	goleak.VerifyNone(t)
}

func TestInvalidOptions(t *testing.T) {
	root, state := testDirs(t)
	for name, opt := range map[string]DaemonOpt{
		"log level":     WithLogLevel("bogus"),
		"log format":    WithLogFormat("xml"),
		"health check":  WithHealthCheck(0, time.Second, 3),
		"start timeout": WithStartTimeout(0),
		"stop timeout":  WithStopTimeout(-1),
		"backoff":       WithRestartBackoff(time.Second, time.Millisecond),
		"binary":        WithBinary(""),
		"log writer":    WithLogWriter(nil),
		"extra config":  WithExtraConfig(nil),
		"plugin":        WithDisabledPlugins(""),
	} {
		_, err := Start(context.Background(), root, state, opt)
		if err == nil || !isClass[invalidParameter](err) {
			t.Errorf("%s: error %v (%T), want InvalidParameter", name, err, err)
		}
	}
	if _, err := Start(context.Background(), root, state, WithLogLevel("bogus")); err == nil || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("log level error does not name the level: %v", err)
	}
	for _, lvl := range []string{"", "trace", "debug", "info", "warn", "error", "fatal", "panic"} {
		r := &remote{}
		if err := WithLogLevel(lvl)(r); err != nil {
			t.Errorf("WithLogLevel(%q): %v", lvl, err)
		}
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir created although the options were invalid: %v", err)
	}
}

// fakeDaemon writes an executable that runs script instead of containerd.
func fakeDaemon(t *testing.T, script string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "containerd")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDaemonExitsAtStartup(t *testing.T) {
	root, state := testDirs(t)
	bin := fakeDaemon(t, "echo cannot start >&2; exit 3")
	_, err := Start(context.Background(), root, state, WithBinary(bin), WithLogFile())
	if err == nil {
		t.Fatal("Start succeeded with a daemon that exits")
	}
	if !isClass[systemErr](err) || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("error %q (%T): want System mentioning the exit status", err, err)
	}
	if !strings.Contains(err.Error(), logFileName) {
		t.Errorf("error %q does not point to the log", err)
	}
	if b, _ := os.ReadFile(filepath.Join(state, logFileName)); !strings.Contains(string(b), "cannot start") {
		t.Errorf("daemon output not in the log: %q", b)
	}
	if _, err := os.Stat(filepath.Join(state, pidFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file left behind: %v", err)
	}
	goleak.VerifyNone(t)
}

// By default the daemon writes to the engine's own stdout and stderr, as
// moby's supervisor has it ("redirect containerd logs to docker logs"), and
// no log file is made.
func TestDaemonOutputIsEnginesByDefault(t *testing.T) {
	root, state := testDirs(t)
	out, err := os.Create(filepath.Join(t.TempDir(), "engine-output"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = out, out
	bin := fakeDaemon(t, "echo to-stdout; echo to-stderr >&2; exit 3")
	_, err = Start(context.Background(), root, state, WithBinary(bin))
	os.Stdout, os.Stderr = oldOut, oldErr
	if err == nil {
		t.Fatal("Start succeeded with a daemon that exits")
	}
	b, _ := os.ReadFile(out.Name())
	if !strings.Contains(string(b), "to-stdout") || !strings.Contains(string(b), "to-stderr") {
		t.Errorf("engine's output = %q: want the daemon's stdout and stderr", b)
	}
	if _, err := os.Stat(filepath.Join(state, logFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("log file made without WithLogFile: %v", err)
	}
	goleak.VerifyNone(t)
}

func TestDaemonNeverServes(t *testing.T) {
	root, state := testDirs(t)
	bin := fakeDaemon(t, "exec sleep 60")
	began := time.Now()
	_, err := Start(context.Background(), root, state, WithBinary(bin), WithStartTimeout(300*time.Millisecond),
		WithHealthCheck(100*time.Millisecond, 100*time.Millisecond, 1))
	if err == nil {
		t.Fatal("Start succeeded with a daemon that never serves")
	}
	if !isClass[systemErr](err) || !strings.Contains(err.Error(), "not serving") {
		t.Errorf("error %q (%T): want System, not serving", err, err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Start took %s with a 300ms start timeout", d)
	}
	goleak.VerifyNone(t) // the child was killed and reaped
}

func TestCancelledBeforeStart(t *testing.T) {
	requireHost(t)
	root, state := testDirs(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Start(ctx, root, state); !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with a cancelled ctx: %v, want context.Canceled", err)
	}
}
