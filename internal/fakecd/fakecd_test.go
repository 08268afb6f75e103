package fakecd

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	eventtypes "github.com/containerd/containerd/api/events"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/leases"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/typeurl/v2"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const tasksFilter = "namespace==" + DefaultNamespace + ",topic~=|^/tasks/|"

// stream is one client subscription.
type stream struct {
	ch   <-chan *events.Envelope
	errs <-chan error
}

// subscribe opens a subscription and waits until the server has registered
// it (want is the number of subscribers then open).
func subscribe(t *testing.T, s *Server, c *containerd.Client, want int, filters ...string) stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch, errs := c.EventService().Subscribe(ctx, filters...)
	waitFor(t, "subscription registered", func() bool { return s.Subscribers() == want })
	return stream{ch, errs}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// next answers the next envelope's topic and decoded event.
func (st stream) next(t *testing.T) (string, interface{}) {
	t.Helper()
	select {
	case env := <-st.ch:
		v, err := typeurl.UnmarshalAny(env.Event)
		if err != nil {
			t.Fatalf("decode %s: %v", env.Topic, err)
		}
		return env.Topic, v
	case err := <-st.errs:
		t.Fatalf("stream ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no event")
	}
	return "", nil
}

// quiet fails if an event arrives within a short while.
func (st stream) quiet(t *testing.T) {
	t.Helper()
	select {
	case env := <-st.ch:
		t.Fatalf("unexpected event %s", env.Topic)
	case err := <-st.errs:
		t.Fatalf("stream ended: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
}

// ended waits for the stream's error.
func (st stream) ended(t *testing.T) error {
	t.Helper()
	for {
		select {
		case <-st.ch:
		case err := <-st.errs:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("stream did not end")
		}
	}
}

func nsCtx() context.Context {
	return namespaces.WithNamespace(context.Background(), DefaultNamespace)
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
}

func TestTaskRoundTrip(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ev := subscribe(t, s, c, 1, tasksFilter)
	ctx := nsCtx()
	ts := c.TaskService()

	cr, err := ts.Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: "c1", Stdout: "/out"})
	if err != nil || cr.Pid != firstPid {
		t.Fatalf("create: %v %v", cr, err)
	}
	if topic, v := ev.next(t); topic != "/tasks/create" || v.(*eventtypes.TaskCreate).Pid != firstPid {
		t.Fatalf("got %s %v", topic, v)
	}
	_, err = ts.Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: "c1"})
	wantCode(t, err, codes.AlreadyExists)

	if sr, err := ts.Start(ctx, &tasksapi.StartRequest{ContainerID: "c1"}); err != nil || sr.Pid != firstPid {
		t.Fatalf("start: %v %v", sr, err)
	}
	if topic, _ := ev.next(t); topic != "/tasks/start" {
		t.Fatalf("got %s", topic)
	}
	if _, err := ts.Exec(ctx, &tasksapi.ExecProcessRequest{ContainerID: "c1", ExecID: "e1"}); err != nil {
		t.Fatal(err)
	}
	_, err = ts.Exec(ctx, &tasksapi.ExecProcessRequest{ContainerID: "c1", ExecID: "e1"})
	wantCode(t, err, codes.AlreadyExists)
	if topic, v := ev.next(t); topic != "/tasks/exec-added" || v.(*eventtypes.TaskExecAdded).ExecID != "e1" {
		t.Fatalf("got %s %v", topic, v)
	}
	sr, err := ts.Start(ctx, &tasksapi.StartRequest{ContainerID: "c1", ExecID: "e1"})
	if err != nil || sr.Pid != firstPid+1 {
		t.Fatalf("start exec: %v %v", sr, err)
	}
	if topic, v := ev.next(t); topic != "/tasks/exec-started" || v.(*eventtypes.TaskExecStarted).Pid != firstPid+1 {
		t.Fatalf("got %s %v", topic, v)
	}

	_, err = ts.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: "c1"})
	wantCode(t, err, codes.FailedPrecondition)

	waited := make(chan *tasksapi.WaitResponse, 1)
	go func() {
		r, err := ts.Wait(ctx, &tasksapi.WaitRequest{ContainerID: "c1"})
		if err != nil {
			t.Errorf("wait: %v", err)
		}
		waited <- r
	}()
	select {
	case <-waited:
		t.Fatal("wait answered for a running process")
	case <-time.After(50 * time.Millisecond):
	}

	if _, err := ts.Kill(ctx, &tasksapi.KillRequest{ContainerID: "c1", Signal: uint32(syscall.SIGKILL), All: true}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"e1", "c1"} {
		topic, v := ev.next(t)
		exit, ok := v.(*eventtypes.TaskExit)
		if topic != "/tasks/exit" || !ok || exit.ID != id || exit.ContainerID != "c1" || exit.ExitStatus != 137 {
			t.Fatalf("got %s %v, want the exit of %s", topic, v, id)
		}
	}
	if r := <-waited; r == nil || r.ExitStatus != 137 || r.ExitedAt == nil {
		t.Fatalf("wait: %v", r)
	}
	_, err = ts.Kill(ctx, &tasksapi.KillRequest{ContainerID: "c1", Signal: uint32(syscall.SIGKILL)})
	wantCode(t, err, codes.NotFound)

	g, err := ts.Get(ctx, &tasksapi.GetRequest{ContainerID: "c1", ExecID: "e1"})
	if err != nil || g.Process.Status != tasktypes.Status_STOPPED || g.Process.ID != "e1" || g.Process.ExitStatus != 137 {
		t.Fatalf("get exec: %v %v", g, err)
	}
	if dr, err := ts.DeleteProcess(ctx, &tasksapi.DeleteProcessRequest{ContainerID: "c1", ExecID: "e1"}); err != nil || dr.ID != "e1" || dr.ExitStatus != 137 {
		t.Fatalf("delete exec: %v %v", dr, err)
	}
	if topic, v := ev.next(t); topic != "/tasks/delete" || v.(*eventtypes.TaskDelete).ID != "e1" {
		t.Fatalf("got %s %v", topic, v)
	}
	dr, err := ts.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: "c1"})
	if err != nil || dr.Pid != firstPid || dr.ExitStatus != 137 {
		t.Fatalf("delete: %v %v", dr, err)
	}
	if topic, v := ev.next(t); topic != "/tasks/delete" || v.(*eventtypes.TaskDelete).ID != "c1" {
		t.Fatalf("got %s %v", topic, v)
	}
	_, err = ts.Get(ctx, &tasksapi.GetRequest{ContainerID: "c1"})
	if !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		t.Fatalf("get after delete: %v", err)
	}
	if s.Calls("Start") != 2 || s.Calls("Delete") != 2 {
		t.Fatalf("calls: start %d delete %d", s.Calls("Start"), s.Calls("Delete"))
	}
}

