package libcontainerd_test

// Exits by identity (issue 22): one test per defect A–I of the exit ledger at
// b0e4646, each an interleaving against the fake containerd driven only
// through the public API (NewClient, the handles it returns, a Backend
// recording ProcessEvent) and the adapters of export_test.go (Settle,
// WaitLive, LedgerSize). Each says how it failed on b0e4646; each is to pass
// on any ledger that keeps SPEC §5's promises.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	apievents "github.com/containerd/containerd/api/events"
	shimapi "github.com/containerd/containerd/api/runtime/task/v3"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/protobuf"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/internal/dial"
	"github.com/lcdkit/libcontainerd/internal/errclass"
	"github.com/lcdkit/libcontainerd/internal/fakecd"
	"github.com/lcdkit/libcontainerd/internal/faults"
	"github.com/lcdkit/libcontainerd/types"
)

const testNS = fakecd.DefaultNamespace

// recorder is a daemon's Backend that records every call.
type recorder struct {
	mu     sync.Mutex
	events []recorded
	// changed is closed and replaced on every call, so any number of
	// goroutines can wait for the next one.
	changed chan struct{}
}

type recorded struct {
	et types.EventType
	ei types.EventInfo
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) ProcessEvent(_ string, et types.EventType, ei types.EventInfo) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, recorded{et, ei})
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

// exits returns the exits of a container's processes (processID "" for
// all of them) so far, in delivery order.
func (r *recorder) exits(containerID, processID string) []types.EventInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []types.EventInfo
	for _, e := range r.events {
		if e.et == types.EventExit && e.ei.ContainerID == containerID && (processID == "" || e.ei.ProcessID == processID) {
			out = append(out, e.ei)
		}
	}
	return out
}

// count returns how many calls of type et were made.
func (r *recorder) count(et types.EventType) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.et == et {
			n++
		}
	}
	return n
}

func (r *recorder) got(et types.EventType, containerID string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.et == et && e.ei.ContainerID == containerID {
			return true
		}
	}
	return false
}

// await waits up to d for cond over the recorded calls.
func (r *recorder) await(d time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		if cond() {
			return true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return cond()
		}
	}
}

// waitExits waits (bounded) until the container's process has n exits.
func (r *recorder) waitExits(t *testing.T, containerID, processID string, n int) []types.EventInfo {
	t.Helper()
	if !r.await(10*time.Second, func() bool { return len(r.exits(containerID, processID)) >= n }) {
		t.Fatalf("%s/%s: %d exits after 10s, want %d: %+v", containerID, processID, len(r.exits(containerID, processID)), n, r.exits(containerID, ""))
	}
	return r.exits(containerID, processID)
}

// newClient is a libcontainerd client on srv, with the fault injector on its
// connection, live when it returns.
func newClient(t *testing.T, srv *fakecd.Server) (types.Client, *recorder) {
	t.Helper()
	raw := srv.Client(t, containerd.WithDialOpts(dial.Options(faults.DialOptions()...)))
	rec := newRecorder()
	ctx := log.WithLogger(context.Background(), log.L.WithField("test", t.Name()))
	c, err := libcontainerd.NewClient(ctx, raw, t.TempDir(), testNS, rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.(interface{ Close() error }).Close() })
	libcontainerd.WaitLive(t, c)
	return c, rec
}

// resubscribed waits until the client has subscribed again after its stream
// broke (the fake has registered the new subscription) and then settles it.
func resubscribed(t *testing.T, srv *fakecd.Server, c types.Client) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Subscribers() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the client did not subscribe again")
		}
		time.Sleep(2 * time.Millisecond) // the fake's count: nothing to await
	}
	libcontainerd.Settle(t, c)
}

// discardIO is a StdioCallback that keeps no FIFO open: the fake runs no
// process to write to them.
func discardIO(dio *cio.DirectIO) (cio.IO, error) {
	config := dio.Config()
	dio.Cancel()
	_ = dio.Close()
	return closedIO(config), nil
}

type closedIO cio.Config

func (c closedIO) Config() cio.Config { return cio.Config(c) }
func (closedIO) Cancel()              {}
func (closedIO) Wait()                {}
func (closedIO) Close() error         { return nil }

var execSpec = &specs.Process{Args: []string{"true"}}

func newContainer(t *testing.T, c types.Client, id string) types.Container {
	t.Helper()
	spec := &specs.Spec{Process: &specs.Process{Args: []string{"true"}}, Root: &specs.Root{Path: t.TempDir()}}
	ctr, err := c.NewContainer(context.Background(), id, spec, "io.containerd.runc.v2", nil)
	if err != nil {
		t.Fatal(err)
	}
	return ctr
}

