package libcontainerd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/identifiers"
	"github.com/containerd/containerd/leases"
	"github.com/containerd/containerd/namespaces"
	runcoptions "github.com/containerd/containerd/runtime/v2/runc/options"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/lcdkit/libcontainerd/internal/errclass"
	"github.com/lcdkit/libcontainerd/internal/ledger"
	"github.com/lcdkit/libcontainerd/queue"
	"github.com/lcdkit/libcontainerd/types"

	// Metrics arrive as typeurl Anys of these types; importing them
	// registers the types so Stats can decode them.
	_ "github.com/containerd/cgroups/v3/cgroup1/stats"
	_ "github.com/containerd/cgroups/v3/cgroup2/stats"
)

// Client is the libcontainerd client for one containerd namespace. NewClient
// returns it as a types.Client; the concrete type adds Close.
type Client struct {
	client   *containerd.Client
	stateDir string
	ns       string
	backend  types.Backend
	logger   *log.Entry

	queue queue.Queue // per-container serial delivery to backend
	exits *exitState  // the one owner of exit state (exits.go)
	shims shimSockets // asked for exits while containerd is down
	// shimSocketDir is where containerd's shims serve (shimwatch.go).
	shimSocketDir string
	// orphans holds the containers whose task create or delete was cut off
	// with its outcome unknown: on 1.6 either can leave a shim containerd
	// does not show.
	orphans       sync.Map
	stream        *eventStream
	reconcileDone chan struct{}
	watches       sync.WaitGroup // shim watch goroutines (shimwatch.go)
	cancel        context.CancelFunc
	unhook        func() bool // releases the ctx watch NewClient registered

	// handlers guards closed and the queue's worker goroutines (the only
	// ones that call the backend), so that after Close nothing calls the
	// backend, and Close called from a handler does not wait for itself.
	handlers   sync.Mutex
	closed     bool
	inHandlers map[uint64]int

	closeOnce sync.Once
}

// Option configures a Client.
type Option func(*Client)

// NewClient returns a client for namespace ns that keeps bundle directories
// under stateDir and reports events to b. It returns at once, even if
// containerd is not serving yet.
func NewClient(ctx context.Context, cli *containerd.Client, stateDir, ns string, b types.Backend, opts ...Option) (types.Client, error) {
	if cli == nil {
		return nil, invalidParameter("nil containerd client")
	}
	if err := identifiers.Validate(ns); err != nil {
		return nil, errclass.InvalidParameter(fmt.Errorf("namespace %q: %w", ns, err))
	}
	if stateDir == "" {
		return nil, invalidParameter("empty state directory")
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, errclass.InvalidParameter(err)
	}
	c := &Client{
		client:   cli,
		stateDir: abs,
		ns:       ns,
		backend:  b,
		logger:   log.G(ctx).WithField("module", "libcontainerd").WithField("namespace", ns),
	}
	for _, o := range opts {
		o(c)
	}
	c.exits = newExitState(c)
	c.shimSocketDir = defaultShimSocketDir
	c.inHandlers = map[uint64]int{}
	c.queue.OnWorker = c.noteWorker
	c.stream = &eventStream{c: c, sentinel: newSentinelTopic(), done: make(chan struct{})}
	c.reconcileDone = make(chan struct{})
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	go c.stream.run(streamCtx)
	go c.runReconciler(streamCtx)
	// The stream ends with ctx, as in moby, or with Close.
	c.unhook = context.AfterFunc(ctx, cancel)
	return c, nil
}

// closeDrainTimeout bounds how long Close waits for queued events to reach
// the backend.
const closeDrainTimeout = 30 * time.Second

// Close stops the event stream, the reconciler and any shim watch, waits
// for their goroutines, and lets the events already queued reach the backend
// (bounded). Once it returns the backend is never called again: an event
// still queued then is dropped. Called from inside a handler (the backend's
// ProcessEvent), it returns promptly without waiting for the queue, which
// that very call holds up, and the events still queued are dropped. It does
// not close the containerd client, which belongs to the caller.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.unhook()
		c.exits.do(func(l *ledger.Ledger) { l.Close() })
		c.cancel()
		<-c.stream.done
		<-c.reconcileDone
		c.watches.Wait()
		if !c.inHandler() {
			ctx, cancel := context.WithTimeout(context.Background(), closeDrainTimeout)
			defer cancel()
			if werr := c.queue.Wait(ctx); werr != nil {
				err = errclass.Unavailable(fmt.Errorf("event handlers still running after %s: %w", closeDrainTimeout, werr))
			}
		}
		c.handlers.Lock()
		c.closed = true
		c.handlers.Unlock()
	})
	return err
}

