package libcontainerd

// The exit path against a fake containerd (internal/fakecd): each test is one
// interleaving that used to lose, misnumber or reorder an exit (issue 18).

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd"
	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/protobuf"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/lcdkit/libcontainerd/internal/dial"
	"github.com/lcdkit/libcontainerd/internal/fakecd"
	"github.com/lcdkit/libcontainerd/internal/faults"
	"github.com/lcdkit/libcontainerd/internal/ledger"
	"github.com/lcdkit/libcontainerd/types"
)

const ns = fakecd.DefaultNamespace

// seen is one backend call.
type seen struct {
	et types.EventType
	ei types.EventInfo
	at time.Time
}

// eventLog records every backend call and lets a test wait for them.
type eventLog struct {
	mu     sync.Mutex
	events []seen
	added  chan struct{}
	// onEvent, if set, runs inside ProcessEvent (as a daemon's handler).
	onEvent func(et types.EventType, ei types.EventInfo)
}

func newEventLog() *eventLog { return &eventLog{added: make(chan struct{}, 1)} }

func (l *eventLog) ProcessEvent(_ string, et types.EventType, ei types.EventInfo) error {
	l.mu.Lock()
	l.events = append(l.events, seen{et, ei, time.Now()})
	on := l.onEvent
	l.mu.Unlock()
	signal(l.added)
	if on != nil {
		on(et, ei)
	}
	return nil
}

// exits returns the exits of (container, process) so far.
func (l *eventLog) exits(containerID, processID string) []seen {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []seen
	for _, e := range l.events {
		if e.et == types.EventExit && e.ei.ContainerID == containerID && e.ei.ProcessID == processID {
			out = append(out, e)
		}
	}
	return out
}

func (l *eventLog) all() []seen {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]seen(nil), l.events...)
}

// waitFor waits (bounded) until cond holds over the log.
func (l *eventLog) waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-l.added:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s; events: %+v", d, what, l.all())
		}
	}
}

// waitExit waits for exactly one exit of (container, process) and returns it.
func (l *eventLog) waitExit(t *testing.T, containerID, processID string, d time.Duration) types.EventInfo {
	t.Helper()
	l.waitFor(t, "exit of "+containerID+"/"+processID, d, func() bool { return len(l.exits(containerID, processID)) > 0 })
	return l.exits(containerID, processID)[0].ei
}

// onlyExit waits for the exit of (container, process), lets c settle, and
// checks that it was the only one.
func (l *eventLog) onlyExit(t *testing.T, c *Client, containerID, processID string, d time.Duration) types.EventInfo {
	t.Helper()
	ei := l.waitExit(t, containerID, processID, d)
	settle(t, c)
	if got := l.exits(containerID, processID); len(got) != 1 {
		t.Fatalf("%s/%s: %d exits %+v, want exactly one", containerID, processID, len(got), got)
	}
	return ei
}

// settle waits until c has nothing in flight (see Settle in
// export_test.go), so that a test can check nothing more was delivered.
func settle(t *testing.T, c *Client) { t.Helper(); Settle(t, c) }

// fakeClient is a libcontainerd client on srv, with the fault injector on
// its connection.
func fakeClient(t *testing.T, srv *fakecd.Server) (*Client, *eventLog) {
	t.Helper()
	raw := srv.Client(t, containerd.WithDialOpts(dial.Options(faults.DialOptions()...)))
	events := newEventLog()
	ctx := log.WithLogger(context.Background(), log.L.WithField("test", t.Name()))
	c, err := NewClient(ctx, raw, t.TempDir(), ns, events)
	if err != nil {
		t.Fatal(err)
	}
	client := c.(*Client)
	t.Cleanup(func() { _ = client.Close() })
	waitLive(t, client)
	return client, events
}

// waitLive waits until the client's stream is live.
func waitLive(t *testing.T, c *Client) { t.Helper(); WaitLive(t, c) }

