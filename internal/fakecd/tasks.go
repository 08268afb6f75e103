package fakecd

import (
	"context"
	"fmt"
	"sort"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/protobuf"
	"github.com/containerd/containerd/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// task is one container's task: its init and its execs.
type task struct {
	id    string
	init  *proc
	execs map[string]*proc
}

// proc is one process of a task.
type proc struct {
	id         string
	pid        uint32
	status     tasktypes.Status
	exitStatus uint32
	exitedAt   time.Time
	stdin      string
	stdout     string
	stderr     string
	terminal   bool
	// done is closed once the process has stopped or is gone, to wake Wait.
	done   chan struct{}
	closed bool
	// gone is set when the process left the table (deleted or vanished), so
	// a Wait woken by that answers NotFound.
	gone bool
	// removed is closed when the process leaves the table (Gone).
	removed chan struct{}
}

func newProc(id string, pid uint32, st tasktypes.Status) *proc {
	return &proc{id: id, pid: pid, status: st, done: make(chan struct{}), removed: make(chan struct{})}
}

func (p *proc) wake() {
	if !p.closed {
		p.closed = true
		close(p.done)
	}
}

// stop records an exit at the current time; it reports false if the
// process had already stopped (a process exits once: the first status
// stays).
func (p *proc) stop(code uint32) bool { return p.stopAt(code, time.Now().UTC()) }

// stopAt records an exit at time at (the shim's wall clock, which can step).
func (p *proc) stopAt(code uint32, at time.Time) bool {
	if p.status == tasktypes.Status_STOPPED {
		return false
	}
	p.status, p.exitStatus, p.exitedAt = tasktypes.Status_STOPPED, code, at.UTC()
	p.wake()
	return true
}

func (p *proc) alive() bool {
	return p.status != tasktypes.Status_STOPPED
}

// state is p as Get and List answer it (ID only, as containerd's
// getProcessState: ContainerID stays empty).
func (p *proc) state(padding string) *tasktypes.Process {
	out := &tasktypes.Process{
		ID:         p.id,
		Pid:        p.pid,
		Status:     p.status,
		Stdin:      p.stdin,
		Stdout:     p.stdout + padding,
		Stderr:     p.stderr,
		Terminal:   p.terminal,
		ExitStatus: p.exitStatus,
	}
	if !p.exitedAt.IsZero() {
		out.ExitedAt = protobuf.ToTimestamp(p.exitedAt)
	}
	return out
}

func (p *proc) exitEvent(containerID string) *eventtypes.TaskExit {
	return &eventtypes.TaskExit{
		ContainerID: containerID,
		ID:          p.id,
		Pid:         p.pid,
		ExitStatus:  p.exitStatus,
		ExitedAt:    protobuf.ToTimestamp(p.exitedAt),
	}
}

// AddTask puts a running init with pid into the table, as a task that was
// there before the client came.
func (s *Server) AddTask(ns, containerID string, pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tasks[ns] == nil {
		s.tasks[ns] = map[string]*task{}
	}
	if _, ok := s.tasks[ns][containerID]; ok {
		panic(fmt.Sprintf("fakecd: AddTask: task %s/%s exists", ns, containerID))
	}
	s.tasks[ns][containerID] = &task{
		id:    containerID,
		init:  newProc(containerID, pid, tasktypes.Status_RUNNING),
		execs: map[string]*proc{},
	}
	s.bumpPid(pid)
}

// AddExec puts a running exec with pid into an existing task.
func (s *Server) AddExec(ns, containerID, execID string, pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tasks[ns][containerID]
	if t == nil {
		panic(fmt.Sprintf("fakecd: AddExec: no task %s/%s", ns, containerID))
	}
	if _, ok := t.execs[execID]; ok || execID == "" {
		panic(fmt.Sprintf("fakecd: AddExec: bad or existing exec %q in %s/%s", execID, ns, containerID))
	}
	t.execs[execID] = newProc(execID, pid, tasktypes.Status_RUNNING)
	s.bumpPid(pid)
}

// bumpPid keeps assigned pids clear of the ones tests chose.
func (s *Server) bumpPid(pid uint32) {
	if pid >= s.nextPid {
		s.nextPid = pid + 1
	}
}

// lookup finds a process; execID "" is the init.
func (s *Server) lookup(ns, containerID, execID string) (*task, *proc) {
	t := s.tasks[ns][containerID]
	if t == nil {
		return nil, nil
	}
	if execID == "" {
		return t, t.init
	}
	return t, t.execs[execID]
}

// Exit stops a process with code and the current time. With publish a
// TaskExit is published, as the shim does; without, the exit is only seen by
// Get, List and Wait (an event the stream lost). The first exit of a process
// stays: Exit on a stopped one changes nothing but, with publish, publishes
// its exit again (a duplicate event). Exiting an init leaves its execs as
// they are. It panics if there is no such process.
func (s *Server) Exit(ns, containerID, execID string, code uint32, publish bool) {
	s.ExitAt(ns, containerID, execID, code, time.Now(), publish)
}

// ExitAt is Exit with the exit time the shim stamps: a test steps the
// shim's wall clock (an NTP step, a VM resume) by passing a time before an
// earlier exit's. The time shows in the TaskExit, Get, List, Wait and the
// delete's answer, as containerd's do.
func (s *Server) ExitAt(ns, containerID, execID string, code uint32, at time.Time, publish bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, p := s.lookup(ns, containerID, execID)
	if p == nil {
		panic(fmt.Sprintf("fakecd: Exit: no process %s/%s/%s", ns, containerID, execID))
	}
	p.stopAt(code, at)
	if publish {
		s.publishLocked(ns, runtime.TaskExitEventTopic, p.exitEvent(containerID))
	}
}

// Vanish removes a process (the whole task when execID is ""), as when its
// shim died while containerd was down: Get and Delete answer NotFound, List
// omits it, a pending Wait answers NotFound, and no event is published.
func (s *Server) Vanish(ns, containerID, execID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, p := s.lookup(ns, containerID, execID)
	if p == nil {
		return
	}
	if execID != "" {
		s.drop(p)
		delete(t.execs, execID)
		return
	}
	s.removeTask(ns, t)
}

func (s *Server) drop(p *proc) {
	if p.gone {
		return
	}
	p.gone = true
	p.wake()
	close(p.removed)
}

func (s *Server) removeTask(ns string, t *task) {
	for _, e := range t.execs {
		s.drop(e)
	}
	s.drop(t.init)
	delete(s.tasks[ns], t.id)
}

// taskService is the default behaviour of containerd.services.tasks.v1.
type taskService struct {
	tasksapi.UnimplementedTasksServer
	s *Server
}

func namespaceOf(ctx context.Context) (string, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return "", errdefs.ToGRPC(err)
	}
	return ns, nil
}

