package integration

import (
	"context"
	"fmt"
	"github.com/lcdkit/libcontainerd/internal/testenv"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lcdkit/libcontainerd/types"
)

// loadSteps are the operations a lifecycle of TestLifecyclesAcrossContainerdKill
// can be in when containerd is killed, in lifecycle order. Task.Exec is
// the exec's create and its start, in one call.
var loadSteps = []string{"NewContainer", "NewTask", "Task.Start", "Task.Exec", "Process.Delete", "Task.Delete", "Container.Delete"}

func stepIndex(name string) int {
	for i, s := range loadSteps {
		if s == name {
			return i
		}
	}
	return -1
}

// loadLifecycle is one lifecycle of TestLifecyclesAcrossContainerdKill:
// its plan, the handles it got, and where it failed.
type loadLifecycle struct {
	id string
	// at is the step the lifecycle is released into when containerd is
	// about to be killed.
	at string
	// short: the init exits on its own right after starting (initFor s,
	// initCode) and there is no exec; otherwise the init runs until the
	// lifecycle's SIGTERM (then exits 21) and the exec runs execFor s and
	// exits execCode.
	short              bool
	initFor, execFor   float64
	initCode, execCode uint32

	ctr      types.Container
	task     types.Task
	exec     types.Process
	failedAt string // "" when it completed
	err      error
}

// initCodeOnTerm is what a long-running init exits with on SIGTERM.
const initCodeOnTerm = 21

func (l *loadLifecycle) initName() string { return l.id + ".init" }
func (l *loadLifecycle) execName() string { return l.id + ".exec" }

// initScript: the init touches its marker; a short one runs its time and
// exits with its code, a long one waits for SIGTERM and exits 21. Either
// writes its exit marker just before exiting on its own.
func (l *loadLifecycle) initScript() string {
	if l.short {
		return script(l.initName(), fmt.Sprintf("sleep %.1f", l.initFor), l.initCode)
	}
	return fmt.Sprintf("trap 'echo %[3]d > %[1]s/%[2]s.exit; exit %[3]d' TERM; touch %[1]s/%[2]s; sleep 1000 & wait",
		markerDir, l.initName(), initCodeOnTerm)
}

// execBody: the exec waits for the init's marker before its own time runs,
// so that once it has exited the init has set its SIGTERM trap (a
// container's pid 1 ignores a signal it has no handler for, and on a busy
// host the init's shell may not have run its first line yet when the exec
// is done).
func (l *loadLifecycle) execBody() string {
	return fmt.Sprintf("while [ ! -e %s/%s ]; do sleep 0.05; done; sleep %.1f", markerDir, l.initName(), l.execFor)
}

// loadEnv reads the load test's size and seeds: LCD_LOAD_N lifecycles (60),
// LCD_LOAD_SEEDS rounds (2; `make soak` runs 10) from seed LCD_LOAD_SEED
// (1). A failing round is replayed with its seed and LCD_LOAD_SEEDS=1.
func loadEnv(t *testing.T) (n int, first int64, seeds int) {
	num := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		x, err := strconv.Atoi(v)
		if err != nil || x <= 0 {
			t.Fatalf("%s=%q: want a positive number", name, v)
		}
		return x
	}
	return num("LCD_LOAD_N", 60), int64(num("LCD_LOAD_SEED", 1)), num("LCD_LOAD_SEEDS", 2)
}

