package libcontainerd

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	apitypes "github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/protobuf"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/lcdkit/libcontainerd/internal/errclass"
	"github.com/lcdkit/libcontainerd/internal/ledger"
	libtypes "github.com/lcdkit/libcontainerd/types"
)

// execCleanupTimeout bounds deleting an exec whose start failed; it runs on
// a fresh context because the caller's may be what failed.
const execCleanupTimeout = 45 * time.Second

// task is a container's task: its init process plus the task-wide calls.
type task struct {
	*process
	// stoppedAtLoad: the handle was made from containerd's answer that the
	// task had stopped (a stopped task never runs again), so ForceDelete
	// need not kill or wait.
	stoppedAtLoad bool
}

func (c *container) newTask(pid uint32, rio cio.IO) *task {
	p := &process{ctr: c, io: rio}
	p.pid.Store(pid)
	return &task{process: p}
}

// Start starts the created task, or restores it when NewTask was given a
// checkpoint. On failure the caller cleans up with ForceDelete, as moby's
// daemon does. After an Unavailable or context error the task may have
// started all the same: Status says (created: Start again; running: it
// started, and its exit is reported: the client asks containerd itself
// until it knows, and delivers the exit of a task that started and already
// ended).
func (t *task) Start(ctx context.Context) error {
	x := t.exits()
	id := ledger.ID(t.inc.Load())
	x.do(func(l *ledger.Ledger) { l.StartBegin(id) })
	r, err := t.tasks().Start(t.ctx(ctx), &tasks.StartRequest{ContainerID: t.ctr.id})
	if err != nil {
		err = wrapError(err)
		if errclass.OutcomeUnknown(err) {
			// It may have started with only the answer lost: the
			// reconciler asks containerd, so its exit is not missed.
			x.do(func(l *ledger.Ledger) { l.StartUnknown(id) })
		} else {
			x.do(func(l *ledger.Ledger) { l.StartFailed(id) })
		}
		return err
	}
	// The same pid as at create, except for a restored task: its process
	// exists only now (and moby's daemon reads Pid after Start).
	t.pid.Store(r.Pid)
	if id == 0 {
		// A handle loaded from containerd: from now on its exit is ours.
		t.inc.Store(uint64(x.id(func(l *ledger.Ledger) ledger.ID { return l.Adopt(t.ref().Key, r.Pid, ledger.Ref{}) })))
	} else {
		x.do(func(l *ledger.Ledger) { l.Started(id, r.Pid) })
	}
	// Found now, while the process lives: see shimwatch.go.
	t.ctr.client.noteShim(t.ctr.id, r.Pid)
	return nil
}

// Pause freezes the task.
func (t *task) Pause(ctx context.Context) error {
	_, err := t.tasks().Pause(t.ctx(ctx), &tasks.PauseTaskRequest{ContainerID: t.ctr.id})
	return wrapError(err)
}

// Resume thaws the task.
func (t *task) Resume(ctx context.Context) error {
	_, err := t.tasks().Resume(t.ctx(ctx), &tasks.ResumeTaskRequest{ContainerID: t.ctr.id})
	return wrapError(err)
}

// Status returns the task's state, with exit status and time once stopped.
func (t *task) Status(ctx context.Context) (containerd.Status, error) {
	p, err := t.ctr.client.getProcess(t.ctx(ctx), t.ctr.id, "")
	if err != nil {
		return containerd.Status{}, err
	}
	x := t.exits()
	switch p.Status {
	case tasktypes.Status_RUNNING, tasktypes.Status_PAUSED, tasktypes.Status_PAUSING:
		// How a restarted daemon re-adopts its tasks: LoadContainer →
		// Task → Status. From now on their exits are ours to deliver.
		key := t.ref().Key
		t.inc.Store(uint64(x.id(func(l *ledger.Ledger) ledger.ID { return l.Adopt(key, p.Pid, ledger.Ref{}) })))
	case tasktypes.Status_STOPPED:
		// Only a process the ledger holds gets its exit from here (a
		// Start whose answer was lost); a task loaded stopped is the
		// caller's to handle.
		ref := t.ref()
		x.do(func(l *ledger.Ledger) { l.StatusStopped(ref, p.Pid, p.ExitStatus, timeOf(p.ExitedAt)) })
	}
	return containerd.Status{
		Status:     containerd.ProcessStatus(strings.ToLower(p.Status.String())),
		ExitStatus: p.ExitStatus,
		ExitTime:   timeOf(p.ExitedAt),
	}, nil
}