// enterHandler reports whether the backend may be called (not after
// Close), and counts the call as running.
func (c *Client) enterHandler() bool {
	c.handlers.Lock()
	defer c.handlers.Unlock()
	return !c.closed
}

// noteWorker records the queue's worker goroutines as they start and end:
// the backend is only ever called on one (the queue's OnWorker). Reading a
// goroutine's number walks its stack, so it is done once per worker, not
// once per event.
func (c *Client) noteWorker(start bool) {
	gid := goroutineID()
	c.handlers.Lock()
	defer c.handlers.Unlock()
	if start {
		c.inHandlers[gid]++
	} else if c.inHandlers[gid]--; c.inHandlers[gid] <= 0 {
		delete(c.inHandlers, gid)
	}
}

// inHandler reports whether the calling goroutine is inside a backend call:
// one of the queue's workers, which run nothing else.
func (c *Client) inHandler() bool {
	gid := goroutineID()
	c.handlers.Lock()
	defer c.handlers.Unlock()
	return c.inHandlers[gid] > 0
}

// goroutineID reads the calling goroutine's number from its stack header
// ("goroutine 42 [running]:"): Go gives no other way to tell, and Close
// needs to know whether it runs inside a handler.
func goroutineID() uint64 {
	var buf [32]byte
	n := runtime.Stack(buf[:], false)
	var id uint64
	for _, b := range bytes.TrimPrefix(buf[:n], []byte("goroutine ")) {
		if b < '0' || b > '9' {
			break
		}
		id = id*10 + uint64(b-'0')
	}
	return id
}

// withNamespace puts the client's namespace on ctx (the containerd client's
// default namespace, if any, is not ours to rely on).
func (c *Client) withNamespace(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, c.ns)
}

// Version returns containerd's version.
func (c *Client) Version(ctx context.Context) (containerd.Version, error) {
	v, err := c.client.Version(c.withNamespace(ctx))
	return v, wrapError(err)
}

// createLeaseExpiry bounds how long the lease of a NewContainer with caller
// options can outlive a create whose clean-up could not reach containerd.
const createLeaseExpiry = time.Hour

// bundleDir is where a container's bundle (and its FIFOs) lives.
func (c *Client) bundleDir(id string) string { return filepath.Join(c.stateDir, id) }

// NewContainer creates a containerd container with its bundle directory. The
// caller's opts run first, then the spec, the runtime and the bundle.
//
// A failed call leaves no bundle dir it made and no lease. Recovery: after
// an Unavailable or context error the container may exist all the same (the
// create done, its answer lost), so a retry can get Conflict; call
// ReplaceContainer, which removes such a half-made container first.
func (c *Client) NewContainer(ctx context.Context, id string, spec *specs.Spec, shim string, runtimeOptions interface{}, opts ...containerd.NewContainerOpts) (types.Container, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	if spec == nil {
		return nil, invalidParameter("nil container spec")
	}
	if shim == "" {
		shim = c.client.Runtime()
	}
	ctx = c.withNamespace(ctx)
	bundle := c.bundleDir(id)
	if _, hasLease := leases.FromContext(ctx); len(opts) > 0 && !hasLease {
		// Caller options may create content or snapshots, which need a
		// lease as the containerd client would give them; ours need none,
		// so the common case stays a single RPC. Ours rather than the
		// client's WithLease: its lease stays for a day when the answer to
		// its create or delete is lost.
		leased, release, err := c.newLease(ctx, "container create lease", createLeaseExpiry, false)
		if err != nil {
			return nil, err
		}
		defer release()
		ctx = leased
	}

	record := containers.Container{ID: id, Runtime: containers.RuntimeInfo{Name: shim}}
	var created string // a bundle dir this call created, removed on failure
	allOpts := append(append([]containerd.NewContainerOpts(nil), opts...),
		containerd.WithSpec(spec),
		containerd.WithRuntime(shim, runtimeOptions),
		withBundle(bundle, spec, &created))
	for _, o := range allOpts {
		if err := applyContainerOpt(ctx, c.client, &record, o); err != nil {
			c.removeCreatedBundle(created)
			return nil, err
		}
	}
	record, err := c.client.ContainerService().Create(ctx, record)
	if err != nil {
		c.removeCreatedBundle(created)
		if errclass.IsAlreadyExists(err) {
			return nil, errIDInUse(err)
		}
		return nil, wrapError(err)
	}
	ctr, err := c.newContainer(record)
	if err != nil {
		return nil, err
	}
	ctr.setTask(taskNone)
	return ctr, nil
}