// startTask creates and starts the container's task through the client.
func startTask(t *testing.T, ctr types.Container) types.Task {
	t.Helper()
	tk, err := ctr.NewTask(context.Background(), "", false, discardIO)
	if err != nil {
		t.Fatal(err)
	}
	if err := tk.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return tk
}

func startExec(t *testing.T, tk types.Task, id string) types.Process {
	t.Helper()
	p, err := tk.Exec(context.Background(), id, execSpec, false, discardIO)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A. A delete cut off (outcome unknown) and retried by the caller leaves
// nothing for the client to finish: after the next outage no Tasks.Delete
// is sent, and the container's next task (created, or stopped and awaiting
// the daemon's own delete) stays. Six containers, one per case: the cut
// off before containerd got the delete (the retry deletes), after it (the
// retry gets NotFound), or by the caller's context (NotFound too), each
// with its next task created or stopped; then one outage.
//
// Fails on b0e4646 (all six cases, 8 of 8 runs, 3 with -race): the cut-off
// delete stays recorded on the handle whatever the retry got; once
// containerd is back from the outage and the 5 s grace has passed, the
// client sends Tasks.Delete for each container and deletes its next task (6
// Delete calls, every next task gone).
func TestDeferredDeleteSparesNextTask(t *testing.T) {
	ctx := context.Background()
	srv := fakecd.Start(t, fakecd.WithRuncShimEvents())
	c, rec := newClient(t, srv)
	type nextTask struct {
		id  string
		pid uint32
	}
	var nexts []nextTask
	for _, kind := range []faults.Kind{faults.Before, faults.After, faults.Cancel} {
		for _, state := range []string{"created", "stopped"} {
			id := string(kind) + "-" + state
			ctr := newContainer(t, c, id)
			tk := startTask(t, ctr)
			srv.Exit(testNS, id, "", 0, true)
			rec.waitExits(t, id, id, 1)

			cutOffDelete(t, tk, kind)
			// The documented recovery: retry. NotFound means the first
			// took effect.
			_, err := tk.Delete(ctx)
			if kind == faults.Before && err != nil || kind != faults.Before && !errclass.IsNotFound(err) {
				t.Fatalf("%s: retried delete: %v", id, err)
			}

			next, err := ctr.NewTask(ctx, "", false, discardIO)
			if err != nil {
				t.Fatal(err)
			}
			if state == "stopped" {
				if err := next.Start(ctx); err != nil {
					t.Fatal(err)
				}
				srv.Exit(testNS, id, "", 5, true)
				rec.waitExits(t, id, id, 2)
			}
			nexts = append(nexts, nextTask{id, next.Pid()})
		}
	}
	deletes := srv.Calls("Delete")
	srv.Stop()
	srv.Restart()
	resubscribed(t, srv, c) // waits out any deferred delete's grace

	if n := srv.Calls("Delete"); n != deletes {
		t.Errorf("%d Tasks.Delete sent after the outage", n-deletes)
	}
	for _, next := range nexts {
		if st, ok := srv.Process(testNS, next.id, ""); !ok || st.Pid != next.pid {
			t.Errorf("%s: the container's next task (pid %d) was deleted", next.id, next.pid)
		}
	}
}

// B. ForceDelete's own answer carries the exit (137, SIGKILL): a
// reconciler that finds the task gone from Get while that answer is on its
// way (containerd takes the task off its list before the shim shuts down)
// must not guess 255 for it.
//
// Fails on b0e4646 (23 of 23 runs, 3 with -race): the stream breaks as the
// kill is sent, so the kill's TaskExit and the delete's TaskDelete reach
// nobody; the client reconnects within the 300 ms lag, its reconciler gets
// NotFound, delivers 255, and drops the real 137 when the answer comes.
func TestForceDeleteAnswerBeatsGoneGuess(t *testing.T) {
	ctx := context.Background()
	srv := fakecd.Start(t, fakecd.WithRuncShimEvents())
	c, rec := newClient(t, srv)
	ctr := newContainer(t, c, "c")
	tk := startTask(t, ctr)

	srv.SetDeleteLag(300 * time.Millisecond)
	gone := srv.Gone(testNS, "c", "")
	var brk sync.Once
	srv.SetHook("Kill", func(context.Context, proto.Message) (proto.Message, bool, error) {
		// The stream breaks as the kill goes out; the client may
		// subscribe again only once the delete took the task off the
		// list, so both events are published to nobody.
		brk.Do(func() {
			srv.PauseSubscriptions()
			srv.BreakStreams()
		})
		return nil, false, nil
	})
	resumed := make(chan struct{})
	go func() {
		defer close(resumed)
		select {
		case <-gone:
		case <-time.After(10 * time.Second):
		}
		srv.ResumeSubscriptions()
	}()
	if err := tk.ForceDelete(ctx); err != nil {
		t.Fatal(err)
	}
	<-resumed
	resubscribed(t, srv, c)
	if exits := rec.exits("c", "c"); len(exits) != 1 || exits[0].ExitCode != 137 {
		t.Fatalf("exits %+v, want exactly one, the real 137", exits)
	}
}

// C. TaskStart, TaskExit and TaskDelete of a task all reach the client
// before its Start's answer does (another client deleted it at once): the
// answer must not make a new process of it, which a later reconcile would
// report gone.
//
// Fails on b0e4646 (8 of 8 runs, 3 with -race): the answer adds a new
// incarnation after the first was forgotten; at the next reconnect the
// reconciler finds the task gone and delivers a second exit, 255.
func TestLateStartAnswerMakesNoPhantom(t *testing.T) {
	ctx := context.Background()
	srv := fakecd.Start(t, fakecd.WithRuncShimEvents())
	c, rec := newClient(t, srv)
	ctr := newContainer(t, c, "c")
	tk, err := ctr.NewTask(ctx, "", false, discardIO)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetHook("Start", func(ctx context.Context, req proto.Message) (proto.Message, bool, error) {
		r := req.(*tasksapi.StartRequest)
		pid, err := srv.StartProcess(testNS, r.ContainerID, r.ExecID)
		if err != nil {
			return nil, true, err
		}
		srv.Exit(testNS, r.ContainerID, "", 0, true)
		if err := srv.DeleteProcess(testNS, r.ContainerID, ""); err != nil {
			return nil, true, err
		}
		// Events are handled in order: once the backend has this
		// marker, the client has handled the three before it.
		srv.Publish(testNS, "/tasks/oom", &apievents.TaskOOM{ContainerID: "marker"})
		if !rec.await(10*time.Second, func() bool { return rec.got(types.EventOOM, "marker") }) {
			return nil, true, status.Error(codes.DeadlineExceeded, "the client never handled the task's events")
		}
		return &tasksapi.StartResponse{Pid: pid}, true, nil
	})
	if err := tk.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv.SetHook("Start", nil)
	// A reconnect: the reconciler asks about whatever the client thinks
	// may still run.
	srv.BreakStreams()
	resubscribed(t, srv, c)
	if exits := rec.exits("c", "c"); len(exits) != 1 || exits[0].ExitCode != 0 || exits[0].Pid != tk.Pid() {
		t.Fatalf("exits %+v, want exactly one, code 0 of pid %d", exits, tk.Pid())
	}
}

// D. The shim's clock steps back (NTP, a VM resume) between two execs of a
// container: the second exec's exit is stamped earlier than the first's.
// It is a process the client holds, and gets its exit, from the stream or
// from its delete's answer.
//
// Fails on b0e4646 (both cases, 8 of 8 runs, 3 with -race): an exit not
// newer than the container's newest forgotten exit time is taken for a copy;
// the second exec gets no exit at all.
func TestClockStepBackKeepsExecExit(t *testing.T) {
	for _, tc := range []struct {
		name      string
		published bool // its TaskExit on the stream, or lost
	}{
		{"exit on the stream", true},
		{"exit only in the delete's answer", false},
	} {
		tc := tc
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := fakecd.Start(t, fakecd.WithRuncShimEvents())
			c, rec := newClient(t, srv)
			ctr := newContainer(t, c, "c")
			tk := startTask(t, ctr)

			first := startExec(t, tk, "e1")
			at := time.Now()
			srv.ExitAt(testNS, "c", "e1", 1, at, true)
			rec.waitExits(t, "c", "e1", 1)
			if _, err := first.Delete(ctx); err != nil {
				t.Fatal(err)
			}

			second := startExec(t, tk, "e2")
			srv.ExitAt(testNS, "c", "e2", 2, at.Add(-time.Hour), tc.published)
			if tc.published {
				// A daemon deletes an exec once it has its exit.
				libcontainerd.Settle(t, c)
				if exits := rec.exits("c", "e2"); len(exits) != 1 {
					t.Fatalf("exits of e2 before its delete: %+v, want one", exits)
				}
			}
			if _, err := second.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			libcontainerd.Settle(t, c)
			if exits := rec.exits("c", "e2"); len(exits) != 1 || exits[0].ExitCode != 2 || exits[0].Pid != second.Pid() {
				t.Fatalf("exits of e2: %+v, want exactly one, code 2 of pid %d", exits, second.Pid())
			}
		})
	}
}