func taskNotFound(id string) error {
	return status.Errorf(codes.NotFound, "task %v not found", id)
}

func processNotFound(id string) error {
	return status.Errorf(codes.NotFound, "process %s does not exist: not found", id)
}

// find locks s and looks a process up, answering containerd's NotFound
// errors; on success the caller holds s.mu and must unlock it.
func (ts *taskService) find(ctx context.Context, containerID, execID string) (string, *task, *proc, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return "", nil, nil, err
	}
	ts.s.mu.Lock()
	t, p, err := ts.s.findLocked(ns, containerID, execID)
	if err != nil {
		ts.s.mu.Unlock()
		return "", nil, nil, err
	}
	return ns, t, p, nil
}

// findLocked looks a process up with s.mu held, answering containerd's
// NotFound errors.
func (s *Server) findLocked(ns, containerID, execID string) (*task, *proc, error) {
	t, p := s.lookup(ns, containerID, execID)
	switch {
	case t == nil:
		return nil, nil, taskNotFound(containerID)
	case p == nil:
		return nil, nil, processNotFound(execID)
	}
	return t, p, nil
}

// Create makes a created task; unlike containerd it needs no container
// record, so tests can skip NewContainer.
func (ts *taskService) Create(ctx context.Context, r *tasksapi.CreateTaskRequest) (*tasksapi.CreateTaskResponse, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	s := ts.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.createLocked(ns, r)
}

func (s *Server) createLocked(ns string, r *tasksapi.CreateTaskRequest) (*tasksapi.CreateTaskResponse, error) {
	if _, ok := s.tasks[ns][r.ContainerID]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "task %s: already exists", r.ContainerID)
	}
	if r.ContainerID == "" {
		return nil, status.Errorf(codes.InvalidArgument, "container id must not be empty")
	}
	p := newProc(r.ContainerID, s.takePid(), tasktypes.Status_CREATED)
	p.stdin, p.stdout, p.stderr, p.terminal = r.Stdin, r.Stdout, r.Stderr, r.Terminal
	if s.tasks[ns] == nil {
		s.tasks[ns] = map[string]*task{}
	}
	s.tasks[ns][r.ContainerID] = &task{id: r.ContainerID, init: p, execs: map[string]*proc{}}
	s.publishLocked(ns, runtime.TaskCreateEventTopic, &eventtypes.TaskCreate{
		ContainerID: r.ContainerID,
		Rootfs:      r.Rootfs,
		IO:          &eventtypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Pid:         p.pid,
	})
	return &tasksapi.CreateTaskResponse{ContainerID: r.ContainerID, Pid: p.pid}, nil
}

