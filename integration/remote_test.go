package integration

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/namespaces"
	runcoptions "github.com/containerd/containerd/runtime/v2/runc/options"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	executor "github.com/lcdkit/libcontainerd/integration/internal/v18executor"
	"github.com/lcdkit/libcontainerd/internal/testutil"
	v18 "github.com/lcdkit/libcontainerd/legacy/v18"
	"github.com/lcdkit/libcontainerd/supervisor"
)

// v18Event is one event a v18 backend received.
type v18Event struct {
	Type v18.EventType
	Info v18.EventInfo
}

type v18Backend struct{ *recorder[v18Event] }

func newV18Backend() v18Backend { return v18Backend{newRecorder[v18Event]()} }

func (b v18Backend) ProcessEvent(containerID string, et v18.EventType, ei v18.EventInfo) error {
	b.add(v18Event{et, ei})
	return nil
}

func (b v18Backend) waitExit(t testing.TB, containerID string) v18.EventInfo {
	t.Helper()
	var got v18.EventInfo
	b.wait(t, "exit of "+containerID, func(evs []v18Event) bool {
		for _, e := range evs {
			if e.Type == v18.EventExit && e.Info.ContainerID == containerID {
				got = e.Info
				return true
			}
		}
		return false
	})
	return got
}

// runV18 runs a container to completion through a v18 client: Create
// (no shim argument), Start, exit event, Status, DeleteTask, Delete.
func runV18(t *testing.T, c v18.Client, b v18Backend, ctx context.Context, id, runcRoot string, code int) {
	t.Helper()
	spec := (&legacyFixture{t: t, ctx: ctx}).spec(id, env.SpecOpts("sh", "-c", "exit "+strconv.Itoa(code))...)
	if err := c.Create(ctx, id, spec, &runcoptions.Options{Root: runcRoot}); err != nil {
		t.Fatal(err)
	}
	if pid, err := c.Start(ctx, id, "", false, newStdio().attach); err != nil || pid <= 0 {
		t.Fatalf("Start = %d, %v", pid, err)
	}
	if ei := b.waitExit(t, id); ei.ExitCode != uint32(code) {
		t.Fatalf("exit %+v, want %d", ei, code)
	}
	if s, err := c.Status(ctx, id); err != nil || s != v18.StatusStopped {
		t.Fatalf("Status = %q, %v; want stopped", s, err)
	}
	if got, _, err := c.DeleteTask(ctx, id); err != nil || got != uint32(code) {
		t.Fatalf("DeleteTask = %d, %v", got, err)
	}
	if err := c.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
}