// E. A container's init exits and is deleted through the client; while the
// client's stream is down another client starts a new task for the
// container, and the kernel gives its init the same pid. Its exit, heard
// once the stream is back, is a new process's and reaches the backend.
//
// Fails on b0e4646 (8 of 8 runs, 3 with -race): the container keeps its last
// forgotten init pid, and any exit of an init the ledger does not hold with
// that pid is dropped as a copy; the new task's exit (7) never arrives.
func TestReusedInitPidExitDelivered(t *testing.T) {
	ctx := context.Background()
	srv := fakecd.Start(t, fakecd.WithRuncShimEvents())
	c, rec := newClient(t, srv)
	ctr := newContainer(t, c, "c")
	tk := startTask(t, ctr)
	pid := tk.Pid()
	srv.Exit(testNS, "c", "", 3, true)
	rec.waitExits(t, "c", "c", 1)
	if _, err := tk.Delete(ctx); err != nil {
		t.Fatal(err)
	}

	srv.StreamGap(func() {
		srv.SetNextPid(pid)
		if got, err := srv.CreateTask(testNS, "c"); err != nil || got != pid {
			t.Fatalf("another client's create: pid %d, %v", got, err)
		}
		if _, err := srv.StartProcess(testNS, "c", ""); err != nil {
			t.Fatal(err)
		}
	})
	resubscribed(t, srv, c)
	srv.Exit(testNS, "c", "", 7, true)
	libcontainerd.Settle(t, c)
	exits := rec.exits("c", "c")
	if len(exits) != 2 || exits[1].ExitCode != 7 || exits[1].Pid != pid {
		t.Fatalf("exits %+v, want the first task's 3 and the new task's 7, both of pid %d", exits, pid)
	}
}

