package libcontainerd

import (
	"context"
	"fmt"
	"os"
	"strings"
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
	"github.com/lcdkit/libcontainerd/internal/ledger"
)

// process is one process of a task: an exec, or (with an empty execID) the
// init process, which task builds on. Each call is one raw task-service RPC:
// the handle already knows the IDs the containerd client would look up.
type process struct {
	ctr    *container
	execID string // "" for the init process
	// pid is set at create; a task restored from a checkpoint has none
	// until Start gives it the restored one, so Start stores it.
	pid atomic.Uint32
	// inc is the ledger's incarnation this handle holds (0: none yet, a
	// handle loaded from containerd): what the client's calls answer is
	// news of that process, whatever else reused its key or pid.
	inc    atomic.Uint64
	io     cio.IO // nil when the caller did not attach
	ioOnce sync.Once
	// deleting serializes Delete: the client may finish a cut-off delete
	// while the caller retries it, and two deletes of one task at once
	// get the shim's "ttrpc: closed" as it exits on the first.
	deleting sync.Mutex
}

// Pid returns the host process id.
func (p *process) Pid() uint32 { return p.pid.Load() }

// ref is what the handle tells the ledger of its process.
func (p *process) ref() ledger.Ref {
	return ledger.Ref{ID: ledger.ID(p.inc.Load()), Key: keyOf(p.ctr.id, p.execID), Pid: p.Pid()}
}

func (p *process) exits() *exitState { return p.ctr.client.exits }

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
// deletes again itself once containerd serves (and a grace has passed for
// the caller's own retry), releasing the FIFOs; only if containerd still
// shows this very process, so a task created since under the container's ID
// is never touched.
func (p *process) Delete(ctx context.Context) (*containerd.ExitStatus, error) {
	p.deleting.Lock()
	defer p.deleting.Unlock()
	st, id, err := p.deleteOnce(p.ctx(ctx))
	if errclass.OutcomeUnknown(err) {
		p.exits().finishLater(p, id)
	}
	return st, err
}

// deleteOnce sends one delete and tells the ledger what it answered; it
// returns the incarnation it was about.
func (p *process) deleteOnce(ctx context.Context) (*containerd.ExitStatus, ledger.ID, error) {
	x := p.exits()
	if p.execID == "" {
		p.resolveStart(ctx)
	}
	ref := p.ref()
	id := x.id(func(l *ledger.Ledger) ledger.ID { return l.DeleteBegin(ref) })
	if id != 0 {
		p.inc.Store(uint64(id))
	}
	var (
		r   *tasks.DeleteResponse
		err error
	)
	if p.execID == "" {
		r, err = p.tasks().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: p.ctr.id})
	} else {
		r, err = p.tasks().DeleteProcess(ctx, &tasks.DeleteProcessRequest{ContainerID: p.ctr.id, ExecID: p.execID})
	}
	err = wrapError(err)
	switch {
	case err == nil:
		// The delete's answer is the exit itself: when a delete follows
		// the exit closely, containerd 2.x's shim can be gone before its
		// TaskExit reached containerd, which then never publishes it.
		x.do(func(l *ledger.Ledger) { l.DeleteAnswer(id, ref, r.Pid, r.ExitStatus, timeOf(r.ExitedAt)) })
	case errclass.IsNotFound(err):
		// Gone already (deleted behind our back, or by an earlier call
		// whose answer was lost): the IO is still released.
		x.do(func(l *ledger.Ledger) { l.DeleteNotFound(id, ref) })
	case errclass.OutcomeUnknown(err):
		// containerd went away mid-call (a daemon whose monitor deletes
		// once and only logs the failure never retries): the client
		// finishes it once containerd answers again.
		x.do(func(l *ledger.Ledger) { l.DeleteUnknown(id) })
		if p.execID == "" {
			// On 1.6 a task delete cut off after the shim deleted its
			// container leaves a shim the restarted containerd loads
			// but neither Get nor List shows: only a task Delete clears
			// it, and Container.Delete sends one for a suspect.
			p.ctr.client.orphans.Store(p.ctr.id, struct{}{})
		}
		return nil, id, err
	default:
		x.do(func(l *ledger.Ledger) { l.DeleteFailed(id) })
		return nil, id, err
	}
	if p.execID == "" {
		p.ctr.setTask(taskNone)
		p.ctr.client.shims.forget(p.ctr.id, ref.Pid)
	}
	p.releaseIO()
	if err != nil {
		return nil, id, err
	}
	return containerd.NewExitStatus(r.ExitStatus, timeOf(r.ExitedAt), nil), id, nil
}

// resolveStart asks containerd whether a start of this task whose answer
// was lost took effect, before a delete or kill: a created process killed
// exits just like a started one, and only containerd can tell them apart
// while it lives.
func (p *process) resolveStart(ctx context.Context) {
	ref := p.ref()
	if !p.exits().ask(func(l *ledger.Ledger) bool { return l.StartUnresolved(ref) }) {
		return
	}
	st, err := p.ctr.client.getProcess(ctx, p.ctr.id, p.execID)
	if err != nil && !errclass.IsNotFound(err) {
		return // the reconciler asks again
	}
	r, ok := reportOf(st, err)
	if !ok {
		return
	}
	if r.Status == ledger.Created && r.Pid != 0 && !runtimeInit(r.Pid) {
		// The shim still says created, but the process containerd names
		// has left the runtime's init for the container's program: the
		// start took effect in the shim after containerd, and with it
		// the call's answer, went (the shim keeps the state its failed
		// call left).
		r.Status = ledger.Running
	}
	p.exits().do(func(l *ledger.Ledger) { l.Resolve(ref, r) })
}

// runtimeInit reports whether process pid still runs the OCI runtime's init
// ("runc init": a created container waiting to be started), or cannot be
// read (gone: nothing can be told of it).
func runtimeInit(pid uint32) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return true
	}
	args := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	return len(args) == 2 && args[1] == "init"
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
