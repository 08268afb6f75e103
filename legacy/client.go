package legacy

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/internal/errclass"
	"github.com/lcdkit/libcontainerd/types"
)

// cleanupTimeout bounds the calls that clean up after a failure or an exit;
// they run on a fresh context, the caller's may be what failed.
const cleanupTimeout = 45 * time.Second

// unknownExitCode is what DeleteTask reports when there is no exit to
// report, as moby did.
const unknownExitCode = 255

// client is the Client NewClient returns.
type client struct {
	lib     types.Client // set once, before ready closes
	ready   chan struct{}
	closer  io.Closer
	backend Backend
	logger  *log.Entry
	// cleanups tracks the exec clean-ups after exits (events.go).
	cleanups sync.WaitGroup

	mu         sync.Mutex
	containers map[string]*entry
	oom        map[string]bool // containers that had an OOM event
}

// entry holds one container's handles: the ones returned by Start, Restore
// and Exec own their process's IO, which is released when that handle is
// deleted, so later calls must use them rather than load fresh ones.
type entry struct {
	ctr   types.Container
	task  types.Task     // nil until Start or Restore
	stdin io.WriteCloser // the init's stdin, if it has one
	execs map[string]*execEntry
}

// execEntry is one exec of the container. proc is nil while Exec is still
// starting it; an exit handled in that window records its pid, and Exec
// cleans up when it returns if that is its process's pid (an exit of an
// earlier exec under the same ID is not).
type execEntry struct {
	proc      types.Process
	stdin     io.WriteCloser
	exitedPid uint32
}

// NewClient returns the client for namespace ns, with bundle directories
// under stateDir and events reported to b. It starts the event stream, which
// ends when ctx is cancelled; the value returned is also an io.Closer whose
// Close stops the stream and waits for the events already queued. opts are
// the root package's.
func NewClient(ctx context.Context, cli *containerd.Client, stateDir, ns string, b Backend, opts ...libcontainerd.Option) (Client, error) {
	c := &client{
		backend:    b,
		logger:     log.G(ctx).WithField("module", "libcontainerd/legacy").WithField("namespace", ns),
		containers: map[string]*entry{},
		oom:        map[string]bool{},
		ready:      make(chan struct{}),
	}
	lib, err := libcontainerd.NewClient(ctx, cli, stateDir, ns, relay{c}, opts...)
	if err != nil {
		return nil, err
	}
	c.lib = lib
	close(c.ready)
	if closer, ok := lib.(io.Closer); ok {
		c.closer = closer
	}
	return c, nil
}

// Close stops the event stream and waits (bounded) for the events already
// queued to reach the backend, and for the exec clean-ups they started.
// Containers keep running.
func (c *client) Close() error {
	var err error
	if c.closer != nil {
		err = c.closer.Close()
	}
	c.cleanups.Wait()
	return err
}

// root returns the root client. The event relay may run before NewClient
// has stored it, and then waits.
func (c *client) root() types.Client {
	<-c.ready
	return c.lib
}

// Version returns containerd's version.
func (c *client) Version(ctx context.Context) (containerd.Version, error) {
	return c.root().Version(ctx)
}

// Create creates the container and its bundle directory. Recovery, as moby
// v20–v23 does it: Create again, and on Conflict (an earlier call created
// the container but lost the answer) DeleteTask, Delete and Create once more.
func (c *client) Create(ctx context.Context, id string, spec *specs.Spec, shim string, runtimeOptions interface{}, opts ...containerd.NewContainerOpts) error {
	ctr, err := c.root().NewContainer(ctx, id, spec, shim, runtimeOptions, opts...)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.containers[id] = &entry{ctr: ctr, execs: map[string]*execEntry{}}
	c.mu.Unlock()
	return nil
}

