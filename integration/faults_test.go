package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/images"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/internal/errclass"
	"github.com/lcdkit/libcontainerd/internal/faults"
	"github.com/lcdkit/libcontainerd/legacy"
	"github.com/lcdkit/libcontainerd/types"
)

// Issue 13: every containerd RPC of every operation fails once, in turn,
// each of the three ways internal/faults knows (never sent; done but the
// answer lost; the caller's context cancelled in flight). For each case the
// error must be classified, the caller's documented recovery (the
// operation's doc comment says which) must succeed through the same handles,
// and containerd and the host must then be exactly as before the operation
// or exactly as after it; no started process may lose or repeat its exit,
// and no goroutine or fd may be left.

const shim = "io.containerd.runc.v2"

// faultOp is one public operation under test.
type faultOp struct {
	name string
	// setup and teardown make and remove what every case of the
	// operation shares (a container, a running task).
	setup, teardown func(t *testing.T)
	// prepare brings containerd to the state before the operation, the
	// same for every case.
	prepare func(t *testing.T) *faultRun
	probes  []string // exec IDs the state looks for
	extra   []string // paths outside the state dir the state includes
}

// faultRun is one case of an operation.
type faultRun struct {
	do func(ctx context.Context) error
	// recover is the caller's documented recovery after do failed, on a
	// fresh context.
	recover func(ctx context.Context, err error) error
	// finish removes what the case made, so the next prepare starts from
	// the same state.
	finish func(t *testing.T)
	// expect, if set, checks what the operation cannot recover by design
	// (its doc comment says what), once recovery has run.
	expect func(t *testing.T, kind faults.Kind)
}

// faultScope is where an operation's state is read.
type faultScope struct {
	raw      *containerd.Client
	ctx      context.Context
	stateDir string
}

func (s faultScope) snapshot(t testing.TB, op faultOp) hostState {
	return snapshot(t, s.raw, s.ctx, s.stateDir, op.probes, op.extra...)
}

// runFaultOp counts the operation's RPCs in one unarmed run, then runs one
// case per (k, kind).
func runFaultOp(t *testing.T, scope faultScope, op faultOp, table *faultTable) {
	t.Run(op.name, func(t *testing.T) {
		if op.setup != nil {
			op.setup(t)
		}
		if op.teardown != nil {
			defer op.teardown(t)
		}
		base := scope.snapshot(t, op)
		run := op.prepare(t)
		before := scope.snapshot(t, op)
		ctx, rec := faults.Begin(scope.ctx, 0, "")
		err := run.do(ctx)
		rec.Done()
		if err != nil {
			t.Fatalf("unarmed run: %v", err)
		}
		after := scope.snapshot(t, op)
		if reflect.DeepEqual(before, after) {
			t.Fatalf("the operation changed nothing: the state cannot tell before from after")
		}
		run.finish(t)
		if got := scope.snapshot(t, op); !reflect.DeepEqual(got, base) {
			t.Fatalf("finish does not restore the state: %s", diffState(base, got))
		}
		calls := rec.Calls()
		t.Logf("%d RPCs: %v", len(calls), calls)
		baseline := takeBaseline()
		for k := 1; k <= len(calls); k++ {
			for _, kind := range faults.Kinds {
				k, kind := k, kind
				name := fmt.Sprintf("%d-%s-%s", k, path.Base(calls[k-1]), kind)
				passed := t.Run(name, func(t *testing.T) {
					runFaultCase(t, scope, op, k, kind, calls[k-1], before, after)
				})
				table.add(op.name, kind, passed)
			}
		}
		baseline.check(t, op.name)
	})
}

