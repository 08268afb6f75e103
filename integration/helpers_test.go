package integration

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	cerrdefs "github.com/containerd/containerd/errdefs" // the client's own: separate sentinels at v1.7.12
	"github.com/containerd/containerd/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/internal/testutil"
	"github.com/lcdkit/libcontainerd/types"
)

// waitTimeout bounds every wait for a container to do something.
const waitTimeout = 30 * time.Second

// rpcCounter counts the unary containerd RPCs a client makes.
type rpcCounter struct {
	mu    sync.Mutex
	calls map[string]int
	total atomic.Int64
}

func (r *rpcCounter) interceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply interface{}, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		r.total.Add(1)
		r.mu.Lock()
		if r.calls == nil {
			r.calls = map[string]int{}
		}
		r.calls[method]++
		r.mu.Unlock()
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

func (r *rpcCounter) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]int, len(r.calls))
	for k, v := range r.calls {
		m[k] = v
	}
	return m
}

// fixture is one test's client on a fresh namespace and state dir.
type fixture struct {
	t        testing.TB
	ctx      context.Context
	ns       string
	stateDir string
	raw      *containerd.Client // for assertions and waiting
	client   types.Client
	rpcs     *rpcCounter
	backend  *recordingBackend
	deliver  types.Backend // what the client reports to, if not backend
}

// newFixture makes the fixture; intercept, if given, sees (and may answer)
// every unary RPC of both the library's client and f.raw, after counting.
func newFixture(t testing.TB, intercept ...grpc.UnaryClientInterceptor) *fixture {
	t.Helper()
	return newFixtureDial(t, nil, intercept...)
}

// newFixtureDial is newFixture with extra dial options on the raw client
// (the fault injector's, say) before the RPC counter and intercept.
func newFixtureDial(t testing.TB, dial []grpc.DialOption, intercept ...grpc.UnaryClientInterceptor) *fixture {
	t.Helper()
	return newFixtureFull(t, dial, nil, intercept...)
}

// newFixtureBackend is newFixture whose client reports to deliver, which
// must record into rec (f.backend, for the waits).
func newFixtureBackend(t testing.TB, rec *recordingBackend, deliver types.Backend) *fixture {
	t.Helper()
	f := newFixtureFull(t, nil, deliver)
	f.backend = rec
	return f
}

func newFixtureFull(t testing.TB, dial []grpc.DialOption, deliver types.Backend, intercept ...grpc.UnaryClientInterceptor) *fixture {
	t.Helper()
	ctx, ns := env.Context(t)
	f := &fixture{t: t, ctx: ctx, ns: ns, stateDir: t.TempDir(), rpcs: &rpcCounter{}, backend: newRecordingBackend(), deliver: deliver}
	opts := append(dial, grpc.WithChainUnaryInterceptor(append([]grpc.UnaryClientInterceptor{f.rpcs.interceptor()}, intercept...)...))
	raw, err := env.Client(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	f.raw = raw
	f.client = f.newClient()
	return f
}

// newClient makes another libcontainerd client on the same namespace and
// state dir, as a restarted daemon would.
func (f *fixture) newClient() types.Client {
	var backend types.Backend = f.backend
	if f.deliver != nil {
		backend = f.deliver
	}
	c, err := libcontainerd.NewClient(f.ctx, f.raw, f.stateDir, f.ns, backend)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.(*libcontainerd.Client).Close() })
	return c
}

// spec builds a busybox spec running args.
func (f *fixture) spec(id string, args ...string) *specs.Spec {
	f.t.Helper()
	return f.specWith(id, env.SpecOpts(args...)...)
}