// Start creates and starts the container's task. If the start fails, the
// created task is force-deleted (moby v20's plain delete cannot remove a
// task that is only created) and the start's error returned. A failed
// Start leaves no task (the root package's NewTask removes one whose create
// lost its answer): recovery is Start again.
func (c *client) Start(ctx context.Context, id, checkpointDir string, withStdin bool, attachStdio StdioCallback) (int, error) {
	ctr, err := c.container(ctx, id)
	if err != nil {
		return -1, err
	}
	var got attached
	t, err := ctr.NewTask(ctx, checkpointDir, withStdin, got.wrap(attachStdio))
	if err != nil {
		return -1, err
	}
	// Published before the start: the backend may handle the exit (and
	// call DeleteTask) before Start returns, and only this handle can
	// release the IO.
	c.setTask(id, ctr, t, got.stdin)
	if err := t.Start(ctx); err != nil {
		c.dropTask(id, t)
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if derr := t.ForceDelete(cctx); derr != nil && !errclass.IsNotFound(derr) {
			c.logger.WithError(derr).WithField("container", id).Error("failed to delete task after failed start")
		}
		return -1, err
	}
	return int(t.Pid()), nil
}

// Restore loads the container and its task, reattaching to the init
// process's stdio through attachStdio (nil: no reattach).
func (c *client) Restore(ctx context.Context, id string, attachStdio StdioCallback) (alive bool, pid int, p Process, err error) {
	ctr, err := c.root().LoadContainer(ctx, id)
	if err != nil {
		return false, -1, nil, err
	}
	var (
		got attached
		t   types.Task
	)
	if attachStdio != nil {
		t, err = ctr.AttachTask(ctx, got.wrap(attachStdio))
	} else {
		t, err = ctr.Task(ctx)
	}
	if err != nil && !errclass.IsNotFound(err) {
		return false, -1, nil, wrapf(err, "error getting containerd task for container")
	}
	if err == nil {
		s, err := t.Status(ctx)
		if err != nil {
			got.release()
			return false, -1, nil, wrapf(err, "error getting task status")
		}
		alive = s.Status != containerd.Stopped
		pid = int(t.Pid())
	} else {
		t = nil
	}
	c.mu.Lock()
	c.containers[id] = &entry{ctr: ctr, task: t, stdin: got.stdin, execs: map[string]*execEntry{}}
	c.mu.Unlock()
	c.logger.WithFields(log.Fields{"container": id, "alive": alive, "pid": pid}).Debug("restored container")
	return alive, pid, &restoredProcess{c: c, id: id, task: t}, nil
}

// restoredProcess is the init process Restore found; task is nil if there
// was none.
type restoredProcess struct {
	c    *client
	id   string
	task types.Task
}

func (p *restoredProcess) Delete(ctx context.Context) (uint32, time.Time, error) {
	if p.task == nil {
		return unknownExitCode, time.Now(), nil
	}
	return p.c.deleteTask(ctx, p.id, p.task)
}

// DeleteTask deletes the container's stopped task and returns its exit
// status; a running one is not deleted (Conflict). Recovery: retry; NotFound
// then means an earlier call deleted it and lost the answer (with the exit
// status, which the EventExit carried).
func (c *client) DeleteTask(ctx context.Context, id string) (uint32, time.Time, error) {
	t, err := c.task(ctx, id)
	if err != nil {
		return unknownExitCode, time.Now(), err
	}
	return c.deleteTask(ctx, id, t)
}

func (c *client) deleteTask(ctx context.Context, id string, t types.Task) (uint32, time.Time, error) {
	st, err := t.Delete(ctx)
	if err != nil {
		if errclass.IsNotFound(err) {
			c.dropTask(id, t) // gone already; its IO was released anyway
		}
		return unknownExitCode, time.Now(), err
	}
	c.dropTask(id, t)
	return st.ExitCode(), st.ExitTime(), nil
}