func runFaultCase(t *testing.T, scope faultScope, op faultOp, k int, kind faults.Kind, method string, before, after hostState) {
	run := op.prepare(t)
	defer run.finish(t)
	if s := scope.snapshot(t, op); !reflect.DeepEqual(s, before) {
		t.Fatalf("state before the operation is not the counting run's: %s", diffState(before, s))
	}
	ctx, rec := faults.Begin(scope.ctx, k, kind)
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
				t.Errorf("operation panicked: %v", r)
			}
		}()
		return run.do(ctx)
	}()
	rec.Done()
	if rec.Fired() != method {
		t.Errorf("RPC %d was %q, in the counting run %q: the operation is not deterministic", k, rec.Fired(), method)
	}
	left := "no error"
	if err != nil {
		left = relation(scope.snapshot(t, op), before, after)
		if got, want := classOf(err), wantClass(kind); got != want {
			t.Errorf("error %q: class %q (moby %q), want %s for both classifiers", err, got, mobyClass(err), want)
		}
		rctx, cancel := context.WithTimeout(scope.ctx, waitTimeout)
		defer cancel()
		if rerr := run.recover(rctx, err); rerr != nil {
			t.Fatalf("operation failed with %q; its recovery failed: %v", err, rerr)
		}
	}
	if run.expect != nil {
		run.expect(t, kind)
	}
	s := scope.snapshot(t, op)
	switch {
	case reflect.DeepEqual(s, after):
		t.Logf("%v; left %s; recovered to the state after the operation", errText(err), left)
	case err == nil:
		t.Errorf("no error, but the state is not the operation's: %s", diffState(after, s))
	case reflect.DeepEqual(s, before):
		t.Logf("%v; left %s; recovered to the state before the operation", errText(err), left)
	default:
		t.Errorf("%v: after recovery the state is in between:\n  vs before: %s\n  vs after:  %s", errText(err), diffState(before, s), diffState(after, s))
	}
}

// relation says where s stands between the states before and after the
// operation.
func relation(s, before, after hostState) string {
	switch {
	case reflect.DeepEqual(s, before):
		return "the state before"
	case reflect.DeepEqual(s, after):
		return "the state after"
	}
	return "a state in between (" + diffState(before, s) + ")"
}

func errText(err error) string {
	if err == nil {
		return "no error"
	}
	return fmt.Sprintf("%q (%s)", err, classOf(err))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ignoreNotFound is the recovery's reading of a retried delete: NotFound
// means the failed call did delete it.
func ignoreNotFound(err error) error {
	if errclass.IsNotFound(err) {
		return nil
	}
	return err
}

// waitGone waits (bounded) for a process to exit, through the raw client.
func waitProcessExit(t testing.TB, raw *containerd.Client, ctx context.Context, id, execID string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, waitTimeout)
	defer cancel()
	if _, err := raw.TaskService().Wait(wctx, &tasks.WaitRequest{ContainerID: id, ExecID: execID}); err != nil {
		t.Fatalf("wait for %s/%s: %v", id, execID, err)
	}
}

// deleteRetry is the recovery of a failed Task.Delete or Process.Delete:
// delete again. After a delete whose answer was lost (after, cancel) the
// retry can only say NotFound: the exit status went with the process, by
// design (containerd keeps it until the delete); the backend's EventExit is
// where it survives. After one that never reached containerd, the retry
// returns it.
type deleteRetry struct {
	called bool
	status *containerd.ExitStatus
	err    error
}

func (r *deleteRetry) run(ctx context.Context, del func(context.Context) (*containerd.ExitStatus, error)) error {
	r.called = true
	r.status, r.err = del(ctx)
	return ignoreNotFound(r.err)
}

func (r *deleteRetry) expect(f *fixture, id, process string, pid uint32) func(*testing.T, faults.Kind) {
	return func(t *testing.T, kind faults.Kind) {
		if !r.called {
			return
		}
		if kind == faults.Before {
			if r.err != nil || r.status.ExitCode() != 0 {
				t.Errorf("retried delete after a delete that never reached containerd: status %v, %v; want exit 0", r.status, r.err)
			}
			return
		}
		if !errclass.IsNotFound(r.err) {
			t.Errorf("retried delete after one that took effect: %v, want NotFound", r.err)
		}
		f.backend.waitUntil(t, waitTimeout, "the exit of "+id+"/"+process, func() bool {
			for _, e := range f.backend.exits()[[2]string{id, process}] {
				if e.Pid == pid && e.ExitCode == 0 {
					return true
				}
			}
			return false
		})
	}
}