// F. Memory is bounded by the processes alive or awaiting delivery or
// delete: nothing is kept per container that once existed.
//
// Fails on b0e4646 (every case, 8 of 8 runs, 3 with -race): "another
// client's lifecycles": the ledger keeps an entry per container that ever
// exited (LedgerSize 20000 for 20000 containers, 5000 for 5000 under -race;
// baseline 0); "container delete, outcome unknown" and "container deleted
// behind the client": only a Container.Delete answered OK drops it
// (LedgerSize 1); "another client's task delete missed": the task's
// delivered init and exec are held until a TaskDelete that never comes
// (LedgerSize 2).
func TestLedgerMemoryBoundedByLiveProcesses(t *testing.T) {
	t.Run("another client's lifecycles", func(t *testing.T) {
		n := 20_000
		if raceDetector() {
			n = 5_000 // the detector makes each event ~10× dearer
		}
		srv := fakecd.Start(t, fakecd.WithRuncShimEvents())
		c, rec := newClient(t, srv)
		baseline := libcontainerd.LedgerSize(c)
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("f%d", i)
			// pid_max 32768: pids come round again.
			srv.SetNextPid(uint32(300 + 2*i%32000))
			mustDo(t, func() error { _, err := srv.CreateTask(testNS, id); return err })
			mustDo(t, func() error { _, err := srv.StartProcess(testNS, id, ""); return err })
			mustDo(t, func() error { return srv.ExecProcess(testNS, id, "e") })
			mustDo(t, func() error { _, err := srv.StartProcess(testNS, id, "e"); return err })
			srv.Exit(testNS, id, "e", 1, true)
			mustDo(t, func() error { return srv.DeleteProcess(testNS, id, "e") }) // no event: runc
			srv.Exit(testNS, id, "", 0, true)
			mustDo(t, func() error { return srv.DeleteProcess(testNS, id, "") })
		}
		libcontainerd.Settle(t, c)
		// Another client's processes, gone before containerd could say
		// they ran: their exits cannot be placed, and are not made up.
		if got := rec.count(types.EventExit); got > 2*n {
			t.Errorf("%d exits delivered, more than the %d processes", got, 2*n)
		}
		if size := libcontainerd.LedgerSize(c); size != baseline {
			t.Errorf("ledger size %d after %d lifecycles, baseline %d", size, n, baseline)
		}
	})

	// A lifecycle through the client, then the container's delete: the
	// first answer lost (it took effect), the retry NotFound.
	t.Run("container delete, outcome unknown", func(t *testing.T) {
		ctx := context.Background()
		srv := fakecd.Start(t, fakecd.WithRuncShimEvents())
		c, rec := newClient(t, srv)
		baseline := libcontainerd.LedgerSize(c)
		ctr := lifecycle(t, srv, c, rec, "c")
		fctx, op := faults.Begin(ctx, 1, faults.After)
		err := ctr.Delete(fctx)
		op.Done()
		if err == nil || !strings.HasSuffix(op.Fired(), "Containers/Delete") {
			t.Fatalf("cut-off container delete: %v (fault at %q)", err, op.Fired())
		}
		if err := ctr.Delete(ctx); !errclass.IsNotFound(err) {
			t.Fatalf("retried container delete: %v", err)
		}
		libcontainerd.Settle(t, c)
		if size := libcontainerd.LedgerSize(c); size != baseline {
			t.Errorf("ledger size %d after the container was deleted, baseline %d", size, baseline)
		}
	})

	t.Run("container deleted behind the client", func(t *testing.T) {
		ctx := context.Background()
		srv := fakecd.Start(t, fakecd.WithRuncShimEvents())
		c, rec := newClient(t, srv)
		baseline := libcontainerd.LedgerSize(c)
		ctr := lifecycle(t, srv, c, rec, "c")
		other := srv.Client(t)
		if err := other.ContainerService().Delete(namespaces.WithNamespace(ctx, testNS), "c"); err != nil {
			t.Fatal(err)
		}
		if err := ctr.Delete(ctx); !errclass.IsNotFound(err) {
			t.Fatalf("container delete: %v", err)
		}
		libcontainerd.Settle(t, c)
		if size := libcontainerd.LedgerSize(c); size != baseline {
			t.Errorf("ledger size %d after the container was deleted, baseline %d", size, baseline)
		}
	})

	// Another client's task and exec exit (delivered); the task's delete
	// comes while the client's stream is down.
	t.Run("another client's task delete missed", func(t *testing.T) {
		srv := fakecd.Start(t, fakecd.WithRuncShimEvents())
		c, rec := newClient(t, srv)
		baseline := libcontainerd.LedgerSize(c)
		mustDo(t, func() error { _, err := srv.CreateTask(testNS, "f"); return err })
		mustDo(t, func() error { _, err := srv.StartProcess(testNS, "f", ""); return err })
		mustDo(t, func() error { return srv.ExecProcess(testNS, "f", "e") })
		mustDo(t, func() error { _, err := srv.StartProcess(testNS, "f", "e"); return err })
		srv.Exit(testNS, "f", "e", 1, true)
		srv.Exit(testNS, "f", "", 0, true)
		rec.waitExits(t, "f", "", 2)
		srv.StreamGap(func() {
			mustDo(t, func() error { return srv.DeleteProcess(testNS, "f", "e") })
			mustDo(t, func() error { return srv.DeleteProcess(testNS, "f", "") })
		})
		resubscribed(t, srv, c)
		if size := libcontainerd.LedgerSize(c); size != baseline {
			t.Errorf("ledger size %d after the task was deleted, baseline %d", size, baseline)
		}
	})
}