// TestLifecyclesAcrossContainerdKill runs 60 lifecycles at once (create,
// task create, start, exec, exec exit, exec delete, SIGTERM, exit, task
// delete, container delete; a seventh of them have an init that exits on
// its own right after starting, and no exec) and kills containerd with
// SIGKILL while they are at every step: each lifecycle is held before its
// step (seeded), all are released together, containerd dies a seeded few
// milliseconds later, in the middle of their calls, and comes back after a
// seeded 1–3 s. Per seed (LCD_LOAD_SEEDS, from LCD_LOAD_SEED):
//   - every lifecycle completes or fails with a classified error;
//   - every process that ran (it touched its marker file in a host dir
//     bind-mounted into every container) and exited on its own (it wrote
//     its exit marker) has its exit with that code before anyone deletes
//     anything: a daemon waits for EventExit before it deletes;
//   - each failed lifecycle's documented recovery (ForceDelete whatever
//     task there is, delete the exec handle, Container.Delete, on the
//     handles it holds) leaves nothing of it: no container, task, FIFO,
//     bundle dir, and no shim of the namespace still running;
//   - once the shim's re-sends are over, every process that ran has
//     exactly one exit, with its code (137 if it was killed), and the
//     client's exit ledger is empty.
func TestLifecyclesAcrossContainerdKill(t *testing.T) {
	testenv.LogGuard(t) // an outage must not make the library log errors
	n, first, seeds := loadEnv(t)
	var checks []func()
	for seed := first; seed < first+int64(seeds); seed++ {
		checks = append(checks, loadRound(t, seed, n))
	}
	// Long enough for any shim re-send to arrive as a duplicate: once for
	// every round.
	time.Sleep(shimRetryWindow)
	for _, check := range checks {
		check()
	}
}

