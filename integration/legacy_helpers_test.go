package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/lcdkit/libcontainerd/legacy"
)

// recorder keeps what a test's callbacks were given, and wakes every waiter
// on each addition.
type recorder[E any] struct {
	mu     sync.Mutex
	items  []E
	notify chan struct{}
}

func newRecorder[E any]() *recorder[E] { return &recorder[E]{notify: make(chan struct{})} }

func (r *recorder[E]) add(e E) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items = append(r.items, e)
	close(r.notify)
	r.notify = make(chan struct{})
}

func (r *recorder[E]) snapshot() []E {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]E(nil), r.items...)
}

// wait waits (bounded) until cond holds over what was recorded.
func (r *recorder[E]) wait(t testing.TB, what string, cond func([]E) bool) []E {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		changed, items := r.notify, append([]E(nil), r.items...)
		r.mu.Unlock()
		if cond(items) {
			return items
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s; have %+v", waitTimeout, what, items)
		}
	}
}

// legacyEvent is one event a legacy backend received.
type legacyEvent struct {
	Type legacy.EventType
	Info legacy.EventInfo
}

type legacyBackend struct{ *recorder[legacyEvent] }

func newLegacyBackend() legacyBackend { return legacyBackend{newRecorder[legacyEvent]()} }

func (b legacyBackend) ProcessEvent(containerID string, et legacy.EventType, ei legacy.EventInfo) error {
	b.add(legacyEvent{et, ei})
	return nil
}

