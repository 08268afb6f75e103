// Package pluginexec is a plugin executor built on libcontainerd, in the
// shape of moby v27's plugin/executor/containerd: a daemon's plugin manager
// creates, restores, signals and watches plugin containers through it, and
// hears about each plugin's exit once, through its ExitHandler.
//
// Where it goes further than moby's: a plugin whose exit arrives while
// Create or Restore is still running is not lost (nor reported for a create
// that failed); an exit is matched to the plugin by pid, so the exit of a
// replaced container is not taken for its successor's; exec exits are not
// plugin exits; and Close detaches from the plugins' stdio without removing
// their FIFOs, so a new executor on the same directories can Restore them
// with their output intact.
package pluginexec

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/internal/errclass"
	"github.com/lcdkit/libcontainerd/types"
)

// ExitHandler is told when a plugin has exited.
type ExitHandler interface {
	HandleExitEvent(id string) error
}

// Executor runs plugins as containers in one containerd namespace.
type Executor struct {
	rootDir     string
	client      types.Client
	exitHandler ExitHandler
	shim        string
	shimOpts    interface{}

	mu      sync.Mutex
	plugins map[string]*plugin
}

// New returns an executor for namespace ns, keeping the plugins' bundles
// under rootDir and creating them on shim with shimOpts (runtime options,
// e.g. *runcoptions.Options). Close releases it.
func New(ctx context.Context, rootDir string, cli *containerd.Client, ns string, exitHandler ExitHandler, shim string, shimOpts interface{}) (*Executor, error) {
	if exitHandler == nil {
		return nil, errclass.InvalidParameter(errors.New("nil exit handler"))
	}
	e := &Executor{
		rootDir:     rootDir,
		exitHandler: exitHandler,
		shim:        shim,
		shimOpts:    shimOpts,
		plugins:     map[string]*plugin{},
	}
	client, err := libcontainerd.NewClient(ctx, cli, rootDir, ns, e)
	if err != nil {
		return nil, fmt.Errorf("error creating containerd exec client: %w", err)
	}
	e.client = client
	return e, nil
}

// plugin is one plugin container and its task.
type plugin struct {
	id  string
	ctr types.Container
	tsk types.Task
	pid uint32
	io  *pluginIO

	// ready is closed once Create or Restore has decided whether the
	// plugin runs (ok); an exit that arrives before waits for it.
	ready chan struct{}
	ok    bool
}

func newPlugin(id string, ctr types.Container, tsk types.Task, streams *pluginIO) *plugin {
	return &plugin{id: id, ctr: ctr, tsk: tsk, pid: tsk.Pid(), io: streams, ready: make(chan struct{})}
}

// settle records the decision and wakes a waiting exit.
func (p *plugin) settle(ok bool) {
	p.ok = ok
	close(p.ready)
}

// deleteTaskAndContainer removes the plugin's task (whatever its state) and
// its container; NotFound at either step means it is gone already.
func (p *plugin) deleteTaskAndContainer(ctx context.Context) {
	logger := log.G(ctx).WithField("plugin", p.id)
	if p.tsk != nil {
		if err := p.tsk.ForceDelete(ctx); err != nil && !errclass.IsNotFound(err) {
			logger.WithError(err).Error("failed to delete plugin task from containerd")
		}
	}
	if err := p.ctr.Delete(ctx); err != nil && !errclass.IsNotFound(err) {
		logger.WithError(err).Error("failed to delete plugin container from containerd")
	}
}

// Create creates and starts plugin id: its container (replacing a stale
// one), then its task with stdout and stderr copied to the writers (closed
// when the plugin's output ends) and no stdin. On failure nothing is left:
// no task, container or bundle directory.
func (e *Executor) Create(id string, spec specs.Spec, stdout, stderr io.WriteCloser) error {
	ctx := context.Background()
	if old := e.lookup(id); old != nil {
		// Replaced on purpose: its exit (from ReplaceContainer's
		// force-delete) is no news to the caller.
		e.forget(old)
	}
	ctr, err := libcontainerd.ReplaceContainer(ctx, e.client, id, &spec, e.shim, e.shimOpts)
	if err != nil {
		return fmt.Errorf("error creating containerd container for plugin: %w", err)
	}
	streams := newPluginIO(stdout, stderr)
	tsk, err := ctr.NewTask(ctx, "", false, streams.attach)
	if err != nil {
		if derr := ctr.Delete(ctx); derr != nil && !errclass.IsNotFound(derr) {
			log.G(ctx).WithError(derr).WithField("plugin", id).Error("failed to delete plugin container from containerd")
		}
		return err
	}
	// Registered before the start, so an exit right after it finds the
	// plugin (and waits for the outcome).
	p := newPlugin(id, ctr, tsk, streams)
	e.register(p)
	if err := tsk.Start(ctx); err != nil {
		e.forget(p)
		p.settle(false)
		p.deleteTaskAndContainer(ctx)
		return err
	}
	p.settle(true)
	return nil
}