// adopt makes c track the running task of container id, as a restarted
// daemon does (LoadContainer → Task → Status).
func adopt(t *testing.T, c *Client, srv *fakecd.Server, id string) *task {
	t.Helper()
	tk, err := handle(t, c, id).Task(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	return tk.(*task)
}

// handle is a container handle as LoadContainer gives it, without the
// record the fake does not keep.
func handle(t *testing.T, c *Client, id string) *container {
	return &container{client: c, id: id, bundle: t.TempDir(), spec: &specs.Spec{Process: &specs.Process{Args: []string{"true"}}}}
}

// Item 1: reconcile retries. Its first questions fail (containerd
// restarting again); it asks again until it has the exit.
func TestReconcileRetriesUntilAnswered(t *testing.T) {
	srv := fakecd.Start(t)
	srv.AddTask(ns, "c", 100)
	c, events := fakeClient(t, srv)
	adopt(t, c, srv, "c")

	var fails sync.Map
	failFirst := func(method string, n int) {
		srv.SetHook(method, func(context.Context, proto.Message) (proto.Message, bool, error) {
			v, _ := fails.LoadOrStore(method, new(int))
			p := v.(*int)
			if *p < n {
				*p++
				return nil, true, status.Error(codes.Unavailable, "restarting")
			}
			return nil, false, nil
		})
	}
	failFirst("List", 3)
	failFirst("Get", 3)
	srv.Stop()
	srv.Exit(ns, "c", "", 3, false) // while containerd is down: no event
	srv.Restart()
	if ei := events.onlyExit(t, c, "c", "c", 20*time.Second); ei.ExitCode != 3 || ei.Pid != 100 {
		t.Fatalf("exit %+v, want code 3 of pid 100", ei)
	}
}

// Item 2: a task's end settles its execs. A shim that dies while containerd
// is up gets TaskExit/TaskDelete for its init only; its execs get theirs
// (255: their codes are gone with the shim) promptly, not at a reconnect.
func TestTaskEndSettlesExecs(t *testing.T) {
	srv := fakecd.Start(t)
	srv.AddTask(ns, "c", 200)
	srv.AddExec(ns, "c", "e1", 201)
	srv.AddExec(ns, "c", "e2", 202)
	c, events := fakeClient(t, srv)
	tk := adopt(t, c, srv, "c")
	for _, id := range []string{"e1", "e2"} {
		if _, err := tk.LoadProcess(context.Background(), id); err != nil {
			t.Fatal(err)
		}
	}
	srv.Vanish(ns, "c", "") // the whole task, as a dead shim's clean-up does
	at := time.Now()
	srv.Publish(ns, "/tasks/exit", &apievents.TaskExit{ContainerID: "c", ID: "c", Pid: 200, ExitStatus: 137, ExitedAt: protobuf.ToTimestamp(at)})
	srv.Publish(ns, "/tasks/delete", &apievents.TaskDelete{ContainerID: "c", ID: "c", Pid: 200, ExitStatus: 137, ExitedAt: protobuf.ToTimestamp(at)})
	for _, id := range []string{"e1", "e2"} {
		if ei := events.waitExit(t, "c", id, time.Second); ei.ExitCode != unknownExitCode {
			t.Errorf("exec %s: exit %+v, want 255", id, ei)
		}
	}
	settle(t, c)
	for _, id := range []string{"c", "e1", "e2"} {
		if n := len(events.exits("c", id)); n != 1 {
			t.Errorf("%s: %d exits, want 1", id, n)
		}
	}
	if n := c.exits.size(); n != 0 {
		t.Errorf("ledger holds %d processes after the task ended", n)
	}
}

// Item 3: a guessed 255 never beats a real code. Reconcile finds the task
// gone while its real TaskExit (137) is still on its way.
func TestRealExitBeatsGuess(t *testing.T) {
	srv := fakecd.Start(t)
	srv.AddTask(ns, "c", 300)
	c, events := fakeClient(t, srv)
	adopt(t, c, srv, "c")

	var once sync.Once
	srv.SetHook("Get", func(context.Context, proto.Message) (proto.Message, bool, error) {
		once.Do(func() {
			// rm -f while reconcile asks: the exit is published, but
			// the stream has not carried it yet; the task is gone.
			srv.HoldEvents()
			srv.Exit(ns, "c", "", 137, true)
			srv.Vanish(ns, "c", "")
		})
		return nil, false, nil
	})
	srv.SetHook("Publish", func(context.Context, proto.Message) (proto.Message, bool, error) {
		srv.ReleaseEvents() // the barrier queues behind the held exit
		return nil, false, nil
	})
	srv.BreakStreams() // reconnect → reconcile
	if ei := events.onlyExit(t, c, "c", "c", 10*time.Second); ei.ExitCode != 137 {
		t.Fatalf("exit code %d delivered, want the real 137", ei.ExitCode)
	}
}

// Item 4: an exit taken from an answer comes after every event the stream
// already had for that container: rm -f right after Start gives the backend
// start, then exit.
func TestAnswerExitAfterStreamEvents(t *testing.T) {
	srv := fakecd.Start(t)
	srv.AddTask(ns, "c", 400)
	c, events := fakeClient(t, srv)
	tk := adopt(t, c, srv, "c")
	srv.HoldEvents()
	// TaskStart and TaskExit sit in containerd's pipeline while
	// ForceDelete's answers come back.
	srv.Publish(ns, "/tasks/start", &apievents.TaskStart{ContainerID: "c", Pid: 400})
	srv.SetHook("Publish", func(context.Context, proto.Message) (proto.Message, bool, error) {
		srv.ReleaseEvents()
		return nil, false, nil
	})
	if err := tk.ForceDelete(context.Background()); err != nil {
		t.Fatal(err)
	}
	events.waitExit(t, "c", "c", 10*time.Second)
	settle(t, c)
	var order []types.EventType
	for _, e := range events.all() {
		if e.ei.ContainerID == "c" {
			order = append(order, e.et)
		}
	}
	if len(order) != 2 || order[0] != types.EventStart || order[1] != types.EventExit {
		t.Fatalf("backend got %v, want [start exit]", order)
	}
}

// Item 6: dedupe needs no timer and tells processes apart by more than the
// pid: a re-send of a delivered exit is dropped however late, and a new
// process under the same key that reuses the pid gets its own exit.
func TestDedupeWithoutTimerAndPidReuse(t *testing.T) {
	srv := fakecd.Start(t)
	srv.AddTask(ns, "c", 600)
	c, events := fakeClient(t, srv)
	tk := adopt(t, c, srv, "c")
	srv.AddExec(ns, "c", "e", 601)
	p, err := tk.LoadProcess(context.Background(), "e")
	if err != nil {
		t.Fatal(err)
	}
	first := time.Unix(1700000000, 0)
	srv.ExitAt(ns, "c", "e", 1, first, true)
	events.waitFor(t, "first exit", 5*time.Second, func() bool { return len(events.exits("c", "e")) == 1 })
	if _, err := p.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	exit := func(at time.Time) {
		srv.Publish(ns, "/tasks/exit", &apievents.TaskExit{ContainerID: "c", ID: "e", Pid: 601, ExitStatus: 1, ExitedAt: protobuf.ToTimestamp(at)})
	}
	exit(first) // a re-send, long after
	settle(t, c)
	// The exec ID is used again and the pid with it (once the old one's
	// re-sends are over: a shim re-sends for seconds, and a pid comes
	// round again much later; the same ID and pid with a re-send still
	// on its way is beyond what containerd's API tells apart).
	srv.AddExec(ns, "c", "e", 601)
	if _, err := tk.LoadProcess(context.Background(), "e"); err != nil {
		t.Fatal(err)
	}
	srv.ExitAt(ns, "c", "e", 1, first.Add(time.Minute), true)
	events.waitFor(t, "the new process's exit", 5*time.Second, func() bool { return len(events.exits("c", "e")) >= 2 })
	settle(t, c)
	got := events.exits("c", "e")
	if len(got) != 2 || !got[1].ei.ExitedAt.Equal(first.Add(time.Minute)) {
		t.Fatalf("exits %+v, want the first and the new process's", got)
	}
}

// Item 7: an exit heard while containerd is down reaches the backend only
// once containerd serves again, so the daemon's Delete on it can act.
func TestOutageExitWaitsForContainerd(t *testing.T) {
	srv := fakecd.Start(t)
	srv.AddTask(ns, "c", 700)
	c, events := fakeClient(t, srv)
	tk := adopt(t, c, srv, "c")
	var deleteErr error
	deleted := make(chan struct{})
	events.onEvent = func(et types.EventType, ei types.EventInfo) {
		if et == types.EventExit {
			_, deleteErr = tk.Delete(context.Background())
			close(deleted)
		}
	}
	srv.Stop()
	srv.Exit(ns, "c", "", 9, false)
	// What the shim watch reports while containerd is down.
	c.exits.do(func(l *ledger.Ledger) {
		l.ShimReport(ledger.InitKey("c"), 700, ledger.Report{Status: ledger.Stopped, Pid: 700, Code: 9, At: time.Now()})
	})
	restarted := time.Now()
	srv.Restart()
	ei := events.waitExit(t, "c", "c", 10*time.Second)
	if at := events.exits("c", "c")[0].at; at.Before(restarted) {
		t.Fatal("exit delivered while containerd was down")
	}
	<-deleted
	if ei.ExitCode != 9 || deleteErr != nil {
		t.Fatalf("exit %+v, delete in the handler: %v", ei, deleteErr)
	}
}

// Item 8: after Close the backend is never called (a Delete answer that
// comes later included), and Close from inside a handler returns promptly.
func TestCloseSemantics(t *testing.T) {
	srv := fakecd.Start(t)
	srv.AddTask(ns, "c", 800)
	srv.AddTask(ns, "d", 801)
	c, events := fakeClient(t, srv)
	tk := adopt(t, c, srv, "c")
	adopt(t, c, srv, "d")

	closed := make(chan error, 1)
	events.onEvent = func(et types.EventType, ei types.EventInfo) {
		if ei.ContainerID == "d" {
			closed <- c.Close()
		}
	}
	srv.Exit(ns, "d", "", 0, true)
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close from a handler: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close from a handler did not return")
	}
	before := len(events.all())
	srv.Exit(ns, "c", "", 0, false)
	if _, err := tk.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.queue.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := len(events.all()); after != before {
		t.Fatalf("backend called %d times after Close", after-before)
	}
}

