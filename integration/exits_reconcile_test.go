package integration

import (
	"context"
	"github.com/lcdkit/libcontainerd/internal/testenv"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/lcdkit/libcontainerd/internal/faults"
	"github.com/lcdkit/libcontainerd/types"
)

const (
	listMethod = "/containerd.services.tasks.v1.Tasks/List"
	getMethod  = "/containerd.services.tasks.v1.Tasks/Get"
)

// failingCalls makes the next calls of given methods fail, once armed, the
// way a call fails when containerd goes away again (faults'
// "transport is closing"): after that many, calls go through.
type failingCalls struct {
	mu     sync.Mutex
	left   map[string]int // calls still to fail, per method
	failed map[string]int
}

func (g *failingCalls) arm(left map[string]int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.left, g.failed = left, map[string]int{}
}

func (g *failingCalls) disarm() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.left = nil
	return g.failed
}

func (g *failingCalls) interceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply interface{}, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		g.mu.Lock()
		fail := g.left[method] > 0
		if fail {
			g.left[method]--
			g.failed[method]++
		}
		g.mu.Unlock()
		if fail {
			return faults.ErrTransportClosing
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// TestReconcileRetriesFailedListAndGet: after a containerd restart the
// library's first task List and first task Gets fail (Unavailable, as when
// containerd goes away again at once); reconcile must retry until every
// tracked process is settled. While containerd was down two shims were
// killed (one with an exec running): containerd never publishes those
// exits, only reconcile finds them (255). A container and an exec that
// exited during the outage get theirs with the real code. Every process
// gets exactly one exit, shim re-sends included.
func TestReconcileRetriesFailedListAndGet(t *testing.T) {
	testenv.LogGuard(t) // an outage must not make the library log errors
	gate := &failingCalls{}
	f := newFixture(t, gate.interceptor())

	type want struct {
		container, process string
		codes              []uint32
	}
	var (
		wants []want
		ctrs  = map[string]types.Container{}
		tasks = map[string]types.Task{}
		execs []types.Process
	)
	sleeper := func(id string) types.Task {
		ctrs[id], tasks[id] = f.startSleeper(id)
		return tasks[id]
	}
	exec := func(task types.Task, id string, args ...string) {
		p, err := task.Exec(f.ctx, id, execSpec(args...), false, newStdio().attach)
		if err != nil {
			t.Fatal(err)
		}
		execs = append(execs, p)
	}
	// Shims killed while containerd is down: the tasks vanish.
	v1 := sleeper("vanish1")
	v2 := sleeper("vanish2")
	exec(v2, "x", "sleep", "1000")
	wants = append(wants, want{"vanish1", "vanish1", []uint32{137, 255}}, want{"vanish2", "vanish2", []uint32{137, 255}}, want{"vanish2", "x", []uint32{137, 255}})
	// Exits during the outage, with real codes.
	exiter := f.newContainer("exiter", "sh", "-c", "sleep 1.5; exit 9")
	exiterTask, err := exiter.NewTask(f.ctx, "", false, newStdio().attach)
	if err != nil {
		t.Fatal(err)
	}
	if err := exiterTask.Start(f.ctx); err != nil {
		t.Fatal(err)
	}
	ctrs["exiter"], tasks["exiter"] = exiter, exiterTask
	host := sleeper("host")
	exec(host, "y", "sh", "-c", "sleep 1.5; exit 5")
	wants = append(wants, want{"exiter", "exiter", []uint32{9}}, want{"host", "y", []uint32{5}})

	var shims []int
	for _, task := range []types.Task{v1, v2} {
		pid, err := parentPid(task.Pid())
		if err != nil {
			t.Fatal(err)
		}
		shims = append(shims, pid)
	}
	env.Kill()
	for _, pid := range shims {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill shim %d: %v", pid, err)
		}
	}
	time.Sleep(3 * time.Second) // the scenario: containerd is down this long; the exits above happen meanwhile
	gate.arm(map[string]int{listMethod: 2, getMethod: 4})
	if err := env.Start(); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
	restarted := time.Now()

	var keys [][2]string
	for _, w := range wants {
		keys = append(keys, [2]string{w.container, w.process})
	}
	missing := f.backend.awaitExits(keys, 30*time.Second)
	failed := gate.disarm()
	t.Logf("calls made to fail after the restart: %v", failed)
	if len(missing) > 0 {
		t.Fatalf("no exit within 30 s of containerd serving again for %v", missing)
	}
	t.Logf("every exit delivered %s after containerd served again", time.Since(restarted).Round(time.Millisecond))
	if failed[listMethod]+failed[getMethod] == 0 {
		t.Errorf("the library made no task List or Get after the restart: the faults never fired, nothing was tested")
	}
	// Long enough for any shim re-send to arrive as a duplicate.
	time.Sleep(shimRetryWindow)
	exits := f.backend.exits()
	for _, w := range wants {
		got := exits[[2]string{w.container, w.process}]
		if len(got) != 1 {
			t.Errorf("%s/%s: %d exits %+v, want exactly one", w.container, w.process, len(got), got)
			continue
		}
		if !containsCode(w.codes, got[0].ExitCode) {
			t.Errorf("%s/%s: exit code %d, want one of %v", w.container, w.process, got[0].ExitCode, w.codes)
		}
	}
	if got := exits[[2]string{"host", "host"}]; len(got) > 0 {
		t.Errorf("host is running but got exits %+v", got)
	}

	// Remove everything through the library's handles, as the daemon
	// would: nothing may be left.
	for _, p := range execs {
		if _, err := p.Delete(f.ctx); ignoreNotFound(err) != nil {
			t.Errorf("delete exec: %v", err)
		}
	}
	for _, id := range []string{"vanish1", "vanish2", "exiter", "host"} {
		if err := tasks[id].ForceDelete(f.ctx); ignoreNotFound(err) != nil {
			t.Errorf("force delete %s: %v", id, err)
		}
		if err := ctrs[id].Delete(f.ctx); err != nil {
			t.Errorf("delete %s: %v", id, err)
		}
		f.assertGone(id)
	}
	assertNoShims(t, f.ns)
	assertNotTracked(t, f.client)
}
