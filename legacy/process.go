package legacy

import (
	"context"
	"errors"
	"io"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/internal/errclass"
	"github.com/lcdkit/libcontainerd/types"
)

// Exec creates and starts a process in the container's task and returns
// its pid. A container without a task is InvalidParameter "container is not
// running", a duplicate process ID Conflict "id already in use", as in moby.
// A failed Exec leaves no process (see the root package's Task.Exec):
// recovery is Exec again.
func (c *client) Exec(ctx context.Context, containerID, processID string, spec *specs.Process, withStdin bool, attachStdio StdioCallback) (int, error) {
	t, err := c.task(ctx, containerID)
	if err != nil {
		if isNotRunning(err) {
			// A new error, not a wrap: the cause would make it NotFound
			// to containerd's classifier as well.
			return -1, errclass.InvalidParameter(errors.New(msgNotRunning))
		}
		return -1, err
	}
	x := &execEntry{}
	c.mu.Lock()
	e := c.containers[containerID]
	if e == nil {
		// Deleted (from this client's view) since task() found it.
		c.mu.Unlock()
		return -1, errclass.NotFound(errors.New("no such container"))
	}
	if _, dup := e.execs[processID]; dup {
		c.mu.Unlock()
		return -1, errclass.Conflict(errIDInUse)
	}
	e.execs[processID] = x
	c.mu.Unlock()

	var got attached
	p, err := t.Exec(ctx, processID, spec, withStdin, got.wrap(attachStdio))
	c.mu.Lock()
	if err != nil {
		if e.execs[processID] == x {
			delete(e.execs, processID)
		}
		c.mu.Unlock()
		return -1, err
	}
	x.proc, x.stdin = p, got.stdin
	exited := x.exitedPid != 0 && x.exitedPid == p.Pid()
	if exited {
		delete(e.execs, processID)
	}
	c.mu.Unlock()
	if exited {
		// The backend has already handled its exit: clean up as the
		// event would have.
		c.deleteExec(containerID, processID, p)
	}
	return int(p.Pid()), nil
}

// isNotRunning reports whether err is task()'s "container has no task".
func isNotRunning(err error) bool {
	var m *messageError
	return errors.As(err, &m) && m.msg == msgNotRunning
}

// SignalProcess sends signal to the init process (InitProcessName or the
// container ID) or to an exec.
func (c *client) SignalProcess(ctx context.Context, containerID, processID string, signal syscall.Signal) error {
	p, err := c.process(ctx, containerID, processID)
	if err != nil {
		return err
	}
	return p.Kill(ctx, signal)
}

// ResizeTerminal resizes a process's terminal.
func (c *client) ResizeTerminal(ctx context.Context, containerID, processID string, width, height int) error {
	if width < 0 || height < 0 {
		return errclass.InvalidParameter(errors.New("negative terminal size"))
	}
	p, err := c.process(ctx, containerID, processID)
	if err != nil {
		return err
	}
	return p.Resize(ctx, uint32(width), uint32(height))
}

// CloseStdin closes a process's stdin. For a process started or restored
// through this client that closes the stdin its callback received (our FIFO
// writer and the shim's end, both needed for EOF); otherwise it asks the
// shim to close its end.
func (c *client) CloseStdin(ctx context.Context, containerID, processID string) error {
	if stdin := c.stdinOf(containerID, processID); stdin != nil {
		return stdin.Close()
	}
	p, err := c.process(ctx, containerID, processID)
	if err != nil {
		return err
	}
	closer, ok := p.(libcontainerd.StdinCloser)
	if !ok {
		return errclass.NotImplemented(errors.New("process cannot close its stdin"))
	}
	return closer.CloseStdin(ctx)
}

// Pause freezes the container's task.
func (c *client) Pause(ctx context.Context, containerID string) error {
	t, err := c.task(ctx, containerID)
	if err != nil {
		return err
	}
	return t.Pause(ctx)
}

// Resume thaws the container's task.
func (c *client) Resume(ctx context.Context, containerID string) error {
	t, err := c.task(ctx, containerID)
	if err != nil {
		return err
	}
	return t.Resume(ctx)
}

// Stats returns the task's cgroup metrics.
func (c *client) Stats(ctx context.Context, containerID string) (*Stats, error) {
	t, err := c.task(ctx, containerID)
	if err != nil {
		return nil, err
	}
	return t.Stats(ctx)
}

// ListPids lists the host pids of the task's processes.
func (c *client) ListPids(ctx context.Context, containerID string) ([]uint32, error) {
	t, err := c.task(ctx, containerID)
	if err != nil {
		return nil, err
	}
	infos, err := t.Pids(ctx)
	if err != nil {
		return nil, err
	}
	var pids []uint32
	for _, i := range infos {
		pids = append(pids, i.Pid)
	}
	return pids, nil
}

// Summary describes the task's processes.
func (c *client) Summary(ctx context.Context, containerID string) ([]Summary, error) {
	t, err := c.task(ctx, containerID)
	if err != nil {
		return nil, err
	}
	return t.Summary(ctx)
}

// UpdateResources changes the task's resource limits.
func (c *client) UpdateResources(ctx context.Context, containerID string, resources *Resources) error {
	t, err := c.task(ctx, containerID)
	if err != nil {
		return err
	}
	return t.UpdateResources(ctx, resources)
}

// CreateCheckpoint checkpoints the task into checkpointDir (the root
// package's Task.CreateCheckpoint).
func (c *client) CreateCheckpoint(ctx context.Context, containerID, checkpointDir string, exit bool) error {
	t, err := c.task(ctx, containerID)
	if err != nil {
		return err
	}
	return t.CreateCheckpoint(ctx, checkpointDir, exit)
}

// isInit reports whether processID names the container's init process.
func isInit(containerID, processID string) bool {
	return processID == InitProcessName || processID == containerID
}

// process returns the init task or the exec processID: the handle this
// client holds, or one loaded from containerd (an exec of a previous run).
func (c *client) process(ctx context.Context, containerID, processID string) (types.Process, error) {
	if isInit(containerID, processID) {
		return c.task(ctx, containerID)
	}
	c.mu.Lock()
	var p types.Process
	if e := c.containers[containerID]; e != nil {
		if x := e.execs[processID]; x != nil {
			p = x.proc
		}
	}
	c.mu.Unlock()
	if p != nil {
		return p, nil
	}
	t, err := c.task(ctx, containerID)
	if err != nil {
		return nil, err
	}
	loader, ok := t.(libcontainerd.ProcessLoader)
	if !ok {
		return nil, errclass.NotImplemented(errors.New("task cannot load processes"))
	}
	p, err = loader.LoadProcess(ctx, processID)
	if err != nil {
		if errclass.IsNotFound(err) {
			return nil, errclass.NotFound(withMessage("no such exec", err))
		}
		return nil, err
	}
	return p, nil
}

// stdinOf returns the stdin a process started or restored through this
// client received, if it had one.
func (c *client) stdinOf(containerID, processID string) io.WriteCloser {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.containers[containerID]
	if e == nil {
		return nil
	}
	if isInit(containerID, processID) {
		if e.task == nil {
			return nil
		}
		return e.stdin
	}
	if x := e.execs[processID]; x != nil && x.proc != nil {
		return x.stdin
	}
	return nil
}
