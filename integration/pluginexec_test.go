package integration

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/containerd"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/namespaces"

	"github.com/lcdkit/libcontainerd/examples/pluginexec"
	"github.com/lcdkit/libcontainerd/internal/testutil"
)

// pluginFixture is one test's plugin executors: one namespace, one root
// dir, one exit handler shared by every executor the test starts (as a
// daemon's plugin manager outlives its executor across a restart).
type pluginFixture struct {
	t       *testing.T
	ctx     context.Context
	ns      string
	rootDir string
	handler exitHandler
}

func newPluginFixture(t *testing.T) *pluginFixture {
	ctx, ns := env.Context(t)
	return &pluginFixture{t: t, ctx: ctx, ns: ns, rootDir: t.TempDir(), handler: newExitHandler()}
}

// executor starts an executor on a containerd client of its own, as a
// (re)started daemon would; closed when the test ends if not before.
func (f *pluginFixture) executor() *pluginexec.Executor {
	f.t.Helper()
	cli, err := env.Client()
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { cli.Close() })
	e, err := pluginexec.New(f.ctx, f.rootDir, cli, f.ns, f.handler, "io.containerd.runc.v2", env.RuncOptions())
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { e.Close() })
	return e
}

// create starts plugin id (see pluginSpec) and waits until it is ready.
func (f *pluginFixture) create(e *pluginexec.Executor, id string) *testutil.SyncBuffer {
	f.t.Helper()
	out := new(testutil.SyncBuffer)
	if err := e.Create(id, *pluginSpec(f.t, f.ctx, id), writeCloser{out}, writeCloser{new(testutil.SyncBuffer)}); err != nil {
		f.t.Fatal(err)
	}
	waitOutput(f.t, out, "ready")
	return out
}

// assertRemoved checks nothing of plugin id is left in containerd or on
// disk.
func (f *pluginFixture) assertRemoved(id string) {
	f.t.Helper()
	raw, err := env.Client()
	if err != nil {
		f.t.Fatal(err)
	}
	defer raw.Close()
	ctx := namespaces.WithNamespace(context.Background(), f.ns)
	if _, err := raw.ContainerService().Get(ctx, id); err == nil {
		f.t.Errorf("plugin container %s left", id)
	}
	if _, err := raw.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id}); err == nil {
		f.t.Errorf("plugin task %s left", id)
	}
	if _, err := os.Stat(filepath.Join(f.rootDir, id)); !os.IsNotExist(err) {
		f.t.Errorf("plugin bundle dir %s left (%v)", id, err)
	}
}

// stopAndCount stops plugin id with SIGTERM through e, closes e (which
// drains its events) and checks the handler heard of the exit once in all.
func (f *pluginFixture) stopAndCount(e *pluginexec.Executor, id string) {
	f.t.Helper()
	if err := e.Signal(id, syscall.SIGTERM); err != nil {
		f.t.Fatal(err)
	}
	f.handler.waitExits(f.t, id, 1)
	if err := e.Close(); err != nil {
		f.t.Fatal(err)
	}
	if n := count(f.handler.snapshot(), id); n != 1 {
		f.t.Fatalf("exit of %s reported %d times, want once", id, n)
	}
	f.assertRemoved(id)
}