// Item 10, first case: an exec whose start lost its answer but which ran
// gets its exit (the clean-up's delete answer carries it), once.
func TestExecStartCutOffStillReportsExit(t *testing.T) {
	srv := fakecd.Start(t)
	srv.AddTask(ns, "c", 1000)
	c, events := fakeClient(t, srv)
	tk := adopt(t, c, srv, "c")
	srv.HoldEvents()                                               // containerd killed: no event of it reaches us
	ctx, op := faults.Begin(context.Background(), 2, faults.After) // Exec, then Start: done, answer lost
	defer op.Done()
	_, err := tk.Exec(ctx, "e", &specs.Process{Args: []string{"true"}}, false, func(*cio.DirectIO) (cio.IO, error) { return nil, nil })
	if err == nil || op.Fired() != "/containerd.services.tasks.v1.Tasks/Start" {
		t.Fatalf("Exec: %v (fault at %q)", err, op.Fired())
	}
	srv.DiscardEvents() // lost with the killed containerd
	if ei := events.onlyExit(t, c, "c", "e", 10*time.Second); ei.ExitCode != 137 || ei.Pid == 0 {
		t.Fatalf("exit %+v, want 137 (killed by the clean-up)", ei)
	}
}

// Item 10, second case: a task whose Start lost its answer, and which then
// ran and stopped, gets its exit without the caller deleting it.
func TestStartCutOffStillReportsExit(t *testing.T) {
	srv := fakecd.Start(t)
	c, events := fakeClient(t, srv)
	tk, err := handle(t, c, "c").NewTask(context.Background(), "", false, func(*cio.DirectIO) (cio.IO, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	pid := tk.Pid()
	srv.HoldEvents() // no TaskStart or TaskExit reaches us
	var once sync.Once
	srv.SetHook("Get", func(context.Context, proto.Message) (proto.Message, bool, error) {
		once.Do(func() { srv.Exit(ns, "c", "", 5, false) }) // it ran, and ended
		return nil, false, nil
	})
	fctx, op := faults.Begin(context.Background(), 1, faults.After)
	defer op.Done()
	if err := tk.Start(fctx); err == nil {
		t.Fatal("Start succeeded despite the fault")
	}
	srv.DiscardEvents()
	ei := events.waitExit(t, "c", "c", 10*time.Second)
	if ei.ExitCode != 5 || ei.Pid != pid {
		t.Fatalf("exit %+v, want code 5 of pid %d", ei, pid)
	}
	if _, err := tk.Delete(context.Background()); err != nil { // releases its FIFOs
		t.Fatal(err)
	}
}

// Item 10, third case: a create refused with AlreadyExists for a task
// containerd cannot find (1.6's orphan shim) is cleared and retried.
func TestNewTaskClearsOrphanTask(t *testing.T) {
	srv := fakecd.Start(t)
	c, _ := fakeClient(t, srv)
	spec := &specs.Spec{Process: &specs.Process{Args: []string{"true"}}, Root: &specs.Root{Path: t.TempDir()}}
	ctr, err := c.NewContainer(context.Background(), "c", spec, "io.containerd.runc.v2", nil)
	if err != nil {
		t.Fatal(err)
	}
	// As a create of this client's cut off earlier leaves it (only then
	// may a refusal lead to clearing an orphan).
	c.orphans.Store("c", struct{}{})
	refused := false
	srv.SetHook("Create", func(context.Context, proto.Message) (proto.Message, bool, error) {
		if !refused {
			refused = true
			return nil, true, status.Error(codes.AlreadyExists, "task c: already exists")
		}
		return nil, false, nil
	})
	tk, err := ctr.NewTask(context.Background(), "", false, func(*cio.DirectIO) (cio.IO, error) { return nil, nil })
	if err != nil {
		t.Fatalf("NewTask after an orphan: %v", err)
	}
	if srv.Calls("Delete") != 1 || srv.Calls("Create") != 2 {
		t.Fatalf("Delete %d, Create %d calls", srv.Calls("Delete"), srv.Calls("Create"))
	}
	if err := tk.ForceDelete(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Item 11: an empty TaskExit.ID is the init's, so one exit has one key.
func TestEmptyExitIDIsInit(t *testing.T) {
	srv := fakecd.Start(t)
	srv.AddTask(ns, "c", 1100)
	c, events := fakeClient(t, srv)
	adopt(t, c, srv, "c")
	srv.Publish(ns, "/tasks/exit", &apievents.TaskExit{ContainerID: "c", Pid: 1100, ExitStatus: 2})
	srv.Publish(ns, "/tasks/exit", &apievents.TaskExit{ContainerID: "c", ID: "c", Pid: 1100, ExitStatus: 2})
	events.onlyExit(t, c, "c", "c", 5*time.Second)
	if m := len(events.exits("c", "")); m != 0 {
		t.Fatalf("%d exits under the key \"\"", m)
	}
}

// ForceDelete of a task re-adopted stopped (after a containerd crash) costs
// one Delete: no Kill, no Wait.
func TestForceDeleteStoppedTaskOneRPC(t *testing.T) {
	srv := fakecd.Start(t)
	srv.AddTask(ns, "c", 1200)
	srv.Exit(ns, "c", "", 137, false)
	c, _ := fakeClient(t, srv)
	tk, err := handle(t, c, "c").Task(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.ForceDelete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if k, w, d := srv.Calls("Kill"), srv.Calls("Wait"), srv.Calls("Delete"); k+w != 0 || d != 1 {
		t.Fatalf("Kill %d, Wait %d, Delete %d", k, w, d)
	}
}

// Reconcile at scale: 100k tasks on the fake, far more than one List
// reply can carry; every tracked process that exited during the outage
// gets its exit.
func TestReconcileScale(t *testing.T) {
	n := 100_000
	if testing.Short() || raceEnabled {
		n = 30_000
	}
	srv := fakecd.Start(t, fakecd.WithTaskPadding(640))
	c, events := fakeClient(t, srv)
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("c%d", i)
		srv.AddTask(ns, id, uint32(10_000+i))
		pid := uint32(10_000 + i)
		c.exits.do(func(l *ledger.Ledger) { l.Adopt(ledger.InitKey(id), pid, ledger.Ref{}) })
	}
	srv.Stop()
	for i := 0; i < n; i += 10 {
		srv.Exit(ns, fmt.Sprintf("c%d", i), "", 1, false)
	}
	srv.Restart()
	want := n / 10
	events.waitFor(t, fmt.Sprintf("%d exits", want), 5*time.Minute, func() bool {
		events.mu.Lock()
		defer events.mu.Unlock()
		return len(events.events) >= want
	})
	settle(t, c)
	if got := len(events.all()); got != want {
		t.Fatalf("%d exits, want %d", got, want)
	}
}

// A delete cut off by a containerd kill, retried (NotFound): the restarted
// containerd cleans up after the shim and publishes the init's exit again,
// with 137 and a new time. It is not the exit delivered, and containerd has
// no such process: a copy.
func TestCleanupExitAfterCutOffDeleteIsCopy(t *testing.T) {
	srv := fakecd.Start(t)
	srv.AddTask(ns, "c", 1300)
	c, events := fakeClient(t, srv)
	tk := adopt(t, c, srv, "c")
	at := time.Now()
	srv.Publish(ns, "/tasks/exit", &apievents.TaskExit{ContainerID: "c", ID: "c", Pid: 1300, ExitStatus: 21, ExitedAt: protobuf.ToTimestamp(at)})
	events.waitExit(t, "c", "c", 5*time.Second)
	srv.Vanish(ns, "c", "") // the first delete took effect, its answer lost
	if _, err := tk.Delete(context.Background()); err == nil {
		t.Fatal("retried delete found the task")
	}
	later := protobuf.ToTimestamp(at.Add(2 * time.Second))
	srv.Publish(ns, "/tasks/exit", &apievents.TaskExit{ContainerID: "c", ID: "c", Pid: 1300, ExitStatus: 137, ExitedAt: later})
	srv.Publish(ns, "/tasks/delete", &apievents.TaskDelete{ContainerID: "c", ID: "c", Pid: 1300, ExitStatus: 137, ExitedAt: later})
	settle(t, c)
	if got := events.exits("c", "c"); len(got) != 1 || got[0].ei.ExitCode != 21 {
		t.Fatalf("exits %+v, want only the real 21", got)
	}
}

// A delete cut off (here before it reached containerd) is finished by the
// client once containerd serves and a grace has passed (a daemon whose
// monitor deletes once and only logs the failure would leave the stopped
// task and its FIFOs), and not before: a caller that retries at once gets
// the exit status.
func TestCutOffDeleteFinishedAfterGrace(t *testing.T) {
	defer func(d time.Duration) { finishGrace = d }(finishGrace)
	finishGrace = 300 * time.Millisecond
	srv := fakecd.Start(t)
	srv.AddTask(ns, "c", 1400)
	c, _ := fakeClient(t, srv)
	tk := adopt(t, c, srv, "c")
	srv.Exit(ns, "c", "", 0, true)
	ctx, op := faults.Begin(context.Background(), 1, faults.Before)
	defer op.Done()
	began := time.Now()
	if _, err := tk.Delete(ctx); err == nil {
		t.Fatal("Delete succeeded despite the fault")
	}
	deadline := time.Now().Add(10 * time.Second)
	for srv.Calls("Delete") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the cut-off delete was never finished")
		}
		time.Sleep(10 * time.Millisecond) // counting calls: nothing to await
	}
	if d := time.Since(began); d < finishGrace {
		t.Fatalf("finished after %s, before the grace", d)
	}
	if _, err := c.getProcess(c.withNamespace(context.Background()), "c", ""); err == nil {
		t.Fatal("task still there")
	}
}