func TestTableHelpers(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ev := subscribe(t, s, c, 1, tasksFilter)
	ctx := nsCtx()
	ts := c.TaskService()
	s.AddTask(DefaultNamespace, "a", 42)
	s.AddExec(DefaultNamespace, "a", "x", 43)
	s.AddTask("other", "b", 44)

	l, err := ts.List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil || len(l.Tasks) != 1 || l.Tasks[0].ID != "a" || l.Tasks[0].Pid != 42 || l.Tasks[0].Status != tasktypes.Status_RUNNING {
		t.Fatalf("list: %v %v", l, err)
	}

	// An exit the stream never carried: seen by Get and Wait only.
	s.Exit(DefaultNamespace, "a", "x", 3, false)
	ev.quiet(t)
	w, err := ts.Wait(ctx, &tasksapi.WaitRequest{ContainerID: "a", ExecID: "x"})
	if err != nil || w.ExitStatus != 3 {
		t.Fatalf("wait: %v %v", w, err)
	}
	s.Exit(DefaultNamespace, "a", "", 0, true)
	if topic, v := ev.next(t); topic != "/tasks/exit" || v.(*eventtypes.TaskExit).Pid != 42 {
		t.Fatalf("got %s %v", topic, v)
	}
	// Another namespace's events do not pass the filter.
	s.Exit("other", "b", "", 1, true)
	ev.quiet(t)

	s.AddExec(DefaultNamespace, "a", "y", 45)
	waitErr := make(chan error, 1)
	go func() {
		_, err := ts.Wait(ctx, &tasksapi.WaitRequest{ContainerID: "a", ExecID: "y"})
		waitErr <- err
	}()
	waitFor(t, "wait called", func() bool { return s.Calls("Wait") == 2 })
	time.Sleep(20 * time.Millisecond) // let the handler block
	s.Vanish(DefaultNamespace, "a", "y")
	wantCode(t, <-waitErr, codes.NotFound)
	_, err = ts.Get(ctx, &tasksapi.GetRequest{ContainerID: "a", ExecID: "y"})
	wantCode(t, err, codes.NotFound)

	s.Vanish(DefaultNamespace, "a", "")
	_, err = ts.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: "a"})
	wantCode(t, err, codes.NotFound)
	if l, err := ts.List(ctx, &tasksapi.ListTasksRequest{}); err != nil || len(l.Tasks) != 0 {
		t.Fatalf("list: %v %v", l, err)
	}
	ev.quiet(t)
}