// raceDetector reports whether the test binary was built with -race (go
// test records it in the binary's build settings).
func raceDetector() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

func mustDo(t *testing.T, step func() error) {
	t.Helper()
	if err := step(); err != nil {
		t.Fatal(err)
	}
}

// lifecycle runs a container's task through the client: created, started,
// exited (delivered), deleted. It returns the container.
func lifecycle(t *testing.T, srv *fakecd.Server, c types.Client, rec *recorder, id string) types.Container {
	t.Helper()
	ctr := newContainer(t, c, id)
	tk := startTask(t, ctr)
	srv.Exit(testNS, id, "", 0, true)
	rec.waitExits(t, id, id, 1)
	if _, err := tk.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	return ctr
}

// lure is a ttrpc server posing as a shim: it answers the shim task API's
// State and Wait with a forged exit (code 0) of pid, and counts the
// connections made to it.
type lure struct {
	socket   string
	pid      atomic.Uint32
	accepts  atomic.Int32
	accepted chan struct{} // closed at the first connection
	once     sync.Once
}

func startLure(t *testing.T, socket string) *lure {
	t.Helper()
	lu := &lure{socket: socket, accepted: make(chan struct{})}
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	server, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	forged := map[string]ttrpc.Method{
		"State": func(_ context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var req shimapi.StateRequest
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			return &shimapi.StateResponse{ID: req.ID, Pid: lu.pid.Load(), Status: tasktypes.Status_STOPPED, ExitedAt: protobuf.ToTimestamp(time.Now())}, nil
		},
		"Wait": func(_ context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			return &shimapi.WaitResponse{ExitedAt: protobuf.ToTimestamp(time.Now())}, nil
		},
		"Shutdown": func(_ context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			return &emptypb.Empty{}, nil
		},
	}
	server.RegisterService("containerd.task.v2.Task", &ttrpc.ServiceDesc{Methods: forged})
	server.RegisterService("containerd.task.v3.Task", &ttrpc.ServiceDesc{Methods: forged})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = server.Serve(context.Background(), &countingListener{Listener: l, lure: lu})
	}()
	t.Cleanup(func() {
		_ = server.Close()
		<-done
	})
	return lu
}

