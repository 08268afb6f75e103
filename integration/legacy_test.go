package integration

import (
	"context"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/oci"
	runcoptions "github.com/containerd/containerd/runtime/v2/runc/options"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lcdkit/libcontainerd/legacy"
)

// One container through every call that applies to it, the way a v20–v23
// daemon drives it: create, start with stdin, inspect, pause and resume,
// update, close stdin (EOF), delete the task, delete the container.
func TestLegacyLifecycle(t *testing.T) {
	f := newLegacyFixture(t)
	c := f.client
	if v, err := c.Version(f.ctx); err != nil || v.Version == "" {
		t.Fatalf("Version = %+v, %v", v, err)
	}
	f.create("c", "cat")
	io := newStdio()
	pid, err := c.Start(f.ctx, "c", "", true, io.attach)
	if err != nil {
		t.Fatal(err)
	}
	if pid <= 0 {
		t.Fatalf("Start pid %d", pid)
	}
	wantStatus := func(want containerd.ProcessStatus) {
		t.Helper()
		if s, err := c.Status(f.ctx, "c"); err != nil || s != want {
			t.Fatalf("Status = %q, %v; want %q", s, err, want)
		}
	}
	wantStatus(containerd.Running)
	pids, err := c.ListPids(f.ctx, "c")
	if err != nil || !containsPid(pids, pid) {
		t.Fatalf("ListPids = %v, %v; want it to contain %d", pids, err, pid)
	}
	if sum, err := c.Summary(f.ctx, "c"); err != nil || len(sum) != len(pids) {
		t.Fatalf("Summary = %v, %v; want %d entries", sum, err, len(pids))
	}
	st, err := c.Stats(f.ctx, "c")
	if err != nil || st.Metrics == nil || st.Read.IsZero() {
		t.Fatalf("Stats = %+v, %v", st, err)
	}
	limit := int64(64 << 20)
	if err := c.UpdateResources(f.ctx, "c", &legacy.Resources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Fatal(err)
	}
	// The init has no terminal: the shim accepts the resize and does nothing.
	if err := c.ResizeTerminal(f.ctx, "c", legacy.InitProcessName, 80, 24); err != nil {
		t.Fatal(err)
	}
	if err := c.Pause(f.ctx, "c"); err != nil {
		t.Fatal(err)
	}
	wantStatus(containerd.Paused)
	if err := c.Resume(f.ctx, "c"); err != nil {
		t.Fatal(err)
	}
	wantStatus(containerd.Running)
	if _, err := io.stdin.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	io.waitLine(t, "ping")
	if err := c.CloseStdin(f.ctx, "c", legacy.InitProcessName); err != nil {
		t.Fatal(err)
	}
	exit := f.backend.waitEvent(t, legacy.EventExit, "c", "c")
	if exit.Info.ExitCode != 0 || exit.Info.Pid != uint32(pid) {
		t.Fatalf("exit %+v, want code 0 of pid %d", exit.Info, pid)
	}
	code, at, err := c.DeleteTask(f.ctx, "c")
	if err != nil || code != 0 || at.IsZero() {
		t.Fatalf("DeleteTask = %d, %v, %v", code, at, err)
	}
	if left := f.fifosOf("c", "c"); len(left) > 0 {
		t.Errorf("FIFOs left after DeleteTask: %v", left)
	}
	f.remove(c, "c")

	var got []legacy.EventType
	for _, e := range f.backend.forContainer("c") {
		got = append(got, e.Type)
		if e.Info.OOMKilled {
			t.Errorf("%s event carries OOMKilled", e.Type)
		}
	}
	want := []legacy.EventType{legacy.EventCreate, legacy.EventStart, legacy.EventPaused, legacy.EventResumed, legacy.EventExit}
	if strings.Join(eventNames(got), ",") != strings.Join(eventNames(want), ",") {
		t.Errorf("events %v, want %v", got, want)
	}
}

func eventNames(ets []legacy.EventType) []string {
	out := make([]string, len(ets))
	for i, et := range ets {
		out[i] = string(et)
	}
	return out
}