// loadRound runs one seed's round up to and including the recovery, and
// returns the checks to make once the shim's re-sends are over.
func loadRound(t *testing.T, seed int64, n int) func() {
	f := newFixture(t)
	m := newMarkers(t)
	rng := rand.New(rand.NewSource(seed))
	lifecycles := make([]*loadLifecycle, n)
	for i, k := range rng.Perm(n) {
		l := &loadLifecycle{id: fmt.Sprintf("load%d", i), execFor: 0.1, execCode: uint32(3 + rng.Intn(60))}
		if k%(len(loadSteps)+1) == len(loadSteps) {
			l.short, l.at = true, "Task.Start"
			l.initFor, l.initCode = float64(rng.Intn(4))/10, uint32(64+rng.Intn(60))
		} else {
			l.at = loadSteps[k%(len(loadSteps)+1)]
		}
		if !l.short && stepIndex(l.at) <= stepIndex("Task.Exec") {
			// The exec exits before, during or after the outage.
			l.execFor = float64(rng.Intn(21)) / 10
		}
		lifecycles[i] = l
	}
	killDelay := time.Duration(rng.Intn(26)) * time.Millisecond
	outage := time.Second + time.Duration(rng.Intn(2001))*time.Millisecond
	t.Logf("seed %d: %d lifecycles; containerd killed %s after they are released into their steps, down for %s (replay: LCD_LOAD_SEED=%d LCD_LOAD_SEEDS=1)",
		seed, n, killDelay, outage.Round(time.Millisecond), seed)

	var (
		arrived sync.WaitGroup // every lifecycle at its step (or ended)
		done    sync.WaitGroup
		release = make(chan struct{})
	)
	arrived.Add(n)
	done.Add(n)
	for _, l := range lifecycles {
		go runLoadLifecycle(t, f, m, l, &arrived, &done, release)
	}
	allArrived := make(chan struct{})
	go func() { arrived.Wait(); close(allArrived) }()
	select {
	case <-allArrived:
	case <-time.After(3 * time.Minute):
		t.Fatalf("seed %d: the lifecycles did not all reach their steps within 3 minutes", seed)
	}
	close(release)
	time.Sleep(killDelay) // the scenario: their calls are in flight
	env.Kill()
	time.Sleep(outage) // the scenario: containerd is down this long
	if err := env.Start(); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
	done.Wait() // every step and wait in a lifecycle is bounded
	serveCtx, cancel := context.WithTimeout(f.ctx, waitTimeout)
	ok, err := f.raw.IsServing(serveCtx)
	cancel()
	if !ok || err != nil {
		t.Fatalf("client did not reconnect: %v", err)
	}

	// Before any recovery: every process that exited on its own has its
	// exit, as a daemon that waits for EventExit before deleting needs.
	var ranKeys, exitedKeys [][2]string
	for _, l := range lifecycles {
		if m.ran(l.initName()) {
			ranKeys = append(ranKeys, [2]string{l.id, l.id})
		}
		if m.ran(l.execName()) {
			ranKeys = append(ranKeys, [2]string{l.id, "e"})
		}
		if _, ok := m.exited(l.initName()); ok {
			exitedKeys = append(exitedKeys, [2]string{l.id, l.id})
		}
		if _, ok := m.exited(l.execName()); ok {
			exitedKeys = append(exitedKeys, [2]string{l.id, "e"})
		}
	}
	if missing := f.backend.awaitExits(exitedKeys, 30*time.Second); len(missing) > 0 {
		var detail []string
		for _, k := range missing {
			id, _, _ := strings.Cut(k, "/")
			for _, l := range lifecycles {
				if l.id == id {
					detail = append(detail, fmt.Sprintf("%s (released into %s, failed at %q: %v)", k, l.at, l.failedAt, l.err))
				}
			}
		}
		t.Errorf("seed %d: processes that ran and exited on their own have no exit 30 s later, before any delete: %s",
			seed, strings.Join(detail, "; "))
	}

	failures := map[string]int{}
	for _, l := range lifecycles {
		if l.failedAt == "" {
			f.assertGone(l.id)
			continue
		}
		class := classOf(l.err)
		failures[l.failedAt+" "+class]++
		if class == "" && !strings.HasPrefix(l.failedAt, "waiting") {
			t.Errorf("seed %d: %s failed at %s with an unclassified error (moby %q): %v", seed, l.id, l.failedAt, mobyClass(l.err), l.err)
		}
		ctx, cancel := context.WithTimeout(f.ctx, waitTimeout)
		if err := recoverLifecycle(ctx, f, l); err != nil {
			t.Errorf("seed %d: %s (failed at %s: %v): recovery: %v", seed, l.id, l.failedAt, l.err, err)
		}
		cancel()
		f.assertGone(l.id)
	}
	var summary []string
	for k, v := range failures {
		summary = append(summary, fmt.Sprintf("%s ×%d", k, v))
	}
	sort.Strings(summary)
	t.Logf("seed %d: %d of %d lifecycles completed; failed (step, class): %s", seed, n-countFailed(lifecycles), n, strings.Join(summary, ", "))
	if fifos, dirs := countFIFOsAndDirs(f.stateDir); fifos != 0 || dirs != 0 {
		t.Errorf("seed %d: %d FIFOs and %d dirs left in the state dir", seed, fifos, dirs)
	}
	// No orphan shim: a task create cut off by the kill can leave one that
	// containerd's List does not show.
	for _, s := range env.WaitShimsGone(shimGoneTimeout, f.ns) {
		if s.Namespace == f.ns {
			t.Errorf("seed %d: shim left running after the recovery: %s", seed, s)
		}
	}
	if missing := f.backend.awaitExits(ranKeys, 30*time.Second); len(missing) > 0 {
		t.Errorf("seed %d: processes that ran have no exit 30 s after the recovery: %v", seed, missing)
	}

	return func() {
		exits := f.backend.exits()
		ran := map[[2]string]bool{}
		bad := 0
		for _, l := range lifecycles {
			for _, p := range []struct{ process, marker string }{{l.id, l.initName()}, {"e", l.execName()}} {
				k := [2]string{l.id, p.process}
				if !m.ran(p.marker) {
					if got := exits[k]; len(got) > 1 {
						t.Errorf("seed %d: %s/%s never ran (no marker) but got %d exits %+v", seed, l.id, p.process, len(got), got)
					}
					continue
				}
				ran[k] = true
				want := uint32(137) // killed: ForceDelete's SIGKILL
				if code, ok := m.exited(p.marker); ok {
					want = code
				}
				got := exits[k]
				switch {
				case len(got) != 1:
					t.Errorf("seed %d: %s/%s ran (released into %s, failed at %q): %d exits %+v, want exactly one", seed, l.id, p.process, l.at, l.failedAt, len(got), got)
					bad++
				case got[0].ExitCode != want:
					t.Errorf("seed %d: %s/%s ran (released into %s, failed at %q): exit code %d, want %d", seed, l.id, p.process, l.at, l.failedAt, got[0].ExitCode, want)
					bad++
				}
			}
		}
		if d := ledgerOf(f.backend).duplicated(); len(d) > 0 {
			t.Errorf("seed %d: exits delivered more than once: %v", seed, d)
		}
		t.Logf("seed %d: %d processes ran (markers), %d without exactly one exit with their code", seed, len(ran), bad)
		assertNotTracked(t, f.client)
	}
}