// ForceDelete kills every process of the task and deletes it; it works on
// created, running and stopped tasks. Recovery: retry; NotFound then means
// the task is gone (its FIFOs too).
func (t *task) ForceDelete(ctx context.Context) error {
	ctx = t.ctx(ctx)
	x := t.exits()
	ref := t.ref()
	if t.stoppedAtLoad || x.ask(func(l *ledger.Ledger) bool { return l.KnownStopped(ref) }) {
		// Stopped for good: nothing to kill or wait for (a task
		// re-adopted after a containerd crash would otherwise cost a
		// Kill that succeeds on 1.6 and a Wait).
		if _, err := t.Delete(ctx); err == nil || errclass.IsNotFound(err) {
			return err
		}
	}
	t.resolveStart(ctx)
	// No guess is made for the process while this runs: the wait's and
	// the delete's answers carry its real exit.
	id := x.id(func(l *ledger.Ledger) ledger.ID { return l.KillWaitBegin(t.ref()) })
	defer x.do(func(l *ledger.Ledger) { l.KillWaitEnd(id) })
	_, err := t.tasks().Kill(ctx, &tasks.KillRequest{ContainerID: t.ctr.id, Signal: uint32(syscall.SIGKILL), All: true})
	if err != nil && !errclass.IsNotFound(err) {
		return wrapErrorf(err, "kill task "+t.ctr.id)
	}
	if err != nil {
		// Nothing to kill: a stopped task ("process already finished"),
		// one created from a checkpoint whose restore failed at Start
		// (it stays created with no process, and a Wait on it would never
		// return), or one exiting at this very moment. Delete takes the
		// first two at once, so the common case (removing a stopped task)
		// costs two RPCs; only the last refuses, and is waited for.
		if _, err := t.Delete(ctx); err == nil || errclass.IsNotFound(err) {
			return err
		}
	}
	w, err := t.tasks().Wait(ctx, &tasks.WaitRequest{ContainerID: t.ctr.id})
	if err != nil && !errclass.IsNotFound(err) {
		err = wrapErrorf(err, "wait for task "+t.ctr.id)
		// The shim's connection closed under the wait ("ttrpc: closed",
		// Unknown): someone else deleted the task meanwhile (a daemon
		// whose monitor deletes on the exit this kill caused). Gone is
		// all ForceDelete promises.
		if !errclass.OutcomeUnknown(err) {
			if _, again := t.Delete(ctx); errclass.IsNotFound(again) {
				return nil
			}
		}
		return err
	}
	if w != nil {
		// The wait's answer is the exit: if the delete's answer is lost,
		// and containerd 2.x's shim went without publishing it, it is the
		// only record.
		x.do(func(l *ledger.Ledger) { l.WaitAnswer(id, w.ExitStatus, timeOf(w.ExitedAt)) })
	}
	_, err = t.Delete(ctx)
	if err != nil && !errclass.IsNotFound(err) && !errclass.OutcomeUnknown(err) {
		// containerd 2.3's shim can exit on the delete before its answer
		// is sent ("failed to delete task: ttrpc: closed", Unknown): asked
		// again, containerd says NotFound, and the task is gone, which is
		// all ForceDelete promises (the retry's NotFound path releases
		// what the handle holds).
		if _, again := t.Delete(ctx); errclass.IsNotFound(again) {
			return nil
		}
	}
	return err
}

// Pids lists the task's processes.
func (t *task) Pids(ctx context.Context) ([]containerd.ProcessInfo, error) {
	r, err := t.tasks().ListPids(t.ctx(ctx), &tasks.ListPidsRequest{ContainerID: t.ctr.id})
	if err != nil {
		return nil, wrapError(err)
	}
	infos := make([]containerd.ProcessInfo, 0, len(r.Processes))
	for _, p := range r.Processes {
		infos = append(infos, containerd.ProcessInfo{Pid: p.Pid, Info: p.Info})
	}
	return infos, nil
}

// Summary describes the task's processes: on Linux an empty Summary each.
func (t *task) Summary(ctx context.Context) ([]libtypes.Summary, error) {
	pids, err := t.Pids(ctx)
	if err != nil {
		return nil, err
	}
	return make([]libtypes.Summary, len(pids)), nil
}