// forContainer returns the events of one container, in order.
func (b legacyBackend) forContainer(id string) []legacyEvent {
	var out []legacyEvent
	for _, e := range b.snapshot() {
		if e.Info.ContainerID == id {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent waits for an event of type et for the process, and returns it.
func (b legacyBackend) waitEvent(t testing.TB, et legacy.EventType, containerID, processID string) legacyEvent {
	t.Helper()
	var found legacyEvent
	b.wait(t, string(et)+" of "+containerID+"/"+processID, func(evs []legacyEvent) bool {
		for _, e := range evs {
			if e.Type == et && e.Info.ContainerID == containerID && (processID == "" || e.Info.ProcessID == processID) {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

// rpcHooks injects failures into and captures requests of the unary RPCs
// of one test's containerd client.
type rpcHooks struct {
	mu          sync.Mutex
	failStart   map[string]error // init task start of container → error
	checkpoints []*tasks.CheckpointTaskRequest
}

func (h *rpcHooks) failNextStart(containerID string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failStart == nil {
		h.failStart = map[string]error{}
	}
	h.failStart[containerID] = err
}

func (h *rpcHooks) checkpointRequests() []*tasks.CheckpointTaskRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*tasks.CheckpointTaskRequest(nil), h.checkpoints...)
}

func (h *rpcHooks) interceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply interface{}, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		switch r := req.(type) {
		case *tasks.StartRequest:
			if r.ExecID == "" {
				h.mu.Lock()
				err := h.failStart[r.ContainerID]
				delete(h.failStart, r.ContainerID)
				h.mu.Unlock()
				if err != nil {
					return err
				}
			}
		case *tasks.CheckpointTaskRequest:
			h.mu.Lock()
			h.checkpoints = append(h.checkpoints, proto.Clone(r).(*tasks.CheckpointTaskRequest))
			h.mu.Unlock()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// legacyFixture is one test's legacy client on a fresh namespace and state
// dir, over a containerd client with rpcHooks.
type legacyFixture struct {
	t        testing.TB
	ctx      context.Context
	ns       string
	stateDir string
	raw      *containerd.Client
	hooks    *rpcHooks
	backend  legacyBackend
	client   legacy.Client
}

func newLegacyFixture(t testing.TB) *legacyFixture {
	t.Helper()
	ctx, ns := env.Context(t)
	f := &legacyFixture{t: t, ctx: ctx, ns: ns, stateDir: t.TempDir(), hooks: &rpcHooks{}, backend: newLegacyBackend()}
	raw, err := env.Client(grpc.WithChainUnaryInterceptor(f.hooks.interceptor()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	f.raw = raw
	f.client = f.newClient(f.backend)
	return f
}

// newClient makes another legacy client on the same namespace and state
// dir, as a restarted daemon would.
func (f *legacyFixture) newClient(b legacy.Backend) legacy.Client {
	f.t.Helper()
	c, err := legacy.NewClient(f.ctx, f.raw, f.stateDir, f.ns, b)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { closeClient(f.t, c) })
	return c
}

func closeClient(t testing.TB, c interface{}) {
	closer, ok := c.(interface{ Close() error })
	if !ok {
		t.Errorf("%T has no Close", c)
		return
	}
	if err := closer.Close(); err != nil {
		t.Errorf("close client: %v", err)
	}
}

func (f *legacyFixture) spec(id string, opts ...oci.SpecOpts) *specs.Spec {
	f.t.Helper()
	s, err := oci.GenerateSpec(f.ctx, nil, &containers.Container{ID: id}, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// create creates container id running args.
func (f *legacyFixture) create(id string, args ...string) {
	f.t.Helper()
	if err := f.client.Create(f.ctx, id, f.spec(id, env.SpecOpts(args...)...), "io.containerd.runc.v2", env.RuncOptions()); err != nil {
		f.t.Fatalf("Create(%s): %v", id, err)
	}
}

// run creates and starts container id running args.
func (f *legacyFixture) run(id string, args ...string) int {
	f.t.Helper()
	f.create(id, args...)
	pid, err := f.client.Start(f.ctx, id, "", false, newStdio().attach)
	if err != nil {
		f.t.Fatalf("Start(%s): %v", id, err)
	}
	return pid
}

// remove kills the container's task if it runs, deletes it and the
// container, and checks nothing is left.
func (f *legacyFixture) remove(c legacy.Client, id string) {
	f.t.Helper()
	if s, err := c.Status(f.ctx, id); err == nil {
		if s != containerd.Stopped {
			if err := c.SignalProcess(f.ctx, id, legacy.InitProcessName, syscall.SIGKILL); err != nil {
				f.t.Fatal(err)
			}
			f.waitExit(id, "")
		}
		if _, _, err := c.DeleteTask(f.ctx, id); err != nil {
			f.t.Fatalf("DeleteTask(%s): %v", id, err)
		}
	}
	if err := c.Delete(f.ctx, id); err != nil {
		f.t.Fatalf("Delete(%s): %v", id, err)
	}
	if _, err := f.raw.ContainerService().Get(f.ctx, id); err == nil {
		f.t.Errorf("container %s still exists", id)
	}
	if _, err := os.Stat(f.bundle(id)); !os.IsNotExist(err) {
		f.t.Errorf("bundle of %s still exists (%v)", id, err)
	}
}

func (f *legacyFixture) bundle(id string) string { return filepath.Join(f.stateDir, id) }

// waitExit waits (bounded) for a process to exit, through the raw client.
func (f *legacyFixture) waitExit(id, execID string) uint32 {
	f.t.Helper()
	return waitRawExit(f.t, f.ctx, f.raw, id, execID)
}

// processExists asks containerd whether the task (execID "") or exec exists.
func (f *legacyFixture) processExists(id, execID string) bool {
	_, err := f.raw.TaskService().Get(f.ctx, &tasks.GetRequest{ContainerID: id, ExecID: execID})
	return err == nil
}

// fifosOf lists the FIFOs of processID left in the container's bundle.
func (f *legacyFixture) fifosOf(id, processID string) []string {
	entries, _ := os.ReadDir(f.bundle(id))
	var out []string
	for _, e := range entries {
		if e.Type()&os.ModeNamedPipe != 0 && strings.HasPrefix(e.Name(), processID+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// barrier returns once every event of the container queued so far has
// been handled, cleanup after it included: events of one container are
// handled in order, so a pause and resume delivered means the rest was.
func (f *legacyFixture) barrier(c legacy.Client, b legacyBackend, id string) {
	f.t.Helper()
	before := len(b.forContainer(id))
	if err := c.Pause(f.ctx, id); err != nil {
		f.t.Fatal(err)
	}
	if err := c.Resume(f.ctx, id); err != nil {
		f.t.Fatal(err)
	}
	b.wait(f.t, "resumed of "+id, func(evs []legacyEvent) bool {
		n := 0
		for _, e := range evs {
			if e.Info.ContainerID != id {
				continue
			}
			n++
			if n > before && e.Type == legacy.EventResumed {
				return true
			}
		}
		return false
	})
}

func containsPid(pids []uint32, pid int) bool {
	for _, p := range pids {
		if int(p) == pid {
			return true
		}
	}
	return false
}