// Every ID-keyed call on a container that does not exist is NotFound for
// both classifiers; the other error classes come from the cases moby's
// daemon relies on.
func TestLegacyErrors(t *testing.T) {
	f := newLegacyFixture(t)
	c, ctx := f.client, f.ctx
	const id = "missing"
	notFound := map[string]func() error{
		"Restore": func() error { _, _, _, err := c.Restore(ctx, id, newStdio().attach); return err },
		"Start":   func() error { _, err := c.Start(ctx, id, "", false, newStdio().attach); return err },
		"SignalProcess": func() error {
			return c.SignalProcess(ctx, id, legacy.InitProcessName, syscall.SIGTERM)
		},
		"Exec": func() error {
			_, err := c.Exec(ctx, id, "e", execSpec("true"), false, newStdio().attach)
			return err
		},
		"ResizeTerminal": func() error { return c.ResizeTerminal(ctx, id, legacy.InitProcessName, 80, 24) },
		"CloseStdin":     func() error { return c.CloseStdin(ctx, id, legacy.InitProcessName) },
		"Pause":          func() error { return c.Pause(ctx, id) },
		"Resume":         func() error { return c.Resume(ctx, id) },
		"Stats":          func() error { _, err := c.Stats(ctx, id); return err },
		"ListPids":       func() error { _, err := c.ListPids(ctx, id); return err },
		"Summary":        func() error { _, err := c.Summary(ctx, id); return err },
		"DeleteTask": func() error {
			code, _, err := c.DeleteTask(ctx, id)
			if code != 255 {
				t.Errorf("DeleteTask of a missing container: code %d, want 255", code)
			}
			return err
		},
		"Delete": func() error { return c.Delete(ctx, id) },
		"Status": func() error {
			s, err := c.Status(ctx, id)
			if s != containerd.Unknown {
				t.Errorf("Status of a missing container: %q", s)
			}
			return err
		},
		"UpdateResources":  func() error { return c.UpdateResources(ctx, id, &legacy.Resources{}) },
		"CreateCheckpoint": func() error { return c.CreateCheckpoint(ctx, id, t.TempDir(), false) },
	}
	for name, call := range notFound {
		t.Run(name, func(t *testing.T) { assertClass(t, call(), "NotFound") })
	}

	// A container without a task.
	f.create("idle", "true")
	assertClass(t, c.Create(ctx, "idle", f.spec("idle", env.SpecOpts("true")...), "io.containerd.runc.v2", env.RuncOptions()), "Conflict")
	assertClass(t, c.Create(ctx, "bad/id", f.spec("x", env.SpecOpts("true")...), "io.containerd.runc.v2", env.RuncOptions()), "InvalidParameter")
	assertClass(t, c.Create(ctx, "nospec", nil, "io.containerd.runc.v2", env.RuncOptions()), "InvalidParameter")
	_, err := c.Exec(ctx, "idle", "e", execSpec("true"), false, newStdio().attach)
	assertClass(t, err, "InvalidParameter")
	if err == nil || err.Error() != "container is not running" {
		t.Errorf("Exec without a task: %v, want moby's \"container is not running\"", err)
	}
	_, err = c.Status(ctx, "idle")
	assertClass(t, err, "NotFound")
	assertClass(t, c.SignalProcess(ctx, "idle", legacy.InitProcessName, syscall.SIGTERM), "NotFound")

	// A running container.
	f.run("run", "sleep", "1000")
	if _, err := c.Exec(ctx, "run", "e", execSpec("sleep", "1000"), false, newStdio().attach); err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, "run", "e", execSpec("true"), false, newStdio().attach)
	assertClass(t, err, "Conflict")
	_, err = c.Exec(ctx, "run", "x", nil, false, newStdio().attach)
	assertClass(t, err, "InvalidParameter")
	assertClass(t, c.SignalProcess(ctx, "run", "nope", syscall.SIGTERM), "NotFound")
	assertClass(t, c.ResizeTerminal(ctx, "run", legacy.InitProcessName, -1, 24), "InvalidParameter")
	// The runtime refuses (its "cannot delete a running process" reaches
	// us as Unknown); the task must be untouched.
	if _, _, err := c.DeleteTask(ctx, "run"); err == nil || !f.processExists("run", "") {
		t.Fatalf("DeleteTask of a running task = %v; the task must stay", err)
	}
	assertClass(t, c.Delete(ctx, "run"), "Conflict")
	assertClass(t, c.UpdateResources(ctx, "run", nil), "InvalidParameter")
	_, err = c.Start(ctx, "run", "", false, newStdio().attach)
	assertClass(t, err, "Conflict")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = c.Version(cancelled)
	assertClass(t, err, "Cancelled")

	f.remove(c, "run")
	f.remove(c, "idle")
}

