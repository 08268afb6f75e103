package fakecd

import (
	"time"

	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
)

// WithRuncShimEvents makes the server publish what containerd's runc shim
// publishes where the default differs: deleting an exec (DeleteProcess)
// publishes no TaskDelete. The runc shim publishes TaskDelete only for the
// init's task (runtime/v2/runc/task/service.go), so nothing on the stream
// tells a client that another client's exec is gone.
func WithRuncShimEvents() Option {
	return func(s *Server) { s.runcEvents = true }
}

// SetNextPid sets the pid the next Create (or CreateTask) and the next
// exec Start (or StartProcess) hand out; later ones count up from it. A
// test reuses a pid this way (the kernel does: pid_max is often 32768), or
// points a task at a real process of its own. AddTask and AddExec still
// move it past the pids they are given. Nothing stops two live processes
// from sharing a pid: that is the test's choice.
func (s *Server) SetNextPid(pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextPid = pid
}

// SetDeleteLag makes a task's Delete answer d after the task left the
// table, as containerd does: it takes the task off its list (Get and List
// answer NotFound, Wait is woken, TaskDelete is published) before the shim
// shuts down and the bundle is removed, and answers only then, so a
// NotFound can overtake the answer that carries the exit status. The
// answer also ends early with the caller's context. 0 (the default)
// answers at once. DeleteProcess answers at once either way: an exec's
// delete shuts no shim down.
func (s *Server) SetDeleteLag(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteLag = d
}

// ProcessState is what the table holds of one process.
type ProcessState struct {
	Pid        uint32
	Status     tasktypes.Status
	ExitStatus uint32
	ExitedAt   time.Time // zero until it stopped
}

// Process answers what the table holds of a process (execID "" for the
// init), and false if there is none, without an RPC: a test's look at
// containerd's state that no hook sees and Calls does not count.
func (s *Server) Process(ns, containerID, execID string) (ProcessState, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, p := s.lookup(ns, containerID, execID)
	if p == nil {
		return ProcessState{}, false
	}
	return ProcessState{Pid: p.pid, Status: p.status, ExitStatus: p.exitStatus, ExitedAt: p.exitedAt}, true
}

// Gone returns a channel that is closed when the process now in the table
// under (containerID, execID) leaves it (deleted, vanished, or its task
// deleted), so a test can act the moment a delete took effect; it is closed
// already if there is no such process. A process created later under the
// same IDs has a channel of its own.
func (s *Server) Gone(ns, containerID, execID string) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, p := s.lookup(ns, containerID, execID)
	if p == nil {
		closed := make(chan struct{})
		close(closed)
		return closed
	}
	return p.removed
}

// Another client's calls. CreateTask, StartProcess, ExecProcess and
// DeleteProcess do what the tasks RPC of the same name does when another
// client of containerd sends it (the table changes, the same events are
// published, the same gRPC errors come back) without an RPC: no hook runs,
// Calls does not count them, no delete lag applies, and they work while the
// server is stopped (whatever they publish then reaches nobody). They make a
// lifecycle a client only hears of on the stream cheap: 100k of them take
// seconds. Exit and ExitAt are the process's own exit, as before.

// CreateTask creates a task (created, not started) with the next pid and
// publishes TaskCreate, as another client's Tasks.Create.
func (s *Server) CreateTask(ns, containerID string) (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.createLocked(ns, &tasksapi.CreateTaskRequest{ContainerID: containerID})
	if err != nil {
		return 0, err
	}
	return r.Pid, nil
}

// StartProcess starts a created init (execID "") or exec and publishes
// TaskStart or TaskExecStarted, as another client's Tasks.Start; an exec
// gets the next pid here. It answers the pid.
func (s *Server) StartProcess(ns, containerID, execID string) (uint32, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.startLocked(ns, containerID, execID)
}

// ExecProcess adds a created exec to a running task and publishes
// TaskExecAdded, as another client's Tasks.Exec.
func (s *Server) ExecProcess(ns, containerID, execID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.execLocked(ns, &tasksapi.ExecProcessRequest{ContainerID: containerID, ExecID: execID})
}

// DeleteProcess deletes a stopped or never started task (execID "", with
// its execs) or exec, as another client's Tasks.Delete or
// Tasks.DeleteProcess: TaskDelete is published for a task, and for an exec
// unless WithRuncShimEvents.
func (s *Server) DeleteProcess(ns, containerID, execID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.deleteLocked(ns, containerID, execID)
	return err
}

// PauseSubscriptions makes every Subscribe from now on wait, before it is
// registered, until ResumeSubscriptions: such a stream receives nothing
// published meanwhile. Together with BreakStreams it is the gap between a
// client's stream breaking and its new subscription, during which
// containerd publishes to nobody (see StreamGap).
func (s *Server) PauseSubscriptions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subscribeGate == nil {
		s.subscribeGate = make(chan struct{})
	}
}

// ResumeSubscriptions lets the waiting Subscribe calls register, in no
// particular order, and later ones register at once.
func (s *Server) ResumeSubscriptions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subscribeGate != nil {
		close(s.subscribeGate)
		s.subscribeGate = nil
	}
}

// StreamGap breaks every stream and runs during while no subscription can
// register: every event published meanwhile (by during, the tasks service
// or another client) reaches nobody, as events containerd publishes while
// a client's stream is down. Subscriptions register again once during
// returns.
func (s *Server) StreamGap(during func()) {
	s.PauseSubscriptions()
	defer s.ResumeSubscriptions()
	s.BreakStreams()
	during()
}