// runLoadLifecycle runs one lifecycle, waiting before its step l.at until
// release is closed.
func runLoadLifecycle(t *testing.T, f *fixture, m markers, l *loadLifecycle, arrived, done *sync.WaitGroup, release <-chan struct{}) {
	defer done.Done()
	var once sync.Once
	arrive := func() { once.Do(arrived.Done) }
	defer arrive()
	step := func(name string, do func(ctx context.Context) error) bool {
		if name == l.at {
			arrive()
			<-release
		}
		ctx, cancel := context.WithTimeout(f.ctx, waitTimeout)
		defer cancel()
		if err := do(ctx); err != nil {
			l.failedAt, l.err = name, err
			return false
		}
		return true
	}
	// awaitExit waits (bounded) for a process's exit to reach the backend:
	// across the restart, the shim watch, reconcile or a re-send brings it.
	awaitExit := func(process, what string) bool {
		if missing := f.backend.awaitExits([][2]string{{l.id, process}}, 60*time.Second); len(missing) > 0 {
			l.failedAt, l.err = what, fmt.Errorf("no exit of %s/%s within 60 s", l.id, process)
			t.Errorf("%s (released into %s): %v", l.id, l.at, l.err)
			return false
		}
		return true
	}
	spec := f.specWith(l.id, append(env.SpecOpts("sh", "-c", l.initScript()), m.mount())...)
	ok := step("NewContainer", func(ctx context.Context) (err error) {
		l.ctr, err = f.client.NewContainer(ctx, l.id, spec, shim, env.RuncOptions())
		return err
	}) && step("NewTask", func(ctx context.Context) (err error) {
		l.task, err = l.ctr.NewTask(ctx, "", false, newStdio().attach)
		return err
	}) && step("Task.Start", func(ctx context.Context) error {
		return l.task.Start(ctx)
	})
	if !ok {
		return
	}
	if !l.short {
		ok = step("Task.Exec", func(ctx context.Context) (err error) {
			l.exec, err = l.task.Exec(ctx, "e", execSpec("sh", "-c", script(l.execName(), l.execBody(), l.execCode)), false, newStdio().attach)
			return err
		}) && awaitExit("e", "waiting for the exec's exit") && step("Process.Delete", func(ctx context.Context) error {
			_, err := l.exec.Delete(ctx)
			return err
		}) && step("Task.Kill", func(ctx context.Context) error {
			return l.task.Kill(ctx, syscall.SIGTERM)
		})
		if !ok {
			return
		}
	}
	_ = awaitExit(l.id, "waiting for the task's exit") && step("Task.Delete", func(ctx context.Context) error {
		_, err := l.task.Delete(ctx)
		return err
	}) && step("Container.Delete", func(ctx context.Context) error {
		return l.ctr.Delete(ctx)
	})
}

func countFailed(ls []*loadLifecycle) int {
	n := 0
	for _, l := range ls {
		if l.failedAt != "" {
			n++
		}
	}
	return n
}

// recoverLifecycle is a failed lifecycle's recovery, on the handles it
// holds, through the documented API only: ForceDelete its task (loaded, if
// the handle is missing: NewTask may have failed after creating it),
// delete its exec handle (releasing its IO; NotFound once the task is
// gone), delete its container (loaded, if NewContainer failed after
// creating it).
func recoverLifecycle(ctx context.Context, f *fixture, l *loadLifecycle) error {
	if l.ctr == nil {
		ctr, err := f.client.LoadContainer(ctx, l.id)
		if err != nil {
			return ignoreNotFound(err)
		}
		l.ctr = ctr
	}
	task := l.task
	if task == nil {
		t, err := l.ctr.Task(ctx)
		if ignoreNotFound(err) != nil {
			return err
		}
		task = t
	}
	if task != nil {
		if err := ignoreNotFound(task.ForceDelete(ctx)); err != nil {
			return fmt.Errorf("force delete: %w", err)
		}
	}
	if l.exec != nil {
		if _, err := l.exec.Delete(ctx); ignoreNotFound(err) != nil {
			return fmt.Errorf("delete exec: %w", err)
		}
	}
	return ignoreNotFound(l.ctr.Delete(ctx))
}