// takePid hands out the next pid (see SetNextPid).
func (s *Server) takePid() uint32 {
	pid := s.nextPid
	s.nextPid++
	return pid
}

// Start runs a created init or exec; an exec gets its pid here, as runc's do.
func (ts *taskService) Start(ctx context.Context, r *tasksapi.StartRequest) (*tasksapi.StartResponse, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	s := ts.s
	s.mu.Lock()
	defer s.mu.Unlock()
	pid, err := s.startLocked(ns, r.ContainerID, r.ExecID)
	if err != nil {
		return nil, err
	}
	return &tasksapi.StartResponse{Pid: pid}, nil
}

func (s *Server) startLocked(ns, containerID, execID string) (uint32, error) {
	t, p, err := s.findLocked(ns, containerID, execID)
	if err != nil {
		return 0, err
	}
	if p.status != tasktypes.Status_CREATED {
		return 0, status.Errorf(codes.FailedPrecondition, "cannot start a %s process", statusName(p.status))
	}
	if execID == "" {
		p.status = tasktypes.Status_RUNNING
		s.publishLocked(ns, runtime.TaskStartEventTopic, &eventtypes.TaskStart{ContainerID: t.id, Pid: p.pid})
		return p.pid, nil
	}
	if t.init.status != tasktypes.Status_RUNNING {
		return 0, status.Errorf(codes.FailedPrecondition, "container %s is not running", t.id)
	}
	p.pid = s.takePid()
	p.status = tasktypes.Status_RUNNING
	s.publishLocked(ns, runtime.TaskExecStartedEventTopic, &eventtypes.TaskExecStarted{ContainerID: t.id, ExecID: p.id, Pid: p.pid})
	return p.pid, nil
}

func statusName(st tasktypes.Status) string {
	switch st {
	case tasktypes.Status_CREATED:
		return "created"
	case tasktypes.Status_RUNNING:
		return "running"
	case tasktypes.Status_STOPPED:
		return "stopped"
	case tasktypes.Status_PAUSED:
		return "paused"
	}
	return "unknown"
}

// deleteAnswer is the answer of Delete and DeleteProcess; a created process
// never ran, so it is given an exit time now.
func deleteAnswer(p *proc) *tasksapi.DeleteResponse {
	if p.exitedAt.IsZero() {
		p.exitedAt = time.Now().UTC()
	}
	return &tasksapi.DeleteResponse{
		Pid:        p.pid,
		ExitStatus: p.exitStatus,
		ExitedAt:   protobuf.ToTimestamp(p.exitedAt),
	}
}