type countingListener struct {
	net.Listener
	lure *lure
}

func (l *countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err == nil {
		l.lure.accepts.Add(1)
		l.lure.once.Do(func() { close(l.lure.accepted) })
	}
	return conn, err
}

// startShimLookalike runs `sh -c 'sleep 600 & echo $!; wait'` with argv
// that reads like a shim's (containerd-shim -namespace <ns> -id <id> ...
// extra), in dir, with cred (nil: as the test), and returns the pid of its
// child, the sleep. Both die with the test.
func startShimLookalike(t *testing.T, dir string, cred *syscall.Credential, id string, extra ...string) uint32 {
	t.Helper()
	args := append([]string{"-c", "sleep 600 & echo $!; wait", "containerd-shim", "-namespace", testNS, "-id", id}, extra...)
	cmd := exec.Command("/bin/sh", args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("shim lookalike: %v", err)
	}
	child, err := strconv.ParseUint(strings.TrimSpace(line), 10, 32)
	if err != nil {
		t.Fatalf("shim lookalike printed %q", line)
	}
	return uint32(child)
}

// G. While containerd is down the client asks tracked processes' shims for
// their exits. A process any local user runs can look like a shim to /proc
// (argv with containerd-shim and -namespace, an address file in its cwd):
// here one runs as nobody and is the parent of the process the task's pid
// names. It must never be dialed, and no exit may be forged for the live
// init.
//
// Fails on b0e4646 (8 of 8 runs, 3 with -race): findShim accepts the
// lookalike from its argv alone, the shim watch dials the test's socket
// during the outage (1 connection), and the forged "stopped, code 0" is
// delivered as the init's exit once containerd is back, while the task still
// runs.
func TestShimWatchIgnoresUnprivilegedShim(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a shim lookalike as user nobody (uid 65534)")
	}
	srv := fakecd.Start(t, fakecd.WithRuncShimEvents())
	c, rec := newClient(t, srv)
	lu := startLure(t, filepath.Join(t.TempDir(), "lure.sock"))

	// The lookalike's cwd: usable by nobody, with an address file as a
	// 1.x shim's bundle has.
	dir, err := os.MkdirTemp("", "shim-lookalike")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "address"), []byte("unix://"+lu.socket), 0o644); err != nil {
		t.Fatal(err)
	}
	pid := startShimLookalike(t, dir, &syscall.Credential{Uid: 65534, Gid: 65534}, "c",
		"-address", "/run/containerd/containerd.sock")
	lu.pid.Store(pid)

	srv.SetNextPid(pid)
	ctr := newContainer(t, c, "c")
	tk := startTask(t, ctr)
	if tk.Pid() != pid {
		t.Fatalf("task pid %d, want the lookalike's child %d", tk.Pid(), pid)
	}
	srv.Stop()
	// The outage lasts until the lure is dialed, or half a second.
	select {
	case <-lu.accepted:
	case <-time.After(500 * time.Millisecond):
	}
	srv.Restart()
	resubscribed(t, srv, c)
	if n := lu.accepts.Load(); n != 0 {
		t.Errorf("a shim lookalike run by uid 65534 was dialed %d times", n)
	}
	if exits := rec.exits("c", ""); len(exits) != 0 {
		t.Errorf("exits %+v forged for a task that still runs", exits)
	}
	if st, ok := srv.Process(testNS, "c", ""); !ok || st.Status != tasktypes.Status_RUNNING {
		t.Fatalf("task state %+v %v, want running", st, ok)
	}
}