// Restore reattaches to plugin id after a restart, its output copied to
// stdout and stderr. alive is false, with nil error, if the plugin no longer
// runs; then whatever is left of it is removed.
func (e *Executor) Restore(id string, stdout, stderr io.WriteCloser) (alive bool, err error) {
	ctx := context.Background()
	ctr, err := e.client.LoadContainer(ctx, id)
	if err != nil {
		if errclass.IsNotFound(err) {
			return false, nil
		}
		return false, err
	}
	streams := newPluginIO(stdout, stderr)
	tsk, err := ctr.AttachTask(ctx, streams.attach)
	if err != nil {
		if errclass.IsNotFound(err) {
			(&plugin{id: id, ctr: ctr}).deleteTaskAndContainer(ctx)
			return false, nil
		}
		return false, err
	}
	p := newPlugin(id, ctr, tsk, streams)
	e.register(p)
	s, err := tsk.Status(ctx)
	switch {
	case err != nil && !errclass.IsNotFound(err):
		e.forget(p)
		p.settle(false)
		streams.detach()
		return false, err
	case err != nil || s.Status == containerd.Stopped:
		// Gone, or exited while nobody watched: not ours to report.
		e.forget(p)
		p.settle(false)
		p.deleteTaskAndContainer(ctx)
		return false, nil
	}
	p.settle(true)
	return true, nil
}

// IsRunning reports whether plugin id runs; an unknown plugin is NotFound.
func (e *Executor) IsRunning(id string) (bool, error) {
	p := e.lookup(id)
	if p == nil {
		return false, errclass.NotFound(fmt.Errorf("unknown plugin %q", id))
	}
	s, err := p.tsk.Status(context.Background())
	return s.Status == containerd.Running, err
}

// Signal sends signal to plugin id.
func (e *Executor) Signal(id string, signal syscall.Signal) error {
	p := e.lookup(id)
	if p == nil {
		return errclass.NotFound(fmt.Errorf("unknown plugin %q", id))
	}
	return p.tsk.Kill(context.Background(), signal)
}

// ProcessEvent handles the events of the executor's namespace: a plugin's
// exit removes its task and container, then goes to the exit handler, once.
// Every other event is ignored.
func (e *Executor) ProcessEvent(id string, et types.EventType, ei types.EventInfo) error {
	if et != types.EventExit || ei.ProcessID != id {
		return nil // not a plugin's exit (an exec's, say)
	}
	p := e.lookup(id)
	if p == nil {
		log.G(context.TODO()).WithField("id", id).Warn("Received exit event for an unknown plugin")
		return nil
	}
	<-p.ready
	if !p.ok || (ei.Pid != 0 && ei.Pid != p.pid) {
		return nil // its create failed, or it is another incarnation's exit
	}
	if !e.forget(p) {
		return nil // handled already
	}
	p.deleteTaskAndContainer(context.Background())
	return e.exitHandler.HandleExitEvent(ei.ContainerID)
}

// Close stops the executor's event stream and detaches from the plugins'
// stdio (their FIFOs stay, so a new executor can Restore them). The plugins
// keep running.
func (e *Executor) Close() error {
	var err error
	if closer, ok := e.client.(io.Closer); ok {
		err = closer.Close()
	}
	e.mu.Lock()
	plugins := e.plugins
	e.plugins = map[string]*plugin{}
	e.mu.Unlock()
	for _, p := range plugins {
		p.io.detach()
	}
	return err
}

func (e *Executor) register(p *plugin) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.plugins[p.id] = p
}

// forget removes p if it is still the plugin registered under its ID, and
// reports whether it was.
func (e *Executor) forget(p *plugin) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.plugins[p.id] != p {
		return false
	}
	delete(e.plugins, p.id)
	return true
}

func (e *Executor) lookup(id string) *plugin {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.plugins[id]
}

// pluginIO copies a plugin's stdout and stderr to the executor's writers.
// Its Wait covers the copiers, so deleting the task drains the output first.
type pluginIO struct {
	cio.IO
	dio            *cio.DirectIO
	stdout, stderr io.WriteCloser
	copiers        sync.WaitGroup
}

func newPluginIO(stdout, stderr io.WriteCloser) *pluginIO {
	return &pluginIO{stdout: stdout, stderr: stderr}
}

// attach is the stdio callback.
func (s *pluginIO) attach(dio *cio.DirectIO) (cio.IO, error) {
	if dio.Stdin != nil {
		// Never asked for; refuse rather than leave a stdin nobody writes.
		_ = dio.Stdin.Close()
		return nil, errclass.System(errors.New("plugin stdin was opened"))
	}
	s.IO, s.dio = dio, dio
	s.copy(s.stdout, dio.Stdout)
	s.copy(s.stderr, dio.Stderr)
	return s, nil
}

func (s *pluginIO) copy(dst io.WriteCloser, src io.Reader) {
	if dst == nil {
		dst = discard{}
	}
	if src == nil { // a terminal has no stderr
		_ = dst.Close()
		return
	}
	s.copiers.Add(1)
	go func() {
		defer s.copiers.Done()
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
	}()
}

// Wait waits for the copiers, then for the FIFOs.
func (s *pluginIO) Wait() {
	s.copiers.Wait()
	s.IO.Wait()
}

// detach closes our ends of the output FIFOs without removing them (the
// shim holds the other ends) and waits for the copiers to stop.
func (s *pluginIO) detach() {
	if s == nil || s.dio == nil {
		return
	}
	for _, r := range []io.Closer{s.dio.Stdout, s.dio.Stderr} {
		if r != nil {
			_ = r.Close()
		}
	}
	s.copiers.Wait()
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
func (discard) Close() error                { return nil }
