package libcontainerd

import (
	"context"
	"fmt"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/cio"

	"github.com/lcdkit/libcontainerd/internal/ledger"
	libtypes "github.com/lcdkit/libcontainerd/types"
)

// The ID-keyed API of older daemons (package legacy) addresses processes by
// container and exec ID, including execs it did not start itself (a daemon
// restarted under live restore still signals and cleans up the execs of its
// previous run). The types interfaces cannot grow, so what that needs lives
// here, as optional interfaces on the values this package returns.

// ProcessLoader is implemented by the Task values this package returns.
type ProcessLoader interface {
	// LoadProcess returns the task's exec execID without attaching to its
	// IO. Deleting the handle also removes the exec's FIFOs, as deleting an
	// exec this client started does. An unknown exec is NotFound.
	LoadProcess(ctx context.Context, execID string) (libtypes.Process, error)
}

// StdinCloser is implemented by the Task and Process values this package
// returns.
type StdinCloser interface {
	// CloseStdin closes the process's stdin in the shim (CloseIO), for a
	// caller that does not hold the stdin the stdio callback received:
	// closing that one does this too, and also closes the FIFO writer.
	CloseStdin(ctx context.Context) error
}

// LoadProcess returns a handle on an existing exec of the task.
func (t *task) LoadProcess(ctx context.Context, execID string) (libtypes.Process, error) {
	if err := validateID(execID); err != nil {
		return nil, err
	}
	p, err := t.ctr.client.getProcess(t.ctx(ctx), t.ctr.id, execID)
	if err != nil {
		return nil, err
	}
	files := &fifoFiles{set: fifoSetFromPaths(p.Stdin, p.Stdout, p.Stderr, p.Terminal)}
	loaded := &process{ctr: t.ctr, execID: execID, io: files}
	loaded.pid.Store(p.Pid)
	if p.Status == tasktypes.Status_RUNNING || p.Status == tasktypes.Status_PAUSED {
		// Found running: from now on its exit is this client's to deliver,
		// also across a containerd restart (as Task.Status does for tasks).
		key, taskRef := keyOf(t.ctr.id, execID), t.ref()
		loaded.inc.Store(uint64(t.exits().id(func(l *ledger.Ledger) ledger.ID { return l.Adopt(key, p.Pid, taskRef) })))
	}
	return loaded, nil
}

// CloseStdin closes the process's stdin in the shim.
func (p *process) CloseStdin(ctx context.Context) error {
	_, err := p.tasks().CloseIO(p.ctx(ctx), &tasks.CloseIORequest{ContainerID: p.ctr.id, ExecID: p.execID, Stdin: true})
	return wrapErrorf(err, fmt.Sprintf("close stdin of %s", processName(p.ctr.id, p.execID)))
}

// fifoFiles is the IO of a loaded process: nothing is open, but its FIFOs
// are still on disk, and releasing the IO removes them.
type fifoFiles struct{ set *cio.FIFOSet }

func (f *fifoFiles) Config() cio.Config { return f.set.Config }
func (f *fifoFiles) Cancel()            {}
func (f *fifoFiles) Wait()              {}
func (f *fifoFiles) Close() error       { return f.set.Close() }