// H. containerd refuses a task create with AlreadyExists while Get does
// not find the task: on containerd 1.7 that is another client's create of
// the same ID still under way. Only a create of this client whose outcome
// was unknown may lead to the orphan clean-up: here none was, so no
// Tasks.Delete is sent and no shim is asked to shut down.
//
// Fails on b0e4646 (8 of 8 runs, 3 with -race): NewTask takes any such
// refusal for an orphan of its own, sends Tasks.Delete for the container (1
// call) and, as root, dials the shim socket of that ID and asks it to shut
// down (1 connection).
func TestNewTaskRefusedLeavesForeignCreate(t *testing.T) {
	srv := fakecd.Start(t, fakecd.WithRuncShimEvents())
	c, _ := newClient(t, srv)
	ctr := newContainer(t, c, "c")

	// The other client's shim, as root, where containerd's shims serve.
	var shim *lure
	if os.Geteuid() == 0 {
		socketDir := "/run/containerd/s"
		if err := os.MkdirAll(socketDir, 0o711); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(filepath.Join(srv.Address(), testNS, "c")))
		socket := filepath.Join(socketDir, fmt.Sprintf("%x", sum))
		t.Cleanup(func() { os.Remove(socket) })
		shim = startLure(t, socket)
		startShimLookalike(t, "/", nil, "c", "-address", srv.Address())
	} else {
		t.Log("not root: only the Tasks.Delete half is checked")
	}

	srv.SetHook("Create", func(context.Context, proto.Message) (proto.Message, bool, error) {
		return nil, true, status.Error(codes.AlreadyExists, "task c: already exists")
	})
	if _, err := ctr.NewTask(context.Background(), "", false, discardIO); err == nil {
		t.Fatal("NewTask succeeded while another client's create was under way")
	}
	if n := srv.Calls("Delete"); n != 0 {
		t.Errorf("%d Tasks.Delete sent for a create this client never cut off", n)
	}
	if shim != nil {
		if n := shim.accepts.Load(); n != 0 {
			t.Errorf("another client's shim was dialed %d times", n)
		}
	}
}