// A plugin's output reaches the executor's writers, it answers signals,
// and its exit reaches the handler once, its task and container removed.
func TestPluginExecLifecycle(t *testing.T) {
	f := newPluginFixture(t)
	e := f.executor()
	out := f.create(e, "p")
	if running, err := e.IsRunning("p"); err != nil || !running {
		t.Fatalf("IsRunning = %v, %v", running, err)
	}
	if err := e.Signal("p", syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, out, "usr1")
	if err := e.Signal("p", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	f.handler.waitExits(t, "p", 1)
	_, err := e.IsRunning("p")
	assertClass(t, err, "NotFound")
	assertClass(t, e.Signal("p", syscall.SIGTERM), "NotFound")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if n := count(f.handler.snapshot(), "p"); n != 1 {
		t.Fatalf("exit reported %d times, want once", n)
	}
	f.assertRemoved("p")
}

// The executor restarts (a new client on the same dirs) while the plugin
// runs: Restore takes it over, with its output, and its exit reaches the
// handler once.
func TestPluginExecRestoreAfterExecutorRestart(t *testing.T) {
	f := newPluginFixture(t)
	first := f.executor()
	f.create(first, "p")
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	f.restoreAndStop("p")
}

// The same, with containerd killed and restarted between the executors.
func TestPluginExecRestoreAcrossContainerdRestart(t *testing.T) {
	f := newPluginFixture(t)
	first := f.executor()
	f.create(first, "p")
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if err := env.Restart(); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
	f.restoreAndStop("p")
}

func (f *pluginFixture) restoreAndStop(id string) {
	f.t.Helper()
	second := f.executor()
	out := new(testutil.SyncBuffer)
	alive, err := second.Restore(id, writeCloser{out}, writeCloser{new(testutil.SyncBuffer)})
	if err != nil || !alive {
		f.t.Fatalf("Restore = %v, %v; want alive", alive, err)
	}
	if running, err := second.IsRunning(id); err != nil || !running {
		f.t.Fatalf("IsRunning after Restore = %v, %v", running, err)
	}
	if err := second.Signal(id, syscall.SIGUSR1); err != nil {
		f.t.Fatal(err)
	}
	waitOutput(f.t, out, "usr1")
	f.stopAndCount(second, id)
}

// A plugin that exited while no executor ran restores as not alive, and
// what is left of it is removed; one that never existed restores to
// nothing. Neither is reported to the handler.
func TestPluginExecRestoreExitedOrMissing(t *testing.T) {
	f := newPluginFixture(t)
	first := f.executor()
	f.create(first, "p")
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := env.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	task, err := (&fixture{t: t, ctx: f.ctx, raw: raw}).loadTask("p")
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Kill(f.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	(&fixture{t: t, ctx: f.ctx, raw: raw}).waitExit("p", "")

	second := f.executor()
	if alive, err := second.Restore("p", writeCloser{new(testutil.SyncBuffer)}, writeCloser{new(testutil.SyncBuffer)}); err != nil || alive {
		t.Fatalf("Restore of an exited plugin = %v, %v; want not alive", alive, err)
	}
	f.assertRemoved("p")
	if alive, err := second.Restore("never", writeCloser{new(testutil.SyncBuffer)}, writeCloser{new(testutil.SyncBuffer)}); err != nil || alive {
		t.Fatalf("Restore of a missing plugin = %v, %v", alive, err)
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if got := f.handler.snapshot(); len(got) != 0 {
		t.Fatalf("exits reported for plugins nobody saw exit: %v", got)
	}
}

// A plugin that cannot start leaves nothing: no task, no container, no
// bundle dir, and no exit for the handler.
func TestPluginExecFailedCreate(t *testing.T) {
	f := newPluginFixture(t)
	e := f.executor()
	spec := (&legacyFixture{t: t, ctx: f.ctx}).spec("bad", env.SpecOpts("/no/such/plugin")...)
	out, errOut := new(testutil.SyncBuffer), new(testutil.SyncBuffer)
	if err := e.Create("bad", *spec, writeCloser{out}, writeCloser{errOut}); err == nil {
		t.Fatal("Create of a plugin with a missing binary succeeded")
	}
	f.assertRemoved("bad")
	_, err := e.IsRunning("bad")
	assertClass(t, err, "NotFound")
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if got := f.handler.snapshot(); len(got) != 0 {
		t.Fatalf("exits reported for a plugin that never ran: %v", got)
	}
}

// loadTask returns containerd's own handle on a task, for the test to act
// behind the library's back.
func (f *fixture) loadTask(id string) (containerd.Task, error) {
	ctr, err := f.raw.LoadContainer(f.ctx, id)
	if err != nil {
		return nil, err
	}
	return ctr.Task(f.ctx, nil)
}

// Create over a running plugin replaces it (ReplaceContainer): the old one
// is killed without an exit report, the new one runs and reports its own.
func TestPluginExecCreateReplacesRunning(t *testing.T) {
	f := newPluginFixture(t)
	e := f.executor()
	f.create(e, "p")
	out := f.create(e, "p")
	if err := e.Signal("p", syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, out, "usr1")
	f.stopAndCount(e, "p")
}