func (f *fixture) specWith(id string, opts ...oci.SpecOpts) *specs.Spec {
	f.t.Helper()
	s, err := oci.GenerateSpec(f.ctx, nil, &containers.Container{ID: id}, opts...)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

func (f *fixture) newContainer(id string, args ...string) types.Container {
	f.t.Helper()
	ctr, err := f.client.NewContainer(f.ctx, id, f.spec(id, args...), "io.containerd.runc.v2", env.RuncOptions())
	if err != nil {
		f.t.Fatalf("NewContainer(%s): %v", id, err)
	}
	return ctr
}

// waitExit waits (bounded) for a process to exit, through the raw client.
func (f *fixture) waitExit(id, execID string) uint32 {
	f.t.Helper()
	return waitRawExit(f.t, f.ctx, f.raw, id, execID)
}

// waitRawExit waits (bounded) for a task (execID "") or exec to exit and
// returns its exit status, asking containerd directly.
func waitRawExit(t testing.TB, ctx context.Context, raw *containerd.Client, id, execID string) uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	r, err := raw.TaskService().Wait(ctx, &tasks.WaitRequest{ContainerID: id, ExecID: execID})
	if err != nil {
		t.Fatalf("wait for %s/%s: %v", id, execID, err)
	}
	return r.ExitStatus
}

func (f *fixture) bundle(id string) string { return filepath.Join(f.stateDir, id) }

// fifos lists the FIFOs left in a bundle dir.
func (f *fixture) fifos(id string) []string {
	entries, _ := os.ReadDir(f.bundle(id))
	var out []string
	for _, e := range entries {
		if e.Type()&os.ModeNamedPipe != 0 {
			out = append(out, e.Name())
		}
	}
	return out
}

func (f *fixture) assertNoFIFOs(id string) {
	f.t.Helper()
	if left := f.fifos(id); len(left) > 0 {
		f.t.Errorf("FIFOs left in bundle of %s: %v", id, left)
	}
}

// assertNoTask checks containerd has no task (execID "") or exec.
func (f *fixture) assertNoProcess(id, execID string) {
	f.t.Helper()
	_, err := f.raw.TaskService().Get(f.ctx, &tasks.GetRequest{ContainerID: id, ExecID: execID})
	if err == nil {
		f.t.Errorf("process %s/%s still exists", id, execID)
	}
}

// assertGone checks nothing of a container is left: not in containerd, no
// task, no bundle dir.
func (f *fixture) assertGone(id string) {
	f.t.Helper()
	if _, err := f.raw.ContainerService().Get(f.ctx, id); !cerrdefs.IsNotFound(err) {
		f.t.Errorf("container %s still in containerd (err %v)", id, err)
	}
	f.assertNoProcess(id, "")
	if _, err := os.Stat(f.bundle(id)); !os.IsNotExist(err) {
		f.t.Errorf("bundle dir of %s still exists (err %v)", id, err)
	}
}

// deleteContainer deletes ctr and checks nothing of it is left.
func (f *fixture) deleteContainer(t testing.TB, ctr types.Container, id string) {
	t.Helper()
	if err := ctr.Delete(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.assertGone(id)
}

// stdio is a test's end of a process's FIFOs: it collects stdout and stderr
// and keeps stdin for writing.
type stdio struct {
	mu     sync.Mutex
	out    bytes.Buffer
	errBuf bytes.Buffer
	stdin  io.WriteCloser
	wg     sync.WaitGroup
	// closeStdinInAttach closes stdin inside the callback: before the
	// process exists.
	closeStdinInAttach bool
	lines              chan string
}

func newStdio() *stdio { return &stdio{lines: make(chan string, 1024)} }

type lockedWriter struct {
	s   *stdio
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		select {
		case w.s.lines <- strings.TrimSpace(l):
		default:
		}
	}
	return w.buf.Write(p)
}

// waitIO makes the IO's Wait cover our copiers, as moby's daemon does.
type waitIO struct {
	*cio.DirectIO
	wg *sync.WaitGroup
}

func (w waitIO) Wait() { w.wg.Wait(); w.DirectIO.Wait() }

func (s *stdio) attach(dio *cio.DirectIO) (cio.IO, error) {
	s.stdin = dio.Stdin
	if s.closeStdinInAttach && dio.Stdin != nil {
		if err := dio.Stdin.Close(); err != nil {
			return nil, err
		}
	}
	copyTo := func(dst io.Writer, src io.Reader) {
		if src == nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			_, _ = io.Copy(dst, src)
		}()
	}
	copyTo(lockedWriter{s, &s.out}, dio.Stdout)
	copyTo(lockedWriter{s, &s.errBuf}, dio.Stderr)
	return waitIO{dio, &s.wg}, nil
}