func TestHooks(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := nsCtx()
	ts := c.TaskService()
	s.AddTask(DefaultNamespace, "real", 7)

	s.SetHook("List", func(_ context.Context, req proto.Message) (proto.Message, bool, error) {
		if _, ok := req.(*tasksapi.ListTasksRequest); !ok {
			t.Errorf("hook got %T", req)
		}
		return &tasksapi.ListTasksResponse{Tasks: []*tasktypes.Process{{ID: "hooked"}}}, true, nil
	})
	l, err := ts.List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil || len(l.Tasks) != 1 || l.Tasks[0].ID != "hooked" {
		t.Fatalf("list: %v %v", l, err)
	}

	fallThrough := 0
	s.SetHook("List", func(context.Context, proto.Message) (proto.Message, bool, error) {
		fallThrough++
		return nil, false, nil
	})
	if l, err := ts.List(ctx, &tasksapi.ListTasksRequest{}); err != nil || len(l.Tasks) != 1 || l.Tasks[0].ID != "real" || fallThrough != 1 {
		t.Fatalf("list: %v %v (hook ran %d)", l, err, fallThrough)
	}

	s.SetHook("Delete", func(context.Context, proto.Message) (proto.Message, bool, error) {
		return nil, true, status.Error(codes.Unavailable, "shim gone")
	})
	_, err = ts.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: "real"})
	wantCode(t, err, codes.Unavailable)
	s.SetHook("Delete", nil)
	_, err = ts.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: "real"})
	wantCode(t, err, codes.FailedPrecondition)

	s.SetHook("Subscribe", func(context.Context, proto.Message) (proto.Message, bool, error) {
		return nil, true, status.Error(codes.Internal, "no events today")
	})
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, errs := c.EventService().Subscribe(sctx, tasksFilter)
	wantCode(t, errdefs.ToGRPC(<-errs), codes.Internal)

	s.SetHook("Version.Version", func(context.Context, proto.Message) (proto.Message, bool, error) {
		return nil, true, status.Error(codes.Unavailable, "down")
	})
	_, err = c.Version(ctx)
	wantCode(t, err, codes.Unavailable)

	if s.Calls("List") != 2 || s.Calls("Delete") != 2 || s.Calls("Subscribe") != 1 || s.Calls("Version.Version") != 1 {
		t.Fatalf("calls: List %d Delete %d Subscribe %d Version %d",
			s.Calls("List"), s.Calls("Delete"), s.Calls("Subscribe"), s.Calls("Version.Version"))
	}
}

func TestHoldRelease(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ev := subscribe(t, s, c, 1, tasksFilter)
	for i := 0; i < 5; i++ {
		s.AddTask(DefaultNamespace, fmt.Sprint("c", i), uint32(100+i))
	}

	s.HoldEvents()
	for i := 0; i < 5; i++ {
		s.Exit(DefaultNamespace, fmt.Sprint("c", i), "", uint32(i), true)
	}
	ev.quiet(t)
	s.ReleaseEvents()
	for i := 0; i < 5; i++ {
		if _, v := ev.next(t); v.(*eventtypes.TaskExit).ID != fmt.Sprint("c", i) {
			t.Fatalf("event %d: %v", i, v)
		}
	}

	// Held events survive a broken stream and reach its successor.
	s.HoldEvents()
	s.Publish(DefaultNamespace, "/tasks/oom", &eventtypes.TaskOOM{ContainerID: "c0"})
	s.BreakStreams()
	wantCode(t, ev.ended(t), codes.Unavailable)
	ev2 := subscribe(t, s, c, 1, tasksFilter)
	s.ReleaseEvents()
	if topic, v := ev2.next(t); topic != "/tasks/oom" || v.(*eventtypes.TaskOOM).ContainerID != "c0" {
		t.Fatalf("got %s %v", topic, v)
	}
}