// Delete deletes the container and its bundle directory, and forgets its
// OOM flag.
func (c *client) Delete(ctx context.Context, id string) error {
	ctr, err := c.container(ctx, id)
	if err != nil {
		return err
	}
	if err := ctr.Delete(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	e := c.containers[id]
	delete(c.containers, id)
	delete(c.oom, id)
	c.mu.Unlock()
	if e != nil {
		c.releaseLeftovers(ctx, id, e)
	}
	return nil
}

// releaseLeftovers releases the IO of handles whose processes went away
// without being deleted through them: with the container gone, their
// deletes answer NotFound, which still releases the IO.
func (c *client) releaseLeftovers(ctx context.Context, id string, e *entry) {
	var procs []types.Process
	if e.task != nil {
		procs = append(procs, e.task)
	}
	for _, x := range e.execs {
		if x.proc != nil {
			procs = append(procs, x.proc)
		}
	}
	for _, p := range procs {
		if _, err := p.Delete(ctx); err != nil && !errclass.IsNotFound(err) {
			c.logger.WithError(err).WithField("container", id).Warn("failed to release a process of a deleted container")
		}
	}
}

// Status returns the state of the container's task.
func (c *client) Status(ctx context.Context, id string) (containerd.ProcessStatus, error) {
	t, err := c.task(ctx, id)
	if err != nil {
		return containerd.Unknown, err
	}
	s, err := t.Status(ctx)
	if err != nil {
		return containerd.Unknown, err
	}
	return s.Status, nil
}

// container returns the container's handle, loading it if this client has
// none.
func (c *client) container(ctx context.Context, id string) (types.Container, error) {
	c.mu.Lock()
	e := c.containers[id]
	c.mu.Unlock()
	if e != nil {
		return e.ctr, nil
	}
	ctr, err := c.root().LoadContainer(ctx, id)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.containers[id]; e != nil {
		return e.ctr, nil // loaded concurrently: keep the first
	}
	c.containers[id] = &entry{ctr: ctr, execs: map[string]*execEntry{}}
	return ctr, nil
}

// task returns the container's task: the handle Start or Restore returned,
// or a fresh one without IO.
func (c *client) task(ctx context.Context, id string) (types.Task, error) {
	c.mu.Lock()
	var t types.Task
	if e := c.containers[id]; e != nil {
		t = e.task
	}
	c.mu.Unlock()
	if t != nil {
		return t, nil
	}
	ctr, err := c.container(ctx, id)
	if err != nil {
		return nil, err
	}
	t, err = ctr.Task(ctx)
	if err != nil {
		if errclass.IsNotFound(err) {
			return nil, errclass.NotFound(withMessage(msgNotRunning, err))
		}
		return nil, err
	}
	return t, nil
}

func (c *client) setTask(id string, ctr types.Container, t types.Task, stdin io.WriteCloser) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.containers[id]
	if e == nil {
		e = &entry{ctr: ctr, execs: map[string]*execEntry{}}
		c.containers[id] = e
	}
	e.task, e.stdin = t, stdin
}

// dropTask forgets t if it is still the container's task handle.
func (c *client) dropTask(id string, t types.Task) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.containers[id]; e != nil && e.task == t {
		e.task, e.stdin = nil, nil
	}
}

// attached records what a stdio callback was given and returned: the stdin
// (the root package's wrapper, whose Close also closes the process's stdin
// in the shim) and the IO, to release if the call fails after attaching.
type attached struct {
	stdin io.WriteCloser
	io    cio.IO
}

func (a *attached) wrap(attach StdioCallback) StdioCallback {
	if attach == nil {
		return nil // the root package refuses it, as it should
	}
	return func(dio *cio.DirectIO) (cio.IO, error) {
		a.stdin = dio.Stdin
		rio, err := attach(dio)
		a.io = rio
		return rio, err
	}
}

func (a *attached) release() {
	if a.io != nil {
		a.io.Cancel()
		_ = a.io.Close()
	}
}

// messageError says what moby said while keeping containerd's error as the
// cause.
type messageError struct {
	msg   string
	cause error
}

func (e *messageError) Error() string { return e.msg }
func (e *messageError) Unwrap() error { return e.cause }

func withMessage(msg string, cause error) error { return &messageError{msg: msg, cause: cause} }

// wrapf prefixes msg, keeping err's class.
func wrapf(err error, msg string) error {
	return errclass.Classify(&messageError{msg: msg + ": " + err.Error(), cause: err})
}

var errIDInUse = errors.New("id already in use")

// msgNotRunning is moby's text for a container without a task.
const msgNotRunning = "container is not running"

var _ Client = (*client)(nil)