// Stats returns the task's cgroup metrics, decoded to the cgroup v1 or v2
// stats type.
func (t *task) Stats(ctx context.Context) (*libtypes.Stats, error) {
	r, err := t.tasks().Metrics(t.ctx(ctx), &tasks.MetricsRequest{Filters: []string{"id==" + t.ctr.id}})
	if err != nil {
		return nil, wrapError(err)
	}
	if len(r.Metrics) == 0 {
		return nil, errclass.NotFound(fmt.Errorf("no metrics for task %s", t.ctr.id))
	}
	return decodeMetrics(t.ctr.id, r.Metrics[0])
}

// decodeMetrics turns containerd's metric into Stats: the cgroup v1 or v2
// stats type, whichever the shim reported (the type URL says which).
func decodeMetrics(id string, m *apitypes.Metric) (*libtypes.Stats, error) {
	if m == nil || m.Data == nil {
		return nil, errclass.NotFound(fmt.Errorf("no metrics for task %s", id))
	}
	v, err := typeurl.UnmarshalAny(m.Data)
	if err != nil {
		return nil, errclass.System(fmt.Errorf("decode metrics of task %s: %w", id, err))
	}
	return libtypes.InterfaceToStats(timeOf(m.Timestamp), v), nil
}

// UpdateResources changes the task's resource limits.
func (t *task) UpdateResources(ctx context.Context, resources *libtypes.Resources) error {
	if resources == nil {
		return invalidParameter("nil resources")
	}
	anyRes, err := typeurl.MarshalAny(resources)
	if err != nil {
		return errclass.InvalidParameter(err)
	}
	_, err = t.tasks().Update(t.ctx(ctx), &tasks.UpdateTaskRequest{ContainerID: t.ctr.id, Resources: protobuf.FromAny(anyRes)})
	return wrapError(err)
}

// Exec creates and starts a process in the task. If the start fails the
// process is deleted again (on a fresh bounded context) and its FIFOs
// removed; the runtime's message is kept, because daemons map "no such file
// or directory" and "permission denied" to exit codes 127 and 126.
//
// A failed call leaves no exec and no FIFO: an exec added or started by a
// call whose answer was lost is deleted too (a started one killed first; its
// exit is reported like any other). Recovery: retry, with the same ID.
func (t *task) Exec(ctx context.Context, processID string, spec *specs.Process, withStdin bool, attachStdio libtypes.StdioCallback) (libtypes.Process, error) {
	if err := validateID(processID); err != nil {
		return nil, err
	}
	if spec == nil {
		return nil, invalidParameter("nil process spec")
	}
	if attachStdio == nil {
		return nil, invalidParameter("nil stdio callback")
	}
	if processID == t.ctr.id {
		// The exec's FIFOs would be the init process's.
		return nil, errIDInUse(nil)
	}
	ctx = t.ctx(ctx)
	anySpec, err := typeurl.MarshalAny(spec)
	if err != nil {
		return nil, errclass.InvalidParameter(err)
	}
	fifos := newFIFOSet(t.ctr.bundle, processID, withStdin, spec.Terminal)
	if err := t.ctr.client.clearStaleFIFOs(ctx, fifos, t.ctr.id, processID); err != nil {
		return nil, err
	}
	stdin := &stdinSync{}
	rio, err := t.ctr.client.newIO(fifos, stdin, attachStdio)
	if err != nil {
		return nil, wrapError(err)
	}
	cfg := rio.Config()
	x := t.exits()
	taskRef := t.ref()
	id := x.id(func(l *ledger.Ledger) ledger.ID { return l.ExecBegin(keyOf(t.ctr.id, processID), taskRef) })
	_, err = t.tasks().Exec(ctx, &tasks.ExecProcessRequest{
		ContainerID: t.ctr.id, ExecID: processID,
		Stdin: cfg.Stdin, Stdout: cfg.Stdout, Stderr: cfg.Stderr, Terminal: cfg.Terminal,
		Spec: protobuf.FromAny(anySpec),
	})
	if err != nil {
		stdin.drop()
		err = wrapError(err)
		if errclass.OutcomeUnknown(err) {
			// The exec may have been added, only the answer lost: left,
			// it would sit in the shim until the task goes. Its start
			// was never sent.
			x.do(func(l *ledger.Ledger) { l.StartFailed(id) })
			t.removeFailedExec(processID, id)
		} else {
			x.do(func(l *ledger.Ledger) { l.ExecAborted(id) })
		}
		closeIO(rio)
		if errclass.IsAlreadyExists(err) {
			return nil, errIDInUse(err)
		}
		return nil, err
	}
	x.do(func(l *ledger.Ledger) { l.ExecAdded(id) })
	r, err := t.tasks().Start(ctx, &tasks.StartRequest{ContainerID: t.ctr.id, ExecID: processID})
	if err != nil {
		stdin.drop()
		err = wrapError(err)
		if errclass.OutcomeUnknown(err) {
			// It may have started: the clean-up's delete (or the
			// reconciler) finds out, and its exit is reported.
			x.do(func(l *ledger.Ledger) { l.StartUnknown(id) })
		} else {
			x.do(func(l *ledger.Ledger) { l.StartFailed(id) })
		}
		t.removeFailedExec(processID, id)
		closeIO(rio)
		return nil, err
	}
	x.do(func(l *ledger.Ledger) { l.Started(id, r.Pid) })
	p := &process{ctr: t.ctr, execID: processID, io: rio}
	p.pid.Store(r.Pid)
	p.inc.Store(uint64(id))
	// The shim opens an exec's stdin only at start: a close asked for
	// before now would have been a silent no-op (moby #37870).
	if err := stdin.publish(p.closeStdin); err != nil {
		t.ctr.client.logger.WithError(err).WithField("container", t.ctr.id).WithField("exec", processID).Warn("failed to close exec stdin")
	}
	return p, nil
}