func TestSentinelFilter(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	const sentinel = "/libcontainerd/sentinel/0123abcd"
	ev := subscribe(t, s, c, 1, tasksFilter, "namespace=="+DefaultNamespace+`,topic=="`+sentinel+`"`)
	ctx := nsCtx()

	if err := c.EventService().Publish(ctx, "/libcontainerd/sentinel/other", &emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	if err := c.EventService().Publish(namespaces.WithNamespace(ctx, "elsewhere"), sentinel, &emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	ev.quiet(t)
	if err := c.EventService().Publish(ctx, sentinel, &emptypb.Empty{}); err != nil {
		t.Fatal(err)
	}
	if topic, _ := ev.next(t); topic != sentinel {
		t.Fatalf("got %s", topic)
	}
	if err := c.EventService().Publish(ctx, "no-slash", &emptypb.Empty{}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad topic: %v", err)
	}
}

func TestBreakStreams(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	a := subscribe(t, s, c, 1, tasksFilter)
	b := subscribe(t, s, c, 2)
	s.BreakStreams()
	if n := s.Subscribers(); n != 0 {
		t.Fatalf("%d subscribers after break", n)
	}
	wantCode(t, a.ended(t), codes.Unavailable)
	wantCode(t, b.ended(t), codes.Unavailable)
	// The connection itself is fine: a new subscription works at once.
	ev := subscribe(t, s, c, 1, tasksFilter)
	s.Publish(DefaultNamespace, "/tasks/oom", &eventtypes.TaskOOM{ContainerID: "x"})
	if topic, _ := ev.next(t); topic != "/tasks/oom" {
		t.Fatalf("got %s", topic)
	}
}

func TestStopRestart(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := nsCtx()
	s.AddTask(DefaultNamespace, "kept", 9)
	ev := subscribe(t, s, c, 1, tasksFilter)

	serving := func(d time.Duration) bool {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		ok, err := c.IsServing(ctx)
		return err == nil && ok
	}
	if !serving(5 * time.Second) {
		t.Fatal("not serving at start")
	}
	s.SetServing(false)
	if serving(5 * time.Second) {
		t.Fatal("serving after SetServing(false)")
	}
	s.SetServing(true)

	s.Stop()
	if err := ev.ended(t); err == nil {
		t.Fatal("stream ended without an error")
	}
	if n := s.Subscribers(); n != 0 {
		t.Fatalf("%d subscribers after stop", n)
	}
	if serving(200 * time.Millisecond) {
		t.Fatal("serving while stopped")
	}
	_, err := c.TaskService().Get(ctx, &tasksapi.GetRequest{ContainerID: "kept"})
	if !errdefs.IsUnavailable(errdefs.FromGRPC(err)) {
		t.Fatalf("get while stopped: %v", err)
	}

	s.Restart()
	waitFor(t, "client reconnected", func() bool { return serving(time.Second) })
	g, err := c.TaskService().Get(ctx, &tasksapi.GetRequest{ContainerID: "kept"})
	if err != nil || g.Process.Pid != 9 {
		t.Fatalf("get after restart: %v %v", g, err)
	}
	ev2 := subscribe(t, s, c, 1, tasksFilter)
	s.Exit(DefaultNamespace, "kept", "", 0, true)
	if topic, _ := ev2.next(t); topic != "/tasks/exit" {
		t.Fatalf("got %s", topic)
	}
}

// TestStopFromHook crashes the daemon in the middle of a call, the way a
// test makes an RPC's answer get lost.
func TestStopFromHook(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	s.AddTask(DefaultNamespace, "a", 5)
	s.Exit(DefaultNamespace, "a", "", 0, false)
	ev := subscribe(t, s, c, 1, tasksFilter)
	s.SetHook("Delete", func(context.Context, proto.Message) (proto.Message, bool, error) {
		s.Stop()
		return nil, true, status.Error(codes.Unavailable, "gone")
	})
	_, err := c.TaskService().Delete(nsCtx(), &tasksapi.DeleteTaskRequest{ContainerID: "a"})
	wantCode(t, err, codes.Unavailable)
	if err := ev.ended(t); err == nil {
		t.Fatal("stream ended without an error")
	}
	s.SetHook("Delete", nil)
	s.Restart()
	ctx, cancel := context.WithTimeout(nsCtx(), 20*time.Second)
	defer cancel()
	if _, err := c.TaskService().Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: "a"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("delete after restart: %v", err)
	}
}

func TestOtherServices(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := nsCtx()

	v, err := c.Version(ctx)
	if err != nil || v.Version != Version {
		t.Fatalf("version: %v %v", v, err)
	}

	ctr, err := c.NewContainer(ctx, "ctr", containerd.WithContainerLabels(map[string]string{"k": "v"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewContainer(ctx, "ctr"); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second create: %v", err)
	}
	loaded, err := c.LoadContainer(ctx, "ctr")
	if err != nil {
		t.Fatal(err)
	}
	if labels, err := loaded.SetLabels(ctx, map[string]string{"k2": "v2"}); err != nil || labels["k"] != "v" || labels["k2"] != "v2" {
		t.Fatalf("labels: %v %v", labels, err)
	}
	if list, err := c.Containers(ctx, "labels.k2==v2"); err != nil || len(list) != 1 {
		t.Fatalf("containers: %v %v", list, err)
	}
	if err := ctr.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.LoadContainer(ctx, "ctr"); !errdefs.IsNotFound(err) {
		t.Fatalf("load deleted: %v", err)
	}

	s.AddContainer(DefaultNamespace, "restored")
	if _, err := c.LoadContainer(ctx, "restored"); err != nil {
		t.Fatal(err)
	}

	lm := c.LeasesService()
	l, err := lm.Create(ctx, leases.WithRandomID())
	if err != nil {
		t.Fatal(err)
	}
	if all, err := lm.List(ctx); err != nil || len(all) != 1 || all[0].ID != l.ID {
		t.Fatalf("leases: %v %v", all, err)
	}
	if err := lm.Delete(ctx, l); err != nil {
		t.Fatal(err)
	}
	if err := lm.Delete(ctx, l); !errdefs.IsNotFound(err) {
		t.Fatalf("second lease delete: %v", err)
	}
}

// TestListScale lists 100k tasks within the client's default 16 MiB, and
// shows WithTaskPadding pushing a smaller table past it.
func TestListScale(t *testing.T) {
	if testing.Short() {
		t.Skip("large table")
	}
	s := Start(t)
	c := s.Client(t)
	ctx := nsCtx()
	for i := 0; i < 100000; i++ {
		s.AddTask(DefaultNamespace, fmt.Sprintf("task-%06d", i), uint32(10000+i))
	}
	l, err := c.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	if err != nil || len(l.Tasks) != 100000 || l.Tasks[99999].ID != "task-099999" {
		t.Fatalf("list: %d tasks, %v", len(l.GetTasks()), err)
	}

	p := Start(t, WithTaskPadding(640))
	pc := p.Client(t)
	for i := 0; i < 27000; i++ {
		p.AddTask(DefaultNamespace, fmt.Sprintf("task-%06d", i), uint32(10000+i))
	}
	_, err = pc.TaskService().List(ctx, &tasksapi.ListTasksRequest{})
	wantCode(t, err, codes.ResourceExhausted)
	l, err = pc.TaskService().List(ctx, &tasksapi.ListTasksRequest{}, grpc.MaxCallRecvMsgSize(64<<20))
	if err != nil || len(l.Tasks) != 27000 {
		t.Fatalf("list with a larger limit: %d tasks, %v", len(l.GetTasks()), err)
	}
}

// TestSetNextPid hands out a chosen pid to the next create and exec start,
// and again after it was freed (pid reuse).
func TestSetNextPid(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := nsCtx()
	ts := c.TaskService()

	s.SetNextPid(500)
	cr, err := ts.Create(ctx, &tasksapi.CreateTaskRequest{ContainerID: "a"})
	if err != nil || cr.Pid != 500 {
		t.Fatalf("create: %v %v", cr, err)
	}
	if _, err := ts.Start(ctx, &tasksapi.StartRequest{ContainerID: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.Exec(ctx, &tasksapi.ExecProcessRequest{ContainerID: "a", ExecID: "e"}); err != nil {
		t.Fatal(err)
	}
	if sr, err := ts.Start(ctx, &tasksapi.StartRequest{ContainerID: "a", ExecID: "e"}); err != nil || sr.Pid != 501 {
		t.Fatalf("exec start: %v %v", sr, err)
	}
	s.Exit(DefaultNamespace, "a", "", 0, false)
	if _, err := ts.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: "a"}); err != nil {
		t.Fatal(err)
	}
	s.SetNextPid(500)
	if pid, err := s.CreateTask(DefaultNamespace, "b"); err != nil || pid != 500 {
		t.Fatalf("reused pid: %d %v", pid, err)
	}
	// AddTask still moves it past a pid it is given.
	s.AddTask(DefaultNamespace, "c", 900)
	if pid, err := s.CreateTask(DefaultNamespace, "d"); err != nil || pid != 901 {
		t.Fatalf("after AddTask: %d %v", pid, err)
	}
}

// TestExitAt stamps an exit with the given time everywhere containerd shows
// it: the TaskExit, Get, Wait and the delete's answer.
func TestExitAt(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ev := subscribe(t, s, c, 1, tasksFilter)
	ctx := nsCtx()
	ts := c.TaskService()
	s.AddTask(DefaultNamespace, "a", 42)
	at := time.Now().Add(-time.Hour).UTC()
	s.ExitAt(DefaultNamespace, "a", "", 7, at, true)
	if topic, v := ev.next(t); topic != "/tasks/exit" || !v.(*eventtypes.TaskExit).ExitedAt.AsTime().Equal(at) || v.(*eventtypes.TaskExit).ExitStatus != 7 {
		t.Fatalf("got %s %v", topic, v)
	}
	g, err := ts.Get(ctx, &tasksapi.GetRequest{ContainerID: "a"})
	if err != nil || !g.Process.ExitedAt.AsTime().Equal(at) || g.Process.ExitStatus != 7 {
		t.Fatalf("get: %v %v", g, err)
	}
	w, err := ts.Wait(ctx, &tasksapi.WaitRequest{ContainerID: "a"})
	if err != nil || !w.ExitedAt.AsTime().Equal(at) {
		t.Fatalf("wait: %v %v", w, err)
	}
	d, err := ts.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: "a"})
	if err != nil || !d.ExitedAt.AsTime().Equal(at) || d.ExitStatus != 7 {
		t.Fatalf("delete: %v %v", d, err)
	}
	// The first exit stays.
	s.AddTask(DefaultNamespace, "b", 43)
	s.ExitAt(DefaultNamespace, "b", "", 1, at, false)
	s.ExitAt(DefaultNamespace, "b", "", 2, at.Add(time.Minute), false)
	if st, ok := s.Process(DefaultNamespace, "b", ""); !ok || st.ExitStatus != 1 || !st.ExitedAt.Equal(at) {
		t.Fatalf("process: %+v %v", st, ok)
	}
}

// TestDeleteLag takes the task off the table (Get NotFound, TaskDelete
// published) before the Delete answers; an exec's delete is not delayed.
func TestDeleteLag(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ev := subscribe(t, s, c, 1, tasksFilter)
	ctx := nsCtx()
	ts := c.TaskService()
	s.AddTask(DefaultNamespace, "a", 42)
	s.AddExec(DefaultNamespace, "a", "x", 43)
	s.Exit(DefaultNamespace, "a", "x", 0, false)
	s.Exit(DefaultNamespace, "a", "", 9, false)
	const lag = 200 * time.Millisecond
	s.SetDeleteLag(lag)

	began := time.Now()
	if _, err := ts.DeleteProcess(ctx, &tasksapi.DeleteProcessRequest{ContainerID: "a", ExecID: "x"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d >= lag {
		t.Fatalf("exec delete took %s", d)
	}
	if topic, _ := ev.next(t); topic != "/tasks/delete" {
		t.Fatalf("got %s", topic)
	}

	gone := s.Gone(DefaultNamespace, "a", "")
	answer := make(chan *tasksapi.DeleteResponse, 1)
	began = time.Now()
	go func() {
		d, err := ts.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: "a"})
		if err != nil {
			t.Error(err)
		}
		answer <- d
	}()
	<-gone
	_, err := ts.Get(ctx, &tasksapi.GetRequest{ContainerID: "a"})
	wantCode(t, err, codes.NotFound) // during the lag
	if topic, v := ev.next(t); topic != "/tasks/delete" || v.(*eventtypes.TaskDelete).ExitStatus != 9 {
		t.Fatalf("got %s %v", topic, v)
	}
	select {
	case d := <-answer:
		t.Fatalf("answered %v before the lag", d)
	default:
	}
	if d := <-answer; d == nil || d.ExitStatus != 9 || time.Since(began) < lag {
		t.Fatalf("answer %v after %s", d, time.Since(began))
	}

	// A caller that gives up gets its context's error.
	s.AddTask(DefaultNamespace, "b", 44)
	s.Exit(DefaultNamespace, "b", "", 0, false)
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, err = ts.Delete(short, &tasksapi.DeleteTaskRequest{ContainerID: "b"})
	wantCode(t, err, codes.DeadlineExceeded)
	if _, ok := s.Process(DefaultNamespace, "b", ""); ok {
		t.Fatal("task still there after a delete whose answer was lost")
	}
}

// TestRuncShimEvents publishes no TaskDelete for an exec's delete, by RPC
// or by another client; a task's delete still publishes one.
func TestRuncShimEvents(t *testing.T) {
	s := Start(t, WithRuncShimEvents())
	c := s.Client(t)
	ev := subscribe(t, s, c, 1, tasksFilter)
	ctx := nsCtx()
	ts := c.TaskService()
	s.AddTask(DefaultNamespace, "a", 42)
	s.AddExec(DefaultNamespace, "a", "x", 43)
	s.AddExec(DefaultNamespace, "a", "y", 44)
	s.Exit(DefaultNamespace, "a", "x", 0, false)
	s.Exit(DefaultNamespace, "a", "y", 0, false)
	if _, err := ts.DeleteProcess(ctx, &tasksapi.DeleteProcessRequest{ContainerID: "a", ExecID: "x"}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteProcess(DefaultNamespace, "a", "y"); err != nil {
		t.Fatal(err)
	}
	ev.quiet(t)
	s.Exit(DefaultNamespace, "a", "", 0, false)
	if _, err := ts.Delete(ctx, &tasksapi.DeleteTaskRequest{ContainerID: "a"}); err != nil {
		t.Fatal(err)
	}
	if topic, _ := ev.next(t); topic != "/tasks/delete" {
		t.Fatalf("got %s", topic)
	}
}

// TestAnotherClient drives a lifecycle without RPCs: the table changes and
// the events are those the RPCs make, errors are the RPCs', nothing is
// counted, and it works while the server is stopped.
func TestAnotherClient(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ev := subscribe(t, s, c, 1, tasksFilter)
	const ns = DefaultNamespace

	pid, err := s.CreateTask(ns, "a")
	if err != nil {
		t.Fatal(err)
	}
	if topic, v := ev.next(t); topic != "/tasks/create" || v.(*eventtypes.TaskCreate).Pid != pid {
		t.Fatalf("got %s %v", topic, v)
	}
	_, err = s.CreateTask(ns, "a")
	wantCode(t, err, codes.AlreadyExists)
	err = s.ExecProcess(ns, "a", "e")
	wantCode(t, err, codes.FailedPrecondition) // not running yet
	if got, err := s.StartProcess(ns, "a", ""); err != nil || got != pid {
		t.Fatalf("start: %d %v", got, err)
	}
	if topic, _ := ev.next(t); topic != "/tasks/start" {
		t.Fatalf("got %s", topic)
	}
	if err := s.ExecProcess(ns, "a", "e"); err != nil {
		t.Fatal(err)
	}
	if topic, _ := ev.next(t); topic != "/tasks/exec-added" {
		t.Fatalf("got %s", topic)
	}
	epid, err := s.StartProcess(ns, "a", "e")
	if err != nil || epid == pid {
		t.Fatalf("exec start: %d %v", epid, err)
	}
	if topic, v := ev.next(t); topic != "/tasks/exec-started" || v.(*eventtypes.TaskExecStarted).Pid != epid {
		t.Fatalf("got %s %v", topic, v)
	}
	err = s.DeleteProcess(ns, "a", "e")
	wantCode(t, err, codes.FailedPrecondition) // still running
	s.Exit(ns, "a", "e", 1, true)
	if topic, _ := ev.next(t); topic != "/tasks/exit" {
		t.Fatalf("got %s", topic)
	}
	if err := s.DeleteProcess(ns, "a", "e"); err != nil {
		t.Fatal(err)
	}
	if topic, v := ev.next(t); topic != "/tasks/delete" || v.(*eventtypes.TaskDelete).ID != "e" {
		t.Fatalf("got %s %v", topic, v)
	}
	s.Exit(ns, "a", "", 2, true)
	if topic, _ := ev.next(t); topic != "/tasks/exit" {
		t.Fatalf("got %s", topic)
	}
	if err := s.DeleteProcess(ns, "a", ""); err != nil {
		t.Fatal(err)
	}
	if topic, v := ev.next(t); topic != "/tasks/delete" || v.(*eventtypes.TaskDelete).ExitStatus != 2 {
		t.Fatalf("got %s %v", topic, v)
	}
	err = s.DeleteProcess(ns, "a", "")
	wantCode(t, err, codes.NotFound)
	for _, m := range []string{"Create", "Start", "Exec", "Delete", "DeleteProcess"} {
		if n := s.Calls(m); n != 0 {
			t.Errorf("%s counted %d times", m, n)
		}
	}

	s.Stop()
	if _, err := s.CreateTask(ns, "b"); err != nil {
		t.Fatalf("create while stopped: %v", err)
	}
	if _, ok := s.Process(ns, "b", ""); !ok {
		t.Fatal("task made while stopped is not in the table")
	}
}

// TestStreamGap loses what is published between a stream's break and the
// new subscription's registration, which waits for the gap to end.
func TestStreamGap(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ev := subscribe(t, s, c, 1, tasksFilter)
	s.AddTask(DefaultNamespace, "a", 42)
	var during stream
	s.StreamGap(func() {
		wantCode(t, ev.ended(t), codes.Unavailable)
		s.Exit(DefaultNamespace, "a", "", 3, true) // lost: nobody subscribed
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		ch, errs := c.EventService().Subscribe(ctx, tasksFilter)
		during = stream{ch, errs}
		waitFor(t, "subscribe reached the server", func() bool { return s.Calls("Subscribe") == 2 })
		if n := s.Subscribers(); n != 0 {
			t.Errorf("%d subscribers during the gap", n)
		}
	})
	waitFor(t, "subscription registered", func() bool { return s.Subscribers() == 1 })
	during.quiet(t)
	s.Publish(DefaultNamespace, "/tasks/oom", &eventtypes.TaskOOM{ContainerID: "a"})
	if topic, _ := during.next(t); topic != "/tasks/oom" {
		t.Fatalf("got %s", topic)
	}

	// Paused by hand: a Subscribe waiting at the gate ends with the
	// server, which stops without waiting for it.
	s.PauseSubscriptions()
	s.BreakStreams()
	if err := during.ended(t); err == nil {
		t.Fatal("stream ended without an error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, errs := c.EventService().Subscribe(ctx, tasksFilter)
	waiting := stream{ch, errs}
	waitFor(t, "subscribe reached the server", func() bool { return s.Calls("Subscribe") == 3 })
	s.Stop()
	if err := waiting.ended(t); err == nil {
		t.Fatal("waiting stream ended without an error")
	}
	s.ResumeSubscriptions()
}

// TestProcessAndGone looks at the table without RPCs, and wakes a test the
// moment a process leaves it.
func TestProcessAndGone(t *testing.T) {
	s := Start(t)
	const ns = DefaultNamespace
	if _, ok := s.Process(ns, "a", ""); ok {
		t.Fatal("a process in an empty table")
	}
	select {
	case <-s.Gone(ns, "a", ""):
	default:
		t.Fatal("Gone of no process is not closed")
	}
	s.AddTask(ns, "a", 42)
	s.AddExec(ns, "a", "x", 43)
	if st, ok := s.Process(ns, "a", "x"); !ok || st.Pid != 43 || st.Status != tasktypes.Status_RUNNING || !st.ExitedAt.IsZero() {
		t.Fatalf("process: %+v %v", st, ok)
	}
	task, exec := s.Gone(ns, "a", ""), s.Gone(ns, "a", "x")
	s.Exit(ns, "a", "", 0, false)
	select {
	case <-task:
		t.Fatal("an exit is not a removal")
	default:
	}
	if err := s.DeleteProcess(ns, "a", ""); err != nil {
		t.Fatal(err)
	}
	<-task
	<-exec // the task's execs go with it
	s.AddTask(ns, "a", 44)
	again := s.Gone(ns, "a", "")
	s.Vanish(ns, "a", "")
	<-again
}

// TestKill leaves the socket file behind, as a SIGKILLed containerd does:
// calls fail at once with Unavailable (connection refused) rather than wait
// for the socket to come back, and Restart serves on it again.
func TestKill(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	s.AddTask(DefaultNamespace, "a", 5)
	s.Kill()
	if _, err := os.Stat(s.Address()); err != nil {
		t.Fatalf("socket after Kill: %v", err)
	}
	for i := 0; i < 3; i++ {
		began := time.Now()
		_, err := c.TaskService().Get(nsCtx(), &tasksapi.GetRequest{ContainerID: "a"})
		wantCode(t, err, codes.Unavailable)
		if d := time.Since(began); d > 500*time.Millisecond {
			t.Fatalf("a call while killed took %s", d)
		}
	}
	s.Restart()
	ctx, cancel := context.WithTimeout(nsCtx(), 10*time.Second)
	defer cancel()
	if _, err := c.TaskService().Get(ctx, &tasksapi.GetRequest{ContainerID: "a"}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("get after restart: %v", err)
	}
	s.Stop()
	if _, err := os.Stat(s.Address()); !os.IsNotExist(err) {
		t.Fatalf("socket after Stop: %v", err)
	}
}