// fakeCriuTar is a checkpoint image as runc would leave one: a tar with
// criu's files.
func fakeCriuTar(t testing.TB) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range []string{"inventory.img", "pages-1.img"} {
		body := []byte("fake criu image " + name + "\n")
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// detachedCriu answers the checkpoint RPC as containerd does once criu has
// run (criu does not work on every host), storing the image under the
// caller's lease. Its own writes are not the operation's RPCs.
func detachedCriu(f **fixture, image []byte) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply interface{}, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method != checkpointMethod {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		ctx = faults.Detach(ctx)
		store := (*f).raw.ContentStore()
		criu, err := writeTestBlob(ctx, store, images.MediaTypeContainerd1Checkpoint, image)
		if err != nil {
			return err
		}
		spec, err := writeTestBlob(ctx, store, images.MediaTypeContainerd1CheckpointConfig, []byte("spec"))
		if err != nil {
			return err
		}
		reply.(*tasks.CheckpointTaskResponse).Descriptors = []*apitypes.Descriptor{
			{MediaType: criu.MediaType, Digest: criu.Digest.String(), Size: criu.Size},
			{MediaType: spec.MediaType, Digest: spec.Digest.String(), Size: spec.Size},
		}
		return nil
	}
}

// TestFaultMatrix runs every case of every operation of the root package
// and the legacy client, and prints how many passed.
func TestFaultMatrix(t *testing.T) {
	start := time.Now()
	table := &faultTable{}
	var f *fixture
	f = newFaultFixture(t, detachedCriu(&f, fakeCriuTar(t)))
	scope := faultScope{f.raw, f.ctx, f.stateDir}
	for _, op := range rootFaultOps(t, f) {
		runFaultOp(t, scope, op, table)
	}
	lf := newLegacyFaultFixture(t)
	for _, op := range legacyFaultOps(lf) {
		runFaultOp(t, faultScope{lf.raw, lf.ctx, lf.stateDir}, op, table)
	}
	checkExits(t, func() *exitLedger { return ledgerOf(f.backend) })
	checkExits(t, func() *exitLedger { return legacyLedgerOf(lf.backend) })
	t.Logf("fault matrix, %s:\n%s", time.Since(start).Round(time.Millisecond), table)
}