func (s *stdio) stdout() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// waitLine waits (bounded) for a line of output equal to want.
func (s *stdio) waitLine(t testing.TB, want string) {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case l := <-s.lines:
			if l == want {
				return
			}
		case <-timeout:
			t.Fatalf("no line %q in output %q", want, s.stdout())
		}
	}
}

// mobyClass finds the moby errdefs marker the way moby's errdefs does:
// walking Cause/Unwrap from the top.
func mobyClass(err error) string {
	for err != nil {
		switch err.(type) {
		case interface{ NotFound() }:
			return "NotFound"
		case interface{ Conflict() }:
			return "Conflict"
		case interface{ InvalidParameter() }:
			return "InvalidParameter"
		case interface{ Unavailable() }:
			return "Unavailable"
		case interface{ System() }:
			return "System"
		case interface{ NotImplemented() }:
			return "NotImplemented"
		case interface{ Cancelled() }:
			return "Cancelled"
		case interface{ DeadlineExceeded() }:
			return "Deadline"
		case interface{ Forbidden() }:
			return "Forbidden"
		case interface{ Unknown() }:
			return "Unknown"
		}
		if c, ok := err.(interface{ Cause() error }); ok {
			err = c.Cause()
			continue
		}
		err = errors.Unwrap(err)
	}
	return ""
}

// assertClass checks both classifiers put err in class.
func assertClass(t testing.TB, err error, class string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %s error, got nil", class)
	}
	if got := mobyClass(err); got != class {
		t.Errorf("moby errdefs class of %q = %q, want %s", err, got, class)
	}
	for _, target := range testutil.ErrdefsTargets(class) {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(%q, containerd %s sentinel %T) = false", err, class, target)
		}
	}
}

// recordingBackend records the events it is given. Every event closes and
// replaces notify, waking all waiters: several goroutines wait at once, and
// a single wake-up token could go to the wrong one.
type recordingBackend struct {
	mu     sync.Mutex
	events []event
	at     []time.Time // when each event arrived
	notify chan struct{}
}

type event struct {
	Type types.EventType
	Info types.EventInfo
}

func newRecordingBackend() *recordingBackend {
	return &recordingBackend{notify: make(chan struct{})}
}

func (b *recordingBackend) ProcessEvent(containerID string, et types.EventType, ei types.EventInfo) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.events = append(b.events, event{et, ei})
	b.at = append(b.at, time.Now())
	close(b.notify)
	b.notify = make(chan struct{})
	return nil
}

// changed returns a channel closed by the next event.
func (b *recordingBackend) changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.notify
}

// waitFor polls cond (bounded): for state outside our process, such as
// output a container writes on its own schedule.
func waitFor(cond func() bool) bool {
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// forContainer returns the events recorded for one container, in order.
func (b *recordingBackend) forContainer(id string) []event {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []event
	for _, e := range b.events {
		if e.Info.ContainerID == id {
			out = append(out, e)
		}
	}
	return out
}

// exits counts the exits recorded per (container, process).
func (b *recordingBackend) exits() map[[2]string][]types.EventInfo {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[[2]string][]types.EventInfo{}
	for _, e := range b.events {
		if e.Type == types.EventExit {
			k := [2]string{e.Info.ContainerID, e.Info.ProcessID}
			out[k] = append(out[k], e.Info)
		}
	}
	return out
}

// exitTimes returns when each exit of a process arrived.
func (b *recordingBackend) exitTimes(container, process string) []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []time.Time
	for i, e := range b.events {
		if e.Type == types.EventExit && e.Info.ContainerID == container && e.Info.ProcessID == process {
			out = append(out, b.at[i])
		}
	}
	return out
}

// waitUntil waits (bounded) until cond holds over the recorded events,
// woken by each new event.
func (b *recordingBackend) waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		// Take the channel before checking, so an event between the check
		// and the wait still wakes us.
		changed := b.changed()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
	}
}