// applyContainerOpt runs one option. typeurl panics on runtime options it
// cannot marshal (a non-pointer value, say): caller input must not crash
// the daemon, so that becomes InvalidParameter.
func applyContainerOpt(ctx context.Context, cli *containerd.Client, record *containers.Container, o containerd.NewContainerOpts) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = errclass.InvalidParameter(fmt.Errorf("container option: %v", r))
		}
	}()
	return wrapError(o(ctx, cli, record))
}

func (c *Client) removeCreatedBundle(dir string) {
	if dir == "" {
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		c.logger.WithError(err).WithField("bundle", dir).Warn("failed to remove bundle dir of a failed create")
	}
}

// LoadContainer loads an existing container. Its runc options are recovered
// from the stored runtime options, so a loaded container behaves like one
// this client created (moby loses them across a daemon restart).
func (c *Client) LoadContainer(ctx context.Context, id string) (types.Container, error) {
	if err := validateID(id); err != nil {
		return nil, err
	}
	record, err := c.client.ContainerService().Get(c.withNamespace(ctx), id)
	if err != nil {
		if errclass.IsNotFound(err) {
			return nil, errNoSuchContainer(err)
		}
		return nil, wrapError(err)
	}
	return c.newContainer(record)
}

// newContainer builds the handle from a stored record: the decoded spec and
// runc options are cached so no later call needs a refresh RPC.
func (c *Client) newContainer(record containers.Container) (*container, error) {
	ctr := &container{client: c, id: record.ID, record: record, bundle: record.Labels[DockerContainerBundlePath]}
	if record.Spec != nil {
		var spec specs.Spec
		if err := json.Unmarshal(record.Spec.GetValue(), &spec); err != nil {
			return nil, errclass.System(fmt.Errorf("decode spec of container %s: %w", record.ID, err))
		}
		ctr.spec = &spec
	}
	if record.Runtime.Options != nil {
		v, err := typeurl.UnmarshalAny(record.Runtime.Options)
		if err != nil {
			c.logger.WithError(err).WithField("container", record.ID).Warn("cannot decode runtime options")
		} else if opts, ok := v.(*runcoptions.Options); ok {
			ctr.runcOptions = opts
		}
	}
	return ctr, nil
}

// validateID applies containerd's identifier rules before anything touches
// the filesystem: they also rule out path-like IDs ("a/b", "..").
func validateID(id string) error {
	if err := identifiers.Validate(id); err != nil {
		return errclass.InvalidParameter(err)
	}
	return nil
}

// ReplaceContainer creates a container, first removing a stale one with the
// same ID (its task force-deleted) if there is one. NotFound at any cleanup
// step means someone else already cleaned up, which is fine.
//
// Recovery: call it again. Each step takes the state an interrupted earlier
// call left (task killed or gone, container gone, container made again).
func ReplaceContainer(ctx context.Context, client types.Client, id string, spec *specs.Spec, shim string, runtimeOptions interface{}, opts ...containerd.NewContainerOpts) (types.Container, error) {
	create := func() (types.Container, error) {
		return client.NewContainer(ctx, id, spec, shim, runtimeOptions, opts...)
	}
	ctr, err := create()
	if err == nil || !errclass.IsConflict(err) {
		return ctr, err
	}
	log.G(ctx).WithField("container", id).Debug("a container with the same ID exists: removing the stale one")
	stale, err := client.LoadContainer(ctx, id)
	if err != nil {
		if errclass.IsNotFound(err) {
			return create()
		}
		return nil, fmt.Errorf("load stale container %s: %w", id, err)
	}
	if tsk, err := stale.Task(ctx); err == nil {
		if err := tsk.ForceDelete(ctx); err != nil && !errclass.IsNotFound(err) {
			return nil, fmt.Errorf("delete task of stale container %s: %w", id, err)
		}
	} else if !errclass.IsNotFound(err) {
		return nil, fmt.Errorf("load task of stale container %s: %w", id, err)
	}
	if err := stale.Delete(ctx); err != nil && !errclass.IsNotFound(err) {
		return nil, fmt.Errorf("delete stale container %s: %w", id, err)
	}
	return create()
}