// Delete removes a stopped (or never started) task with its execs. With a
// delete lag (SetDeleteLag) the task leaves the table at once and the
// answer comes that much later, as containerd's does.
func (ts *taskService) Delete(ctx context.Context, r *tasksapi.DeleteTaskRequest) (*tasksapi.DeleteResponse, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	s := ts.s
	s.mu.Lock()
	resp, err := s.deleteLocked(ns, r.ContainerID, "")
	lag := s.deleteLag
	s.mu.Unlock()
	if err != nil || lag == 0 {
		return resp, err
	}
	timer := time.NewTimer(lag)
	defer timer.Stop()
	select {
	case <-timer.C:
		return resp, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// DeleteProcess removes a stopped (or never started) exec.
func (ts *taskService) DeleteProcess(ctx context.Context, r *tasksapi.DeleteProcessRequest) (*tasksapi.DeleteResponse, error) {
	if r.ExecID == "" {
		return nil, status.Errorf(codes.InvalidArgument, "exec id must not be empty")
	}
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	s := ts.s
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deleteLocked(ns, r.ContainerID, r.ExecID)
}

// deleteLocked removes a task (execID "") with its execs, or one exec.
// TaskDelete is published for a task, and for an exec unless the server
// publishes as the runc shim does (WithRuncShimEvents).
func (s *Server) deleteLocked(ns, containerID, execID string) (*tasksapi.DeleteResponse, error) {
	t, p, err := s.findLocked(ns, containerID, execID)
	if err != nil {
		return nil, err
	}
	if execID == "" {
		if p.status == tasktypes.Status_RUNNING || p.status == tasktypes.Status_PAUSED {
			return nil, status.Errorf(codes.FailedPrecondition, "task %s must be stopped before deletion: %s", t.id, statusName(p.status))
		}
	} else if p.alive() && p.status != tasktypes.Status_CREATED {
		return nil, status.Errorf(codes.FailedPrecondition, "process %s must be stopped before deletion: %s", p.id, statusName(p.status))
	}
	resp := deleteAnswer(p)
	if execID == "" {
		s.removeTask(ns, t)
	} else {
		resp.ID = p.id
		s.drop(p)
		delete(t.execs, p.id)
		if s.runcEvents {
			return resp, nil
		}
	}
	s.publishLocked(ns, runtime.TaskDeleteEventTopic, &eventtypes.TaskDelete{
		ContainerID: t.id, ID: p.id, Pid: resp.Pid, ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt,
	})
	return resp, nil
}

// Get answers one process's state.
func (ts *taskService) Get(ctx context.Context, r *tasksapi.GetRequest) (*tasksapi.GetResponse, error) {
	_, _, p, err := ts.find(ctx, r.ContainerID, r.ExecID)
	if err != nil {
		return nil, err
	}
	defer ts.s.mu.Unlock()
	return &tasksapi.GetResponse{Process: p.state("")}, nil
}

// List answers every init of the request's namespace, by container ID.
// Filters are ignored, as containerd does.
func (ts *taskService) List(ctx context.Context, _ *tasksapi.ListTasksRequest) (*tasksapi.ListTasksResponse, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	s := ts.s
	s.mu.Lock()
	out := make([]*tasktypes.Process, 0, len(s.tasks[ns]))
	for _, t := range s.tasks[ns] {
		out = append(out, t.init.state(s.padding))
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return &tasksapi.ListTasksResponse{Tasks: out}, nil
}

// Kill signals a process. Signal 0 only checks it is alive; any other
// signal stops it with 128+signal and publishes its TaskExit. With All on
// the init, the task's live execs are killed too (their exits published
// first). Killing a stopped process answers NotFound, as runc's shim does.
func (ts *taskService) Kill(ctx context.Context, r *tasksapi.KillRequest) (*emptypb.Empty, error) {
	ns, t, p, err := ts.find(ctx, r.ContainerID, r.ExecID)
	if err != nil {
		return nil, err
	}
	s := ts.s
	defer s.mu.Unlock()
	if !p.alive() {
		return nil, status.Errorf(codes.NotFound, "process already finished: not found")
	}
	if r.Signal == 0 {
		return &emptypb.Empty{}, nil
	}
	if r.All && r.ExecID == "" {
		ids := make([]string, 0, len(t.execs))
		for id := range t.execs {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if e := t.execs[id]; e.stop(128 + r.Signal) {
				s.publishLocked(ns, runtime.TaskExitEventTopic, e.exitEvent(t.id))
			}
		}
	}
	p.stop(128 + r.Signal)
	s.publishLocked(ns, runtime.TaskExitEventTopic, p.exitEvent(t.id))
	return &emptypb.Empty{}, nil
}

// Exec adds a created exec to a running task.
func (ts *taskService) Exec(ctx context.Context, r *tasksapi.ExecProcessRequest) (*emptypb.Empty, error) {
	ns, err := namespaceOf(ctx)
	if err != nil {
		return nil, err
	}
	s := ts.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.execLocked(ns, r); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (s *Server) execLocked(ns string, r *tasksapi.ExecProcessRequest) error {
	if r.ExecID == "" {
		return status.Errorf(codes.InvalidArgument, "exec id cannot be empty")
	}
	t, _, err := s.findLocked(ns, r.ContainerID, "")
	if err != nil {
		return err
	}
	if _, ok := t.execs[r.ExecID]; ok {
		return status.Errorf(codes.AlreadyExists, "id %s: already exists", r.ExecID)
	}
	if t.init.status != tasktypes.Status_RUNNING {
		return status.Errorf(codes.FailedPrecondition, "container %s is not running: %s", t.id, statusName(t.init.status))
	}
	p := newProc(r.ExecID, 0, tasktypes.Status_CREATED)
	p.stdin, p.stdout, p.stderr, p.terminal = r.Stdin, r.Stdout, r.Stderr, r.Terminal
	t.execs[r.ExecID] = p
	s.publishLocked(ns, runtime.TaskExecAddedEventTopic, &eventtypes.TaskExecAdded{ContainerID: t.id, ExecID: r.ExecID})
	return nil
}

// ResizePty only checks the process exists.
func (ts *taskService) ResizePty(ctx context.Context, r *tasksapi.ResizePtyRequest) (*emptypb.Empty, error) {
	if _, _, _, err := ts.find(ctx, r.ContainerID, r.ExecID); err != nil {
		return nil, err
	}
	ts.s.mu.Unlock()
	return &emptypb.Empty{}, nil
}

// CloseIO only checks the process exists.
func (ts *taskService) CloseIO(ctx context.Context, r *tasksapi.CloseIORequest) (*emptypb.Empty, error) {
	if _, _, _, err := ts.find(ctx, r.ContainerID, r.ExecID); err != nil {
		return nil, err
	}
	ts.s.mu.Unlock()
	return &emptypb.Empty{}, nil
}

// Update only checks the task exists.
func (ts *taskService) Update(ctx context.Context, r *tasksapi.UpdateTaskRequest) (*emptypb.Empty, error) {
	if _, _, _, err := ts.find(ctx, r.ContainerID, ""); err != nil {
		return nil, err
	}
	ts.s.mu.Unlock()
	return &emptypb.Empty{}, nil
}

// Pause pauses a running task.
func (ts *taskService) Pause(ctx context.Context, r *tasksapi.PauseTaskRequest) (*emptypb.Empty, error) {
	return ts.flip(ctx, r.ContainerID, tasktypes.Status_RUNNING, tasktypes.Status_PAUSED,
		runtime.TaskPausedEventTopic, &eventtypes.TaskPaused{ContainerID: r.ContainerID})
}

// Resume resumes a paused task.
func (ts *taskService) Resume(ctx context.Context, r *tasksapi.ResumeTaskRequest) (*emptypb.Empty, error) {
	return ts.flip(ctx, r.ContainerID, tasktypes.Status_PAUSED, tasktypes.Status_RUNNING,
		runtime.TaskResumedEventTopic, &eventtypes.TaskResumed{ContainerID: r.ContainerID})
}

func (ts *taskService) flip(ctx context.Context, id string, from, to tasktypes.Status, topic string, ev proto.Message) (*emptypb.Empty, error) {
	ns, _, p, err := ts.find(ctx, id, "")
	if err != nil {
		return nil, err
	}
	defer ts.s.mu.Unlock()
	if p.status != from {
		return nil, status.Errorf(codes.FailedPrecondition, "task %s is %s, not %s", id, statusName(p.status), statusName(from))
	}
	p.status = to
	ts.s.publishLocked(ns, topic, ev)
	return &emptypb.Empty{}, nil
}

// ListPids answers the pids of the task's live processes.
func (ts *taskService) ListPids(ctx context.Context, r *tasksapi.ListPidsRequest) (*tasksapi.ListPidsResponse, error) {
	_, t, _, err := ts.find(ctx, r.ContainerID, "")
	if err != nil {
		return nil, err
	}
	defer ts.s.mu.Unlock()
	resp := &tasksapi.ListPidsResponse{}
	for _, p := range append([]*proc{t.init}, sortedExecs(t)...) {
		if p.alive() && p.pid != 0 {
			resp.Processes = append(resp.Processes, &tasktypes.ProcessInfo{Pid: p.pid})
		}
	}
	return resp, nil
}

func sortedExecs(t *task) []*proc {
	out := make([]*proc, 0, len(t.execs))
	for _, e := range t.execs {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// Metrics answers no metrics: the fake has no cgroups.
func (ts *taskService) Metrics(ctx context.Context, _ *tasksapi.MetricsRequest) (*tasksapi.MetricsResponse, error) {
	if _, err := namespaceOf(ctx); err != nil {
		return nil, err
	}
	return &tasksapi.MetricsResponse{}, nil
}

// Wait blocks until the process has stopped, answering NotFound if it goes
// away first.
func (ts *taskService) Wait(ctx context.Context, r *tasksapi.WaitRequest) (*tasksapi.WaitResponse, error) {
	_, _, p, err := ts.find(ctx, r.ContainerID, r.ExecID)
	if err != nil {
		return nil, err
	}
	done := p.done
	ts.s.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	ts.s.mu.Lock()
	defer ts.s.mu.Unlock()
	if p.gone && p.status != tasktypes.Status_STOPPED {
		return nil, processNotFound(p.id)
	}
	return &tasksapi.WaitResponse{ExitStatus: p.exitStatus, ExitedAt: protobuf.ToTimestamp(p.exitedAt)}, nil
}
