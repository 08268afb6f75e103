package libcontainerd

import (
	"context"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/protobuf"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lcdkit/libcontainerd/internal/errclass"
)

// process is one process of a task: an exec, or (with an empty execID) the
// init process, which task builds on. Each call is one raw task-service RPC:
// the handle already knows the IDs the containerd client would look up.
type process struct {
	ctr    *container
	execID string // "" for the init process
	// pid is set at create; a task restored from a checkpoint has none
	// until Start gives it the restored one, so Start stores it.
	pid    atomic.Uint32
	io     cio.IO // nil when the caller did not attach
	ioOnce sync.Once
	// deleting serializes Delete: the client may finish a cut-off delete
	// while the caller retries it, and two deletes of one task at once
	// get the shim's "ttrpc: closed" as it exits on the first.
	deleting sync.Mutex
}

// Pid returns the host process id.
func (p *process) Pid() uint32 { return p.pid.Load() }

func (p *process) key() procKey {
	if p.execID == "" {
		return procKey{p.ctr.id, p.ctr.id}
	}
	return procKey{p.ctr.id, p.execID}
}

func (p *process) tasks() tasks.TasksClient { return p.ctr.client.client.TaskService() }

func (p *process) ctx(ctx context.Context) context.Context { return p.ctr.client.withNamespace(ctx) }

// Kill sends signal to the process.
func (p *process) Kill(ctx context.Context, signal syscall.Signal) error {
	_, err := p.tasks().Kill(p.ctx(ctx), &tasks.KillRequest{ContainerID: p.ctr.id, ExecID: p.execID, Signal: uint32(signal)})
	return wrapError(err)
}

// Resize changes the size of the process's terminal.
func (p *process) Resize(ctx context.Context, width, height uint32) error {
	_, err := p.tasks().ResizePty(p.ctx(ctx), &tasks.ResizePtyRequest{ContainerID: p.ctr.id, ExecID: p.execID, Width: width, Height: height})
	return wrapError(err)
}

// closeStdin asks the shim to close the process's stdin.
func (p *process) closeStdin() error { return p.ctr.client.closeStdin(p.ctr.id, p.execID) }

// Delete removes the process and returns its exit status; its FIFOs go with
// it. A running process is not deleted (Conflict).
//
// Recovery: retry. NotFound then means an earlier call deleted the process
// and lost the answer; its FIFOs are removed all the same, but its exit
// status is gone with it (by design: the shim keeps it only until the
// delete). The EventExit the backend got carries it. A caller that does not
// retry loses nothing: after an Unavailable or context error the client
// deletes again itself once containerd is back from its next outage
// (releasing the FIFOs), as long as the client is open.
func (p *process) Delete(ctx context.Context) (*containerd.ExitStatus, error) {
	p.deleting.Lock()
	defer p.deleting.Unlock()
	ctx = p.ctx(ctx)
	var (
		code, answerPid uint32
		exitedAt        *timestamppb.Timestamp
		r               *tasks.DeleteResponse
		err             error
	)
	if p.execID == "" {
		r, err = p.tasks().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: p.ctr.id})
	} else {
		r, err = p.tasks().DeleteProcess(ctx, &tasks.DeleteProcessRequest{ContainerID: p.ctr.id, ExecID: p.execID})
	}
	if err == nil {
		code, exitedAt, answerPid = r.ExitStatus, r.ExitedAt, r.Pid
	}
	if err != nil {
		err = wrapError(err)
		if errclass.OutcomeUnknown(err) {
			// containerd went away mid-call (a daemon whose monitor
			// deletes once and only logs the failure never retries):
			// the client finishes it once containerd answers again, so
			// neither the stopped task nor its FIFOs and fds stay.
			p.ctr.client.finishLater(p)
		}
		if !errclass.IsNotFound(err) {
			return nil, err
		}
		// Gone already (deleted behind our back): still release the IO.
	}
	l := p.ctr.client.ledger
	pid := p.Pid()
	if err == nil {
		// The delete's answer is the exit itself: when a delete follows
		// the exit closely, containerd 2.x's shim can be gone before its
		// TaskExit reached containerd, which then never publishes it. The
		// ledger delivers it unless another source did.
		if pid == 0 {
			pid = answerPid
		}
		l.report(p.key(), pid, exitNews{code: code, at: timeOf(exitedAt), source: fromAnswer}, true, false)
	} else {
		l.deleted(p.key(), pid)
	}
	if p.execID == "" {
		// The task is gone: its execs are settled too.
		l.taskGone(p.ctr.id, pid)
		p.ctr.setTask(taskNone)
		p.ctr.client.shims.forget(p.ctr.id, pid)
	}
	p.releaseIO()
	if err != nil {
		return nil, err
	}
	return containerd.NewExitStatus(code, timeOf(exitedAt), nil), nil
}

// releaseIO waits for the caller's copiers to drain what the shim flushed
// before it closed its ends, then closes and removes the FIFOs.
func (p *process) releaseIO() {
	if p.io == nil {
		return
	}
	p.ioOnce.Do(func() {
		p.io.Cancel()
		p.io.Wait()
		_ = p.io.Close()
	})
}

// timeOf converts a protobuf timestamp; nil is the zero time, not 1970
// (protobuf.FromTimestamp's answer).
func timeOf(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return protobuf.FromTimestamp(ts)
}