// I. An exec's start takes effect but containerd is killed before it
// answers, and stays down for a second; the exec ends on its own meanwhile
// (its TaskExit reaches nobody). After the documented recovery (retry Exec
// with the same ID; a new ID on Conflict) each process that ran gets
// exactly one exit, with its real code.
//
// Fails on b0e4646 (8 of 8 runs, 3 with -race): the clean-up of the failed
// exec gives up after 3 tries 0.3 s apart while containerd is down; the
// ledger never held the exec, so its exit (3) is never delivered; the retry
// gets Conflict and the new ID's exec gets its exit.
func TestExecStartCutOffByOutageKeepsExit(t *testing.T) {
	ctx := context.Background()
	srv := fakecd.Start(t, fakecd.WithRuncShimEvents())
	c, rec := newClient(t, srv)
	ctr := newContainer(t, c, "c")
	tk := startTask(t, ctr)

	ran := make(chan uint32, 1)
	var cut sync.Once
	srv.SetHook("Start", func(_ context.Context, req proto.Message) (proto.Message, bool, error) {
		r := req.(*tasksapi.StartRequest)
		var err error
		handled := false
		cut.Do(func() {
			handled = true
			// containerd is killed mid-call: the shim starts the exec,
			// its answer and its TaskExecStarted are lost.
			srv.Kill()
			var pid uint32
			pid, err = srv.StartProcess(testNS, r.ContainerID, r.ExecID)
			ran <- pid
		})
		if !handled {
			return nil, false, nil
		}
		if err == nil {
			err = status.Error(codes.Unavailable, "transport is closing")
		}
		return nil, true, err
	})
	type result struct {
		p   types.Process
		err error
	}
	first := make(chan result, 1)
	go func() {
		p, err := tk.Exec(ctx, "e", execSpec, false, discardIO)
		first <- result{p, err}
	}()
	var pid1 uint32
	select {
	case pid1 = <-ran:
	case <-time.After(10 * time.Second):
		t.Fatal("the exec was never started")
	}
	if pid1 == 0 {
		t.Fatal("the exec's start failed in the fake")
	}
	outage := time.NewTimer(time.Second)
	<-outage.C
	srv.Exit(testNS, "c", "e", 3, false)
	srv.Restart()
	var res result
	select {
	case res = <-first:
	case <-time.After(60 * time.Second):
		t.Fatal("Exec did not return after containerd came back")
	}
	resubscribed(t, srv, c)

	// The documented recovery.
	var retried types.Process
	if res.err != nil {
		var err error
		retried, err = tk.Exec(ctx, "e", execSpec, false, discardIO)
		if errclass.IsConflict(err) {
			retried, err = tk.Exec(ctx, "e-retry", execSpec, false, discardIO)
		}
		if err != nil {
			t.Fatalf("Exec retried after %v: %v", res.err, err)
		}
	} else if res.p.Pid() != pid1 {
		t.Fatalf("Exec succeeded with pid %d, but the exec that ran has %d", res.p.Pid(), pid1)
	}
	var pid2 uint32
	if retried != nil {
		pid2 = retried.Pid()
		id := "e"
		if _, ok := srv.Process(testNS, "c", "e-retry"); ok {
			id = "e-retry"
		}
		srv.Exit(testNS, "c", id, 4, true)
		if !rec.await(10*time.Second, func() bool { return countPid(rec.exits("c", id), pid2) > 0 }) {
			t.Errorf("the retried exec (pid %d) got no exit", pid2)
		}
		if _, err := retried.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	}
	libcontainerd.Settle(t, c)

	var execExits []types.EventInfo
	for _, ei := range rec.exits("c", "") {
		if ei.ProcessID != "c" {
			execExits = append(execExits, ei)
		}
	}
	if n := countPid(execExits, pid1); n != 1 {
		t.Errorf("the exec that ran (pid %d, code 3) got %d exits: %+v", pid1, n, execExits)
	}
	for _, ei := range execExits {
		switch {
		case ei.Pid == pid1 && ei.ExitCode != 3:
			t.Errorf("the exec that ran got code %d, want its real 3", ei.ExitCode)
		case pid2 != 0 && ei.Pid == pid2 && ei.ExitCode != 4:
			t.Errorf("the retried exec got code %d, want 4", ei.ExitCode)
		case ei.Pid != pid1 && (pid2 == 0 || ei.Pid != pid2):
			t.Errorf("an exit of a process that never ran: %+v", ei)
		}
	}
	if pid2 != 0 && countPid(execExits, pid2) != 1 {
		t.Errorf("the retried exec (pid %d) got %d exits: %+v", pid2, countPid(execExits, pid2), execExits)
	}
}

func countPid(exits []types.EventInfo, pid uint32) int {
	n := 0
	for _, ei := range exits {
		if ei.Pid == pid {
			n++
		}
	}
	return n
}

// A task delete cut off by a containerd kill on 1.6 can stop after the shim
// deleted its container and before containerd shut the shim down: the
// restarted containerd loads the shim, but Get and List skip a task whose
// shim holds no container, so the task looks gone while its shim and bundle
// stay. Only a task Delete clears it (answered NotFound). So once a delete
// of this client's was cut off, Container.Delete sends one even though Get
// says NotFound. (Seen in TestChaosWithDeletingBackend on 1.6.20 under
// load: a shim left running. Fails before the fix: no Delete sent.)
func TestContainerDeleteClearsShimOfCutOffTaskDelete(t *testing.T) {
	ctx := context.Background()
	srv := fakecd.Start(t, fakecd.WithRuncShimEvents())
	c, rec := newClient(t, srv)
	ctr := newContainer(t, c, "c")
	tk := startTask(t, ctr)
	srv.Exit(testNS, "c", "", 0, true)
	rec.waitExits(t, "c", "c", 1)
	cutOffDelete(t, tk, faults.After)
	deletes := srv.Calls("Delete")
	if err := ctr.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if n := srv.Calls("Delete") - deletes; n != 1 {
		t.Fatalf("Container.Delete sent %d task Deletes, want 1 (the one that clears a 1.6 orphan shim)", n)
	}
}

// cutOffDelete sends tk's Delete with a fault of kind on that call (before
// containerd takes it, after, or the caller's context ended), and fails the
// test unless the fault cut the Delete off.
func cutOffDelete(t *testing.T, tk types.Task, kind faults.Kind) {
	t.Helper()
	fctx, op := faults.Begin(context.Background(), 1, kind)
	_, err := tk.Delete(fctx)
	op.Done()
	if err == nil || !strings.HasSuffix(op.Fired(), "/Delete") {
		t.Fatalf("cut-off delete (%s): %v (fault at %q)", kind, err, op.Fired())
	}
}
