package integration

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/containerd/containerd"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/internal/faults"
	"github.com/lcdkit/libcontainerd/types"
)

// leakCycles is how many lifecycles TestLifecycleLeaks runs: LCD_LEAK_CYCLES
// overrides it (`make soak` runs 500).
func leakCycles() int {
	if n, err := strconv.Atoi(os.Getenv("LCD_LEAK_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 30
}

func openFDs() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}

func countFIFOsAndDirs(dir string) (fifos, dirs int) {
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || path == dir {
			return nil
		}
		if d.IsDir() {
			dirs++
		} else if d.Type()&os.ModeNamedPipe != 0 {
			fifos++
		}
		return nil
	})
	return fifos, dirs
}

// leakFaultSeed seeds the faults TestLifecycleLeaks injects: fixed, so a
// failure can be replayed; LCD_FAULT_SEED overrides it.
func leakFaultSeed() int64 {
	if n, err := strconv.ParseInt(os.Getenv("LCD_FAULT_SEED"), 10, 64); err == nil {
		return n
	}
	return 13
}

// plannedFault is the fault one lifecycle gets: the k-th RPC of op fails.
type plannedFault struct {
	op   string
	k    int
	kind faults.Kind
}

// lifecycleOps are the operations of one lifecycle, in order.
var lifecycleOps = []string{"NewContainer", "NewTask", "Task.Start", "Task.Exec", "Process.Delete", "Task.ForceDelete", "Container.Delete"}

// TestLifecycleLeaks runs create/start/exec/exit/delete many times: the
// goroutines, fds, FIFOs and bundle dirs must come back to the baseline.
// Every tenth lifecycle one of its RPCs fails (a random operation, RPC and
// kind, from a fixed seed), and the operation's documented recovery must
// carry the lifecycle on with nothing left behind; every started process
// still gets exactly one exit.
func TestLifecycleLeaks(t *testing.T) {
	f := newFaultFixture(t)
	seed := leakFaultSeed()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("fault seed %d (LCD_FAULT_SEED)", seed)
	rpcs := map[string]int{} // RPCs per operation, from the warm-up
	injected := 0
	cycle := func(i int, fault *plannedFault) {
		id := fmt.Sprintf("leak%d", i)
		// step runs one operation, with the fault if it is the one, and
		// its recovery if it fails.
		step := func(name string, do, recover func(context.Context) error) {
			k, kind := 0, faults.Kind("")
			if fault != nil && fault.op == name {
				k, kind = fault.k, fault.kind
			}
			ctx, op := faults.Begin(f.ctx, k, kind)
			err := do(ctx)
			op.Done()
			if i < 0 {
				rpcs[name] = len(op.Calls())
			}
			if err == nil {
				return
			}
			if k == 0 {
				t.Fatalf("%s %s: %v", id, name, err)
			}
			if got, want := classOf(err), wantClass(kind); got != want {
				t.Errorf("%s %s with %s: error %q is %q, want %s", id, name, op, err, got, want)
			}
			rctx, cancel := context.WithTimeout(f.ctx, waitTimeout)
			defer cancel()
			if rerr := recover(rctx); rerr != nil {
				t.Fatalf("%s %s with %s: recovery failed: %v", id, name, op, rerr)
			}
			t.Logf("%s %s with %s at %s: %q, recovered", id, name, op, path.Base(op.Fired()), err)
		}
		retry := func(do func(context.Context) error) func(context.Context) error { return do }
		spec := f.spec(id, "sleep", "100")
		var ctr types.Container
		newContainer := func(ctx context.Context) (err error) {
			ctr, err = f.client.NewContainer(ctx, id, spec, shim, env.RuncOptions())
			return err
		}
		step("NewContainer", newContainer, func(ctx context.Context) (err error) {
			ctr, err = libcontainerd.ReplaceContainer(ctx, f.client, id, spec, shim, env.RuncOptions())
			return err
		})
		var task types.Task
		newTask := func(ctx context.Context) (err error) {
			task, err = ctr.NewTask(ctx, "", true, newStdio().attach)
			return err
		}
		step("NewTask", newTask, retry(newTask))
		step("Task.Start", func(ctx context.Context) error { return task.Start(ctx) }, func(ctx context.Context) error {
			st, err := task.Status(ctx)
			if err != nil || st.Status != containerd.Created {
				return err
			}
			return task.Start(ctx)
		})
		var (
			p   types.Process
			eio *stdio
		)
		exec := func(ctx context.Context) (err error) {
			eio = newStdio()
			p, err = task.Exec(ctx, "e", execSpec("cat"), true, eio.attach)
			return err
		}
		step("Task.Exec", exec, retry(exec))
		eio.stdin.Close()
		f.waitExit(id, "e")
		deleteExec := func(ctx context.Context) error { _, err := p.Delete(ctx); return err }
		step("Process.Delete", deleteExec, func(ctx context.Context) error { return ignoreNotFound(deleteExec(ctx)) })
		forceDelete := func(ctx context.Context) error { return task.ForceDelete(ctx) }
		step("Task.ForceDelete", forceDelete, func(ctx context.Context) error { return ignoreNotFound(forceDelete(ctx)) })
		deleteCtr := func(ctx context.Context) error { return ctr.Delete(ctx) }
		step("Container.Delete", deleteCtr, func(ctx context.Context) error { return ignoreNotFound(deleteCtr(ctx)) })
		f.assertGone(id)
	}
	cycle(-1, nil) // warm up: gRPC streams and pools settle; count each operation's RPCs
	baseG, baseFD := runtime.NumGoroutine(), openFDs()
	for i := 0; i < leakCycles(); i++ {
		var fault *plannedFault
		if i%10 == 9 {
			op := lifecycleOps[rng.Intn(len(lifecycleOps))]
			fault = &plannedFault{op, 1 + rng.Intn(rpcs[op]), faults.Kinds[rng.Intn(len(faults.Kinds))]}
			t.Logf("lifecycle %d: RPC %d of %s fails (%s)", i, fault.k, fault.op, fault.kind)
			injected++
		}
		cycle(i, fault)
	}
	t.Logf("%d lifecycles, %d with a fault", leakCycles(), injected)
	fifos, dirs := countFIFOsAndDirs(f.stateDir)
	if fifos != 0 || dirs != 0 {
		t.Errorf("%d FIFOs and %d dirs left in the state dir", fifos, dirs)
	}
	// Goroutines of closed IO end asynchronously: allow them a moment.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseG+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > baseG+2 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines %d -> %d\n%s", baseG, g, buf[:runtime.Stack(buf, true)])
	}
	if fd := openFDs(); fd > baseFD+2 {
		t.Errorf("open fds %d -> %d", baseFD, fd)
	}
	checkExits(t, func() *exitLedger { return ledgerOf(f.backend) })
}