// A Remote that starts its own containerd: a client works on it, and
// Cleanup stops the daemon and leaves no process, socket or pid file.
func TestRemoteStartedDaemon(t *testing.T) {
	ns := env.Namespace(t)
	root, state := t.TempDir(), t.TempDir()
	r, err := v18.New(root, state, v18.WithStartDaemon(true), v18.WithLogLevel("debug"))
	if err != nil {
		t.Fatal(err)
	}
	pidBytes, err := os.ReadFile(filepath.Join(state, "containerd.pid"))
	if err != nil {
		r.Cleanup()
		t.Fatalf("no pid file: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidBytes)))
	b := newV18Backend()
	c, err := r.NewClient(ns, b)
	if err != nil {
		r.Cleanup()
		t.Fatal(err)
	}
	ctx := namespaces.WithNamespace(context.Background(), ns)
	if v, err := c.Version(ctx); err != nil || v.Version == "" {
		t.Errorf("Version = %+v, %v", v, err)
	}
	runV18(t, c, b, ctx, "c", filepath.Join(root, "runc"), 5)

	r.Cleanup()
	if pid <= 0 || syscall.Kill(pid, 0) == nil {
		t.Errorf("containerd %d still running after Cleanup", pid)
	}
	for _, f := range []string{"containerd.pid", "containerd.sock", "containerd.sock.ttrpc"} {
		if _, err := os.Stat(filepath.Join(state, f)); !os.IsNotExist(err) {
			t.Errorf("%s left after Cleanup (%v)", f, err)
		}
	}
	_, err = r.NewClient(ns, b)
	assertClass(t, err, "Unavailable")
	r.Cleanup() // twice is fine
}

// A Remote on an existing socket with clients in two namespaces at once:
// each backend hears only its own namespace (the same container ID in
// both), and Cleanup leaves the daemon running.
func TestRemoteExistingSocketTwoNamespaces(t *testing.T) {
	r, err := v18.New(t.TempDir(), t.TempDir(), v18.WithRemoteAddr(env.Address))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Cleanup()
	type nsClient struct {
		ns string
		c  v18.Client
		b  v18Backend
	}
	var clients []nsClient
	for i := 0; i < 2; i++ {
		ns := env.Namespace(t)
		b := newV18Backend()
		c, err := r.NewClient(ns, b)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, nsClient{ns, c, b})
	}
	// Both containers run at once, under one ID.
	for i, nc := range clients {
		ctx := namespaces.WithNamespace(context.Background(), nc.ns)
		spec := (&legacyFixture{t: t, ctx: ctx}).spec("same", env.SpecOpts("sh", "-c", "read x; exit "+strconv.Itoa(10+i))...)
		if err := nc.c.Create(ctx, "same", spec, env.RuncOptions()); err != nil {
			t.Fatal(err)
		}
	}
	ios := make([]*stdio, len(clients))
	for i, nc := range clients {
		ios[i] = newStdio()
		if _, err := nc.c.Start(namespaces.WithNamespace(context.Background(), nc.ns), "same", "", true, ios[i].attach); err != nil {
			t.Fatal(err)
		}
	}
	for i, nc := range clients {
		ctx := namespaces.WithNamespace(context.Background(), nc.ns)
		if err := nc.c.CloseStdin(ctx, "same", v18.InitProcessName); err != nil {
			t.Fatal(err)
		}
		if ei := nc.b.waitExit(t, "same"); ei.ExitCode != uint32(10+i) {
			t.Fatalf("namespace %s: exit %+v, want %d", nc.ns, ei, 10+i)
		}
		if _, _, err := nc.c.DeleteTask(ctx, "same"); err != nil {
			t.Fatal(err)
		}
		if err := nc.c.Delete(ctx, "same"); err != nil {
			t.Fatal(err)
		}
	}
	for _, nc := range clients {
		exits := 0
		for _, e := range nc.b.snapshot() {
			if e.Type == v18.EventExit {
				exits++
			}
		}
		if exits != 1 {
			t.Errorf("namespace %s: %d exits, want its own one: %+v", nc.ns, exits, nc.b.snapshot())
		}
	}
	r.Cleanup()
	cli, err := env.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ok, err := cli.IsServing(ctx); !ok || err != nil {
		t.Fatalf("the existing daemon stopped serving after Cleanup: %v", err)
	}
}

func TestRemoteOptions(t *testing.T) {
	_, err := v18.New(t.TempDir(), t.TempDir(), v18.WithRemoteAddr(env.Address), v18.WithStartDaemon(true))
	assertClass(t, err, "InvalidParameter")
	_, err = v18.New("", t.TempDir())
	assertClass(t, err, "InvalidParameter")
	_, err = v18.New(t.TempDir(), t.TempDir(), v18.WithRemoteAddr(filepath.Join(t.TempDir(), "none.sock")))
	assertClass(t, err, "Unavailable")
	r, err := v18.New(t.TempDir(), t.TempDir(), v18.WithRemoteAddr(env.Address))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Cleanup()
	_, err = r.NewClient("bad/ns", newV18Backend())
	assertClass(t, err, "InvalidParameter")
	// Supervisor options reach a started daemon; a bad one fails New.
	_, err = v18.New(t.TempDir(), t.TempDir(), v18.WithStartDaemon(true), v18.WithDaemonOpts(supervisor.WithLogLevel("loud")))
	assertClass(t, err, "InvalidParameter")
}

// exitHandler records the plugin exits an executor reports.
type exitHandler struct{ *recorder[string] }

func newExitHandler() exitHandler { return exitHandler{newRecorder[string]()} }

func (h exitHandler) HandleExitEvent(id string) error {
	h.add(id)
	return nil
}

// waitExits waits until id's exit has been reported n times in total.
func (h exitHandler) waitExits(t testing.TB, id string, n int) {
	t.Helper()
	h.wait(t, "exit of plugin "+id, func(ids []string) bool { return count(ids, id) >= n })
}

func count(ids []string, id string) int {
	n := 0
	for _, x := range ids {
		if x == id {
			n++
		}
	}
	return n
}

// pluginSpec is a plugin that says ready, answers SIGUSR1 on stdout and
// exits 3 on SIGTERM.
func pluginSpec(t *testing.T, ctx context.Context, id string) *specs.Spec {
	return (&legacyFixture{t: t, ctx: ctx}).spec(id, env.SpecOpts("sh", "-c",
		`trap 'echo usr1' USR1; trap 'exit 3' TERM; echo ready; while :; do sleep 0.1; done`)...)
}

// moby v18's plugin executor, ported to this Remote (only its imports and
// runc options type differ from moby's file), creates a plugin, signals it,
// restores one through a second Remote as a restarted daemon would, and
// reports one exit per plugin.
func TestRemoteMobyV18Executor(t *testing.T) {
	ns := env.Namespace(t)
	old := executor.PluginNamespace
	executor.PluginNamespace = ns
	defer func() { executor.PluginNamespace = old }()
	ctx := namespaces.WithNamespace(context.Background(), ns)
	root, state := t.TempDir(), t.TempDir()
	h := newExitHandler()

	r1, err := v18.New(root, state, v18.WithRemoteAddr(env.Address))
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Cleanup()
	e1, err := executor.New(root, r1, h)
	if err != nil {
		t.Fatal(err)
	}
	out := new(testutil.SyncBuffer)
	if err := e1.Create("p1", *pluginSpec(t, ctx, "p1"), writeCloser{out}, writeCloser{new(testutil.SyncBuffer)}); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, out, "ready")
	if running, err := e1.IsRunning("p1"); err != nil || !running {
		t.Fatalf("IsRunning = %v, %v", running, err)
	}
	if err := e1.Signal("p1", int(syscall.SIGUSR1)); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, out, "usr1")
	if _, err := os.Stat(filepath.Join(root, "runtime-root", ns, "p1")); err != nil {
		t.Errorf("runc state not under the executor's runtime root: %v", err)
	}
	if err := e1.Signal("p1", int(syscall.SIGTERM)); err != nil {
		t.Fatal(err)
	}
	h.waitExits(t, "p1", 1)

	// p2 outlives its executor: the daemon restarts, a new Remote and
	// executor restore it.
	out2 := new(testutil.SyncBuffer)
	if err := e1.Create("p2", *pluginSpec(t, ctx, "p2"), writeCloser{out2}, writeCloser{new(testutil.SyncBuffer)}); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, out2, "ready")
	r1.Cleanup()

	r2, err := v18.New(root, state, v18.WithRemoteAddr(env.Address))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Cleanup()
	e2, err := executor.New(root, r2, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := e2.Restore("p2", writeCloser{new(testutil.SyncBuffer)}, writeCloser{new(testutil.SyncBuffer)}); err != nil {
		t.Fatal(err)
	}
	if running, err := e2.IsRunning("p2"); err != nil || !running {
		t.Fatalf("restored IsRunning = %v, %v", running, err)
	}
	if err := e2.Signal("p2", int(syscall.SIGTERM)); err != nil {
		t.Fatal(err)
	}
	h.waitExits(t, "p2", 1)
	// A plugin that is gone restores to nothing, without error.
	if err := e2.Restore("p1", writeCloser{new(testutil.SyncBuffer)}, writeCloser{new(testutil.SyncBuffer)}); err != nil {
		t.Fatalf("Restore of a removed plugin: %v", err)
	}

	r2.Cleanup() // drains the event queues: every exit has been reported
	if got := h.snapshot(); count(got, "p1") != 1 || count(got, "p2") != 1 {
		t.Fatalf("exits reported %v, want p1 and p2 once each", got)
	}
	raw, err := env.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, id := range []string{"p1", "p2"} {
		if _, err := raw.ContainerService().Get(ctx, id); err == nil {
			t.Errorf("plugin container %s left after its exit", id)
		}
	}
}

// writeCloser gives a test buffer the WriteCloser an executor wants.
type writeCloser struct{ *testutil.SyncBuffer }

func (writeCloser) Close() error { return nil }

func waitOutput(t testing.TB, buf *testutil.SyncBuffer, want string) {
	t.Helper()
	if !waitFor(func() bool { return strings.Contains(buf.String(), want) }) {
		t.Fatalf("no %q in output %q", want, buf.String())
	}
}