func rootFaultOps(t *testing.T, f *fixture) []faultOp {
	newContainer := func(name, id string, opts ...containerd.NewContainerOpts) faultOp {
		spec := f.spec(id, "sleep", "1000")
		return faultOp{name: name, prepare: func(t *testing.T) *faultRun {
			var ctr types.Container
			return &faultRun{
				do: func(ctx context.Context) (err error) {
					ctr, err = f.client.NewContainer(ctx, id, spec, shim, env.RuncOptions(), opts...)
					return err
				},
				recover: func(ctx context.Context, _ error) (err error) {
					ctr, err = libcontainerd.ReplaceContainer(ctx, f.client, id, spec, shim, env.RuncOptions(), opts...)
					return err
				},
				finish: func(t *testing.T) {
					if ctr != nil {
						must(t, ctr.Delete(f.ctx))
					}
				},
			}
		}}
	}

	// A container of the operation's own, made once.
	var ctrs = map[string]types.Container{}
	ownContainer := func(id string, args ...string) (setup, teardown func(*testing.T)) {
		return func(t *testing.T) {
				ctr, err := f.client.NewContainer(f.ctx, id, f.spec(id, args...), shim, env.RuncOptions())
				must(t, err)
				ctrs[id] = ctr
			}, func(t *testing.T) {
				must(t, ctrs[id].Delete(f.ctx))
			}
	}
	newTask := func(name, id string, withStdin bool, checkpointDir func() string) faultOp {
		setup, teardown := ownContainer(id, "sleep", "1000")
		return faultOp{name: name, setup: setup, teardown: teardown, prepare: func(t *testing.T) *faultRun {
			var task types.Task
			create := func(ctx context.Context) (err error) {
				task, err = ctrs[id].NewTask(ctx, checkpointDir(), withStdin, newStdio().attach)
				return err
			}
			return &faultRun{
				do:      create,
				recover: func(ctx context.Context, _ error) error { return create(ctx) },
				finish: func(t *testing.T) {
					if task != nil {
						must(t, task.ForceDelete(f.ctx))
					}
				},
			}
		}}
	}
	noCheckpoint := func() string { return "" }
	var restoreDir string
	fromCheckpoint := func() string { return restoreDir }

	// Tasks started once, for the operations on their execs and for
	// checkpoints.
	var host, ckpt types.Task
	hostSetup := func(id string, task *types.Task) func(*testing.T) {
		return func(t *testing.T) {
			ctr, err := f.client.NewContainer(f.ctx, id, f.spec(id, "sleep", "1000"), shim, env.RuncOptions())
			must(t, err)
			ctrs[id] = ctr
			tk, err := ctr.NewTask(f.ctx, "", false, newStdio().attach)
			must(t, err)
			must(t, tk.Start(f.ctx))
			*task = tk
		}
	}
	hostTeardown := func(id string, task *types.Task) func(*testing.T) {
		return func(t *testing.T) {
			must(t, (*task).ForceDelete(f.ctx))
			must(t, ctrs[id].Delete(f.ctx))
		}
	}
	checkpointDir := filepath.Join(t.TempDir(), "checkpoint")

	tdSetup, tdTeardown := ownContainer("td", "true")
	startSetup, startTeardown := ownContainer("ts", "sleep", "1000")
	fdSetup, fdTeardown := ownContainer("fd", "sleep", "1000")

	return []faultOp{
		newContainer("NewContainer", "nc"),
		newContainer("NewContainer (opts: lease)", "ncl", containerd.WithAdditionalContainerLabels(map[string]string{"test": "lease"})),
		newTask("NewTask", "nt", false, noCheckpoint),
		newTask("NewTask (stdin)", "nts", true, noCheckpoint),
		func() faultOp {
			op := newTask("NewTask (checkpoint dir)", "ntc", false, fromCheckpoint)
			setup := op.setup
			op.setup = func(t *testing.T) {
				restoreDir = notACheckpoint(t) // restores fail at Start, not here
				setup(t)
			}
			return op
		}(),
		{name: "Task.Start", setup: startSetup, teardown: startTeardown, prepare: func(t *testing.T) *faultRun {
			task, err := ctrs["ts"].NewTask(f.ctx, "", false, newStdio().attach)
			must(t, err)
			return &faultRun{
				do: task.Start,
				recover: func(ctx context.Context, _ error) error {
					st, err := task.Status(ctx)
					switch {
					case err != nil:
						return err
					case st.Status == containerd.Created:
						return task.Start(ctx)
					case st.Status == containerd.Running:
						return nil
					}
					return fmt.Errorf("task is %s", st.Status)
				},
				finish: func(t *testing.T) { must(t, task.ForceDelete(f.ctx)) },
			}
		}},
		{name: "Task.Exec", probes: []string{"x"}, setup: hostSetup("host", &host), teardown: hostTeardown("host", &host), prepare: func(t *testing.T) *faultRun {
			var p types.Process
			exec := func(ctx context.Context) (err error) {
				p, err = host.Exec(ctx, "x", execSpec("sleep", "1000"), false, newStdio().attach)
				return err
			}
			return &faultRun{
				do:      exec,
				recover: func(ctx context.Context, _ error) error { return exec(ctx) },
				finish: func(t *testing.T) {
					if p == nil {
						return
					}
					must(t, p.Kill(f.ctx, syscall.SIGKILL))
					waitProcessExit(t, f.raw, f.ctx, "host", "x")
					_, err := p.Delete(f.ctx)
					must(t, err)
				},
			}
		}},
		{name: "Process.Delete", probes: []string{"d"}, setup: hostSetup("host", &host), teardown: hostTeardown("host", &host), prepare: func(t *testing.T) *faultRun {
			p, err := host.Exec(f.ctx, "d", execSpec("true"), false, newStdio().attach)
			must(t, err)
			waitProcessExit(t, f.raw, f.ctx, "host", "d")
			var retried deleteRetry
			return &faultRun{
				do:      func(ctx context.Context) error { _, err := p.Delete(ctx); return err },
				recover: func(ctx context.Context, _ error) error { return retried.run(ctx, p.Delete) },
				finish:  func(*testing.T) {},
				expect:  retried.expect(f, "host", "d", p.Pid()),
			}
		}},
		{name: "Task.Delete", setup: tdSetup, teardown: tdTeardown, prepare: func(t *testing.T) *faultRun {
			task, err := ctrs["td"].NewTask(f.ctx, "", false, newStdio().attach)
			must(t, err)
			must(t, task.Start(f.ctx))
			waitProcessExit(t, f.raw, f.ctx, "td", "")
			var retried deleteRetry
			return &faultRun{
				do:      func(ctx context.Context) error { _, err := task.Delete(ctx); return err },
				recover: func(ctx context.Context, _ error) error { return retried.run(ctx, task.Delete) },
				finish:  func(*testing.T) {},
				expect:  retried.expect(f, "td", "td", task.Pid()),
			}
		}},
		{name: "Task.ForceDelete", setup: fdSetup, teardown: fdTeardown, prepare: func(t *testing.T) *faultRun {
			task, err := ctrs["fd"].NewTask(f.ctx, "", false, newStdio().attach)
			must(t, err)
			must(t, task.Start(f.ctx))
			return &faultRun{
				do:      task.ForceDelete,
				recover: func(ctx context.Context, _ error) error { return ignoreNotFound(task.ForceDelete(ctx)) },
				finish:  func(*testing.T) {},
			}
		}},
		{name: "Container.Delete", prepare: func(t *testing.T) *faultRun {
			ctr, err := f.client.NewContainer(f.ctx, "cd", f.spec("cd", "true"), shim, env.RuncOptions())
			must(t, err)
			return &faultRun{
				do:      ctr.Delete,
				recover: func(ctx context.Context, _ error) error { return ignoreNotFound(ctr.Delete(ctx)) },
				finish:  func(*testing.T) {},
			}
		}},
		{name: "Container.Delete (loaded)", prepare: func(t *testing.T) *faultRun {
			_, err := f.client.NewContainer(f.ctx, "cdl", f.spec("cdl", "true"), shim, env.RuncOptions())
			must(t, err)
			ctr, err := f.client.LoadContainer(f.ctx, "cdl")
			must(t, err)
			return &faultRun{
				do:      ctr.Delete,
				recover: func(ctx context.Context, _ error) error { return ignoreNotFound(ctr.Delete(ctx)) },
				finish:  func(*testing.T) {},
			}
		}},
		{name: "ReplaceContainer (stale task)", prepare: func(t *testing.T) *faultRun {
			// A stale container as a daemon that died leaves it: its task
			// runs, its FIFOs are on disk, nobody holds their other ends.
			spec := f.spec("rc", "sleep", "1000")
			stale, err := f.client.NewContainer(f.ctx, "rc", spec, shim, env.RuncOptions())
			must(t, err)
			var dio *cio.DirectIO
			task, err := stale.NewTask(f.ctx, "", false, func(d *cio.DirectIO) (cio.IO, error) { dio = d; return d, nil })
			must(t, err)
			must(t, task.Start(f.ctx))
			dio.Stdout.Close()
			dio.Stderr.Close()
			var ctr types.Container
			replace := func(ctx context.Context) (err error) {
				ctr, err = libcontainerd.ReplaceContainer(ctx, f.client, "rc", spec, shim, env.RuncOptions())
				return err
			}
			return &faultRun{
				do:      replace,
				recover: func(ctx context.Context, _ error) error { return replace(ctx) },
				finish:  func(t *testing.T) { must(t, ctr.Delete(f.ctx)) },
			}
		}},
		{name: "Task.CreateCheckpoint", extra: []string{checkpointDir}, setup: hostSetup("ck", &ckpt), teardown: hostTeardown("ck", &ckpt), prepare: func(t *testing.T) *faultRun {
			checkpoint := func(ctx context.Context) error { return ckpt.CreateCheckpoint(ctx, checkpointDir, false) }
			return &faultRun{
				do:      checkpoint,
				recover: func(ctx context.Context, _ error) error { return checkpoint(ctx) },
				finish:  func(t *testing.T) { must(t, os.RemoveAll(checkpointDir)) },
			}
		}},
	}
}