// Exec with stdin: closing it inside the callback (before the exec
// exists), through the stdin after the start, or with CloseStdin, the
// process reads EOF. Once the backend has handled its exit the exec is
// deleted and its FIFOs are gone, without the daemon doing anything.
func TestLegacyExecStdinEOFAndAutoClean(t *testing.T) {
	for _, how := range []string{"in-callback", "stdin-close", "CloseStdin"} {
		t.Run(how, func(t *testing.T) {
			f := newLegacyFixture(t)
			f.run("c", "sleep", "1000")
			io := newStdio()
			io.closeStdinInAttach = how == "in-callback"
			pid, err := f.client.Exec(f.ctx, "c", "e1", execSpec("cat"), true, io.attach)
			if err != nil {
				t.Fatal(err)
			}
			if how != "in-callback" {
				if _, err := io.stdin.Write([]byte("pong\n")); err != nil {
					t.Fatal(err)
				}
				io.waitLine(t, "pong")
				if how == "stdin-close" {
					err = io.stdin.Close()
				} else {
					err = f.client.CloseStdin(f.ctx, "c", "e1")
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			exit := f.backend.waitEvent(t, legacy.EventExit, "c", "e1")
			if exit.Info.ExitCode != 0 || exit.Info.Pid != uint32(pid) {
				t.Fatalf("exec exit %+v, want code 0 of pid %d", exit.Info, pid)
			}
			f.assertExecCleaned("c", "e1", pid)
			f.remove(f.client, "c")
		})
	}
}

// assertExecCleaned checks, once the exec's exit has been handled, that
// the legacy client deleted the exec and its FIFOs.
func (f *legacyFixture) assertExecCleaned(id, execID string, pid int) {
	f.t.Helper()
	f.barrier(f.client, f.backend, id)
	if f.processExists(id, execID) {
		f.t.Errorf("exec %s/%s not deleted after its exit was handled", id, execID)
	}
	if left := f.fifosOf(id, execID); len(left) > 0 {
		f.t.Errorf("exec FIFOs left: %v", left)
	}
	pids, err := f.client.ListPids(f.ctx, id)
	if err != nil {
		f.t.Fatal(err)
	}
	if containsPid(pids, pid) {
		f.t.Errorf("ListPids %v still lists exec pid %d", pids, pid)
	}
}

// An exec killed with SignalProcess: listed while it runs, cleaned up after
// its exit, then unknown.
func TestLegacyExecSignalAndAutoClean(t *testing.T) {
	f := newLegacyFixture(t)
	f.run("c", "sleep", "1000")
	pid, err := f.client.Exec(f.ctx, "c", "e1", execSpec("sleep", "1000"), false, newStdio().attach)
	if err != nil {
		t.Fatal(err)
	}
	pids, err := f.client.ListPids(f.ctx, "c")
	if err != nil || !containsPid(pids, pid) {
		t.Fatalf("ListPids = %v, %v; want it to list exec pid %d", pids, err, pid)
	}
	if err := f.client.ResizeTerminal(f.ctx, "c", "e1", 100, 40); err != nil {
		t.Fatal(err)
	}
	if err := f.client.SignalProcess(f.ctx, "c", "e1", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if exit := f.backend.waitEvent(t, legacy.EventExit, "c", "e1"); exit.Info.ExitCode != 137 {
		t.Fatalf("exec exit %+v, want 137", exit.Info)
	}
	f.assertExecCleaned("c", "e1", pid)
	assertClass(t, f.client.SignalProcess(f.ctx, "c", "e1", syscall.SIGKILL), "NotFound")
	// The ID is free again.
	if _, err := f.client.Exec(f.ctx, "c", "e1", execSpec("true"), false, newStdio().attach); err != nil {
		t.Fatalf("exec ID not reusable after clean-up: %v", err)
	}
	f.backend.wait(t, "second exit of e1", func(evs []legacyEvent) bool {
		n := 0
		for _, e := range evs {
			if e.Type == legacy.EventExit && e.Info.ProcessID == "e1" {
				n++
			}
		}
		return n == 2
	})
	f.remove(f.client, "c")
}

// An exec started by a previous client (a daemon restarted under live
// restore) is still reachable by ID: signalled, resized, and cleaned up by
// the new client when it exits.
func TestLegacyExecOfPreviousClient(t *testing.T) {
	f := newLegacyFixture(t)
	f.run("c", "sleep", "1000")
	pid, err := f.client.Exec(f.ctx, "c", "e1", execSpec("sleep", "1000"), false, newStdio().attach)
	if err != nil {
		t.Fatal(err)
	}
	closeClient(t, f.client) // the old daemon goes away
	second := newLegacyBackend()
	c := f.newClient(second)
	if err := c.ResizeTerminal(f.ctx, "c", "e1", 100, 40); err != nil {
		t.Fatal(err)
	}
	if err := c.SignalProcess(f.ctx, "c", "e1", syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if exit := second.waitEvent(t, legacy.EventExit, "c", "e1"); exit.Info.ExitCode != 137 || exit.Info.Pid != uint32(pid) {
		t.Fatalf("exit %+v, want 137 of pid %d", exit.Info, pid)
	}
	f.barrier(c, second, "c")
	if f.processExists("c", "e1") {
		t.Error("exec of the previous client not deleted after its exit")
	}
	if left := f.fifosOf("c", "e1"); len(left) > 0 {
		t.Errorf("exec FIFOs left: %v", left)
	}
	f.remove(c, "c")
}

// OOMKilled is sticky: set from the first OOM event on, on every later
// event of the container (its exit, the next task's create and start),
// until the container is deleted.
func TestLegacyOOMSticky(t *testing.T) {
	f := newLegacyFixture(t)
	oomSpec := f.spec("oom", append(env.SpecOpts("sh", "-c", "x=a; while true; do x=$x$x; done"), oci.WithMemoryLimit(8<<20))...)
	if err := f.client.Create(f.ctx, "oom", oomSpec, "io.containerd.runc.v2", env.RuncOptions()); err != nil {
		t.Fatal(err)
	}
	runOnce := func() []legacyEvent {
		t.Helper()
		before := len(f.backend.forContainer("oom"))
		if _, err := f.client.Start(f.ctx, "oom", "", false, newStdio().attach); err != nil {
			t.Fatal(err)
		}
		f.waitExit("oom", "")
		f.backend.wait(t, "exit of oom", func([]legacyEvent) bool {
			for _, e := range f.backend.forContainer("oom")[before:] {
				if e.Type == legacy.EventExit {
					return true
				}
			}
			return false
		})
		if _, _, err := f.client.DeleteTask(f.ctx, "oom"); err != nil {
			t.Fatal(err)
		}
		return f.backend.forContainer("oom")[before:]
	}
	first := runOnce()
	seenOOM := false
	for _, e := range first {
		if e.Type == legacy.EventOOM {
			seenOOM = true
		}
		if e.Info.OOMKilled != seenOOM {
			t.Errorf("first run: %s event OOMKilled=%v, want %v (events %+v)", e.Type, e.Info.OOMKilled, seenOOM, first)
		}
	}
	if !seenOOM {
		t.Fatalf("no OOM event in %+v", first)
	}
	for _, e := range runOnce() {
		if !e.Info.OOMKilled {
			t.Errorf("second run: %s event without OOMKilled: the flag must stick until the container is deleted", e.Type)
		}
	}
	if err := f.client.Delete(f.ctx, "oom"); err != nil {
		t.Fatal(err)
	}

	// A new container under the same ID starts clean.
	f.create("oom", "true")
	before := len(f.backend.forContainer("oom"))
	if _, err := f.client.Start(f.ctx, "oom", "", false, newStdio().attach); err != nil {
		t.Fatal(err)
	}
	f.backend.wait(t, "exit of the new oom", func([]legacyEvent) bool {
		evs := f.backend.forContainer("oom")[before:]
		return len(evs) > 0 && evs[len(evs)-1].Type == legacy.EventExit
	})
	for _, e := range f.backend.forContainer("oom")[before:] {
		if e.Info.OOMKilled {
			t.Errorf("deleted and recreated container: %s event still carries OOMKilled", e.Type)
		}
	}
	f.remove(f.client, "oom")
}

// A restarted daemon's new client on the same state dir restores its
// containers: a running one alive with its pid (and reachable: signal,
// exit, delete), an exited one not alive, its exit status from the
// restored process.
func TestLegacyRestore(t *testing.T) {
	f := newLegacyFixture(t)
	runPid := f.run("run", "sleep", "1000")
	f.run("done", "sh", "-c", "exit 3")
	f.waitExit("done", "")

	second := newLegacyBackend()
	c := f.newClient(second)
	io := newStdio()
	alive, pid, p, err := c.Restore(f.ctx, "run", io.attach)
	if err != nil || !alive || pid != runPid || p == nil {
		t.Fatalf("Restore(run) = %v, %d, %v, %v; want alive with pid %d", alive, pid, p, err, runPid)
	}
	alive, _, p, err = c.Restore(f.ctx, "done", newStdio().attach)
	if err != nil || alive || p == nil {
		t.Fatalf("Restore(done) = %v, %v, %v; want not alive", alive, p, err)
	}
	code, at, err := p.Delete(f.ctx)
	if err != nil || code != 3 || at.IsZero() {
		t.Fatalf("restored process Delete = %d, %v, %v; want 3", code, at, err)
	}
	if left := f.fifosOf("done", "done"); len(left) > 0 {
		t.Errorf("FIFOs left after deleting the restored process: %v", left)
	}
	if err := c.Delete(f.ctx, "done"); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = c.Restore(f.ctx, "done", newStdio().attach)
	assertClass(t, err, "NotFound")

	if err := c.SignalProcess(f.ctx, "run", legacy.InitProcessName, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if exit := second.waitEvent(t, legacy.EventExit, "run", "run"); exit.Info.ExitCode != 137 {
		t.Fatalf("exit %+v, want 137", exit.Info)
	}
	if code, _, err := c.DeleteTask(f.ctx, "run"); err != nil || code != 137 {
		t.Fatalf("DeleteTask = %d, %v", code, err)
	}
	if left := f.fifosOf("run", "run"); len(left) > 0 {
		t.Errorf("FIFOs left: %v", left)
	}
	f.remove(c, "run")
}

// A start that fails leaves no task (it is force-deleted: a created task
// cannot simply be deleted) and no FIFOs; the container stays, and starts.
func TestLegacyStartFailureForceDeletes(t *testing.T) {
	f := newLegacyFixture(t)
	f.create("c", "sleep", "1000")
	f.hooks.failNextStart("c", status.Error(codes.Internal, "injected start failure"))
	_, err := f.client.Start(f.ctx, "c", "", true, newStdio().attach)
	assertClass(t, err, "System")
	if err == nil || !strings.Contains(err.Error(), "injected start failure") {
		t.Fatalf("Start error %v lost the runtime's message", err)
	}
	if f.processExists("c", "") {
		t.Error("task left after a failed start")
	}
	if left := f.fifosOf("c", "c"); len(left) > 0 {
		t.Errorf("FIFOs left after a failed start: %v", left)
	}
	if _, err := f.client.Start(f.ctx, "c", "", false, newStdio().attach); err != nil {
		t.Fatalf("start after a failed start: %v", err)
	}
	f.remove(f.client, "c")
}

// CreateCheckpoint asks the runtime to stop the task after the checkpoint
// (runc's CheckpointOptions.Exit), as moby's daemon requires for
// `docker checkpoint create` without --leave-running. criu may be missing:
// the request is what is checked, not the checkpoint.
//
// This needs the root package's CreateCheckpoint, which is being built on
// another branch: until that is merged the request is never sent, and this
// test fails.
func TestLegacyCheckpointCarriesExit(t *testing.T) {
	f := newLegacyFixture(t)
	f.run("cp", "sleep", "1000")
	err := f.client.CreateCheckpoint(f.ctx, "cp", t.TempDir(), true)
	t.Logf("CreateCheckpoint: %v", err)
	reqs := f.hooks.checkpointRequests()
	if len(reqs) != 1 || reqs[0].ContainerID != "cp" {
		t.Fatalf("checkpoint requests %+v, want one for cp", reqs)
	}
	if reqs[0].Options == nil {
		t.Fatal("checkpoint request without runtime options")
	}
	v, err := typeurl.UnmarshalAny(reqs[0].Options)
	if err != nil {
		t.Fatal(err)
	}
	opts, ok := v.(*runcoptions.CheckpointOptions)
	if !ok || !opts.Exit {
		t.Fatalf("checkpoint options %T %+v, want runc CheckpointOptions with Exit", v, v)
	}
	f.remove(f.client, "cp")
}