// removeFailedExec deletes an exec whose Exec call failed, on a fresh
// bounded context that outlasts an outage: it waits for containerd to serve
// again. A start whose answer was lost may have started it: a running exec
// is killed first (and waited for), so neither it nor its entry in the shim
// outlives the failed call. An exec that ran gets its exit (the delete's
// answer carries it) like any other, once; until its fate is known the
// ledger holds it (id).
func (t *task) removeFailedExec(execID string, id ledger.ID) {
	ctx, cancel := context.WithTimeout(t.ctx(context.Background()), execCleanupTimeout)
	defer cancel()
	p := &process{ctr: t.ctr, execID: execID}
	p.inc.Store(uint64(id))
	x := t.exits()
	del := func(ctx context.Context) error {
		_, _, err := p.deleteOnce(ctx)
		return err
	}
	err := t.ctr.client.retryCleanup(ctx, del)
	if errclass.IsConflict(err) {
		// Running: the start took effect.
		kw := x.id(func(l *ledger.Ledger) ledger.ID { return l.KillWaitBegin(p.ref()) })
		err = t.ctr.client.retryCleanup(ctx, func(ctx context.Context) error {
			_, err := t.tasks().Kill(ctx, &tasks.KillRequest{ContainerID: t.ctr.id, ExecID: execID, Signal: uint32(syscall.SIGKILL)})
			return wrapError(err)
		})
		if err == nil {
			err = t.ctr.client.retryCleanup(ctx, func(ctx context.Context) error {
				w, err := t.tasks().Wait(ctx, &tasks.WaitRequest{ContainerID: t.ctr.id, ExecID: execID})
				if err == nil {
					x.do(func(l *ledger.Ledger) { l.WaitAnswer(kw, w.ExitStatus, timeOf(w.ExitedAt)) })
				}
				return wrapError(err)
			})
		}
		if err == nil {
			err = t.ctr.client.retryCleanup(ctx, del)
		}
		x.do(func(l *ledger.Ledger) { l.KillWaitEnd(kw) })
	}
	if err != nil {
		// Given up: the client finishes the delete once containerd
		// serves, and asks containerd meanwhile whether it ran.
		x.finishLater(p, ledger.ID(p.inc.Load()))
		t.ctr.client.logger.WithError(err).WithField("container", t.ctr.id).WithField("exec", execID).
			Warnf("failed to delete exec whose start failed within %s; will delete it once containerd serves", execCleanupTimeout)
	}
}

type taskProcess = tasktypes.Process

// getProcess returns containerd's view of a task (execID "") or exec.
func (c *Client) getProcess(ctx context.Context, containerID, execID string) (*taskProcess, error) {
	r, err := c.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: containerID, ExecID: execID})
	if err != nil {
		return nil, wrapError(err)
	}
	return r.Process, nil
}