// newLegacyFaultFixture is newLegacyFixture with the fault injector.
func newLegacyFaultFixture(t *testing.T) *legacyFixture {
	t.Helper()
	ctx, ns := env.Context(t)
	f := &legacyFixture{t: t, ctx: ctx, ns: ns, stateDir: t.TempDir(), hooks: &rpcHooks{}, backend: newLegacyBackend()}
	raw, err := env.Client(faults.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	f.raw = raw
	f.client = f.newClient(f.backend)
	return f
}

func legacyFaultOps(lf *legacyFixture) []faultOp {
	c := lf.client
	spec := func(id string, args ...string) *specs.Spec { return lf.spec(id, env.SpecOpts(args...)...) }
	create := func(ctx context.Context, id string, args ...string) error {
		return c.Create(ctx, id, spec(id, args...), shim, env.RuncOptions())
	}
	ownContainer := func(id string, args ...string) (func(*testing.T), func(*testing.T)) {
		return func(t *testing.T) { must(t, create(lf.ctx, id, args...)) },
			func(t *testing.T) { must(t, c.Delete(lf.ctx, id)) }
	}
	startSetup, startTeardown := ownContainer("ls", "sleep", "1000")
	deleteSetup, deleteTeardown := ownContainer("ld", "true")
	return []faultOp{
		{name: "legacy Create", prepare: func(t *testing.T) *faultRun {
			return &faultRun{
				do: func(ctx context.Context) error { return create(ctx, "lc", "true") },
				// moby v20–v23's own: create again; on a conflict, remove
				// the stale one (task, then container) and create once more.
				recover: func(ctx context.Context, _ error) error {
					err := create(ctx, "lc", "true")
					if !errclass.IsConflict(err) {
						return err
					}
					_, _, _ = c.DeleteTask(ctx, "lc")
					if err := c.Delete(ctx, "lc"); ignoreNotFound(err) != nil {
						return err
					}
					return create(ctx, "lc", "true")
				},
				finish: func(t *testing.T) { must(t, c.Delete(lf.ctx, "lc")) },
			}
		}},
		{name: "legacy Start", setup: startSetup, teardown: startTeardown, prepare: func(t *testing.T) *faultRun {
			start := func(ctx context.Context) error {
				_, err := c.Start(ctx, "ls", "", false, newStdio().attach)
				return err
			}
			return &faultRun{
				do:      start,
				recover: func(ctx context.Context, _ error) error { return start(ctx) },
				finish: func(t *testing.T) {
					must(t, c.SignalProcess(lf.ctx, "ls", legacy.InitProcessName, syscall.SIGKILL))
					waitProcessExit(t, lf.raw, lf.ctx, "ls", "")
					_, _, err := c.DeleteTask(lf.ctx, "ls")
					must(t, err)
				},
			}
		}},
		{name: "legacy Exec", probes: []string{"x"},
			setup: func(t *testing.T) {
				must(t, create(lf.ctx, "lx", "sleep", "1000"))
				_, err := c.Start(lf.ctx, "lx", "", false, newStdio().attach)
				must(t, err)
			},
			teardown: func(t *testing.T) {
				must(t, c.SignalProcess(lf.ctx, "lx", legacy.InitProcessName, syscall.SIGKILL))
				waitProcessExit(t, lf.raw, lf.ctx, "lx", "")
				_, _, err := c.DeleteTask(lf.ctx, "lx")
				must(t, err)
				must(t, c.Delete(lf.ctx, "lx"))
			},
			prepare: func(t *testing.T) *faultRun {
				exec := func(ctx context.Context) error {
					_, err := c.Exec(ctx, "lx", "x", execSpec("sleep", "1000"), false, newStdio().attach)
					return err
				}
				return &faultRun{
					do:      exec,
					recover: func(ctx context.Context, _ error) error { return exec(ctx) },
					finish: func(t *testing.T) {
						must(t, c.SignalProcess(lf.ctx, "lx", "x", syscall.SIGKILL))
						// The legacy client deletes an exec once the backend
						// has handled its exit.
						if !waitFor(func() bool { return !lf.processExists("lx", "x") && len(lf.fifosOf("lx", "x")) == 0 }) {
							t.Fatal("exec x not cleaned up after its exit")
						}
					},
				}
			}},
		{name: "legacy DeleteTask", setup: deleteSetup, teardown: deleteTeardown, prepare: func(t *testing.T) *faultRun {
			_, startErr := c.Start(lf.ctx, "ld", "", false, newStdio().attach)
			must(t, startErr)
			waitProcessExit(t, lf.raw, lf.ctx, "ld", "")
			var (
				retried bool
				code    uint32
				err     error
			)
			return &faultRun{
				do: func(ctx context.Context) error { _, _, err := c.DeleteTask(ctx, "ld"); return err },
				recover: func(ctx context.Context, _ error) error {
					retried = true
					code, _, err = c.DeleteTask(ctx, "ld")
					return ignoreNotFound(err)
				},
				finish: func(*testing.T) {},
				// As deleteRetry: the exit status is lost with a lost
				// answer, and DeleteTask says so with 255 and NotFound.
				expect: func(t *testing.T, kind faults.Kind) {
					switch {
					case !retried:
					case kind == faults.Before && (err != nil || code != 0):
						t.Errorf("retried DeleteTask: %d, %v; want exit 0", code, err)
					case kind != faults.Before && (!errclass.IsNotFound(err) || code != 255):
						t.Errorf("retried DeleteTask after one that took effect: %d, %v; want 255 and NotFound", code, err)
					}
				},
			}
		}},
	}
}
