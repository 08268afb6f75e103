package integration

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/lcdkit/libcontainerd/types"
)

// loadLifecycle is one lifecycle of TestLifecyclesAcrossContainerdKill: the
// handles it got, and where it failed.
type loadLifecycle struct {
	id       string
	n        int
	ctr      types.Container
	task     types.Task
	exec     types.Process
	failedAt string // "" when it completed
	err      error
}

// TestLifecyclesAcrossContainerdKill runs 20 lifecycles at once (create,
// start, exec, exit, delete) and kills containerd with SIGKILL in the middle
// of them (at every step, see below), restarting it a second later. Every
// lifecycle either completes or fails with a classified error; each failed
// one's recovery (ForceDelete what task there is, delete the exec handle,
// Container.Delete, on the handles it holds) leaves nothing of it in
// containerd or on the host; every started process gets exactly one exit,
// shim re-sends included.
func TestLifecyclesAcrossContainerdKill(t *testing.T) {
	f := newFixture(t)
	const (
		n     = 20
		early = n * 3 / 4 // started first; the rest when their execs run
	)
	lifecycles := make([]*loadLifecycle, n)
	var (
		execsStarted atomic.Int32
		midway       = make(chan struct{})
		midwayOnce   sync.Once
		wg           sync.WaitGroup
		mu           sync.Mutex
		startedPids  []event // processes the library said it started
	)
	started := func(et types.EventType, id, process string, pid uint32) {
		mu.Lock()
		defer mu.Unlock()
		startedPids = append(startedPids, event{et, types.EventInfo{ContainerID: id, ProcessID: process, Pid: pid}})
	}
	// exitOf waits (bounded) for the process's exit to reach the backend:
	// across the restart, reconcile or the shim's re-send brings it.
	exitOf := func(id, process string) error {
		deadline := time.NewTimer(60 * time.Second)
		defer deadline.Stop()
		for {
			changed := f.backend.changed()
			if len(f.backend.exits()[[2]string{id, process}]) > 0 {
				return nil
			}
			select {
			case <-changed:
			case <-deadline.C:
				return fmt.Errorf("no exit of %s/%s", id, process)
			}
		}
	}
	run := func(l *loadLifecycle) {
		defer wg.Done()
		step := func(name string, do func(ctx context.Context) error) bool {
			ctx, cancel := context.WithTimeout(f.ctx, waitTimeout)
			defer cancel()
			if err := do(ctx); err != nil {
				l.failedAt, l.err = name, err
				return false
			}
			return true
		}
		// awaitExit is a step that waits for a process's exit.
		awaitExit := func(process, what string) bool {
			if err := exitOf(l.id, process); err != nil {
				t.Error(err)
				l.failedAt, l.err = what, err
				return false
			}
			return true
		}
		ok := step("NewContainer", func(ctx context.Context) (err error) {
			l.ctr, err = f.client.NewContainer(ctx, l.id, f.spec(l.id, "sleep", "1000"), shim, env.RuncOptions())
			return err
		}) && step("NewTask", func(ctx context.Context) (err error) {
			l.task, err = l.ctr.NewTask(ctx, "", false, newStdio().attach)
			return err
		}) && step("Task.Start", func(ctx context.Context) error {
			if err := l.task.Start(ctx); err != nil {
				return err
			}
			started(types.EventStart, l.id, l.id, l.task.Pid())
			return nil
		}) && step("Task.Exec", func(ctx context.Context) (err error) {
			defer func() {
				if execsStarted.Add(1) == early {
					midwayOnce.Do(func() { close(midway) })
				}
			}()
			l.exec, err = l.task.Exec(ctx, "e", execSpec("sh", "-c", fmt.Sprintf("sleep %.1f; exit 3", float64(l.n%5)*0.3)), false, newStdio().attach)
			if err == nil {
				started(types.EventExecStarted, l.id, "e", l.exec.Pid())
			}
			return err
		})
		if !ok {
			return
		}
		ok = awaitExit("e", "waiting for the exec's exit") && step("Process.Delete", func(ctx context.Context) error {
			_, err := l.exec.Delete(ctx)
			return err
		}) && step("Task.Kill", func(ctx context.Context) error {
			return l.task.Kill(ctx, syscall.SIGKILL)
		}) && awaitExit(l.id, "waiting for the task's exit")
		if !ok {
			return
		}
		_ = step("Task.Delete", func(ctx context.Context) error {
			_, err := l.task.Delete(ctx)
			return err
		}) && step("Container.Delete", func(ctx context.Context) error {
			return l.ctr.Delete(ctx)
		})
	}
	// The kill must find lifecycles at every step: the first ones' execs
	// run for different times, so when they have all started theirs some
	// wait for their exec, some delete, some are done; the last ones start
	// just then, and are creating when containerd dies.
	for i := range lifecycles {
		lifecycles[i] = &loadLifecycle{id: fmt.Sprintf("load%d", i), n: i}
		wg.Add(1)
	}
	for _, l := range lifecycles[:early] {
		go run(l)
	}
	select {
	case <-midway:
	case <-time.After(2 * time.Minute):
		t.Fatal("the lifecycles never reached their exec")
	}
	// The scenario (not synchronisation): the last ones start 40 ms apart
	// and are at their first steps when containerd dies.
	for j, l := range lifecycles[early:] {
		l := l
		time.AfterFunc(time.Duration(j)*40*time.Millisecond, func() { run(l) })
	}
	time.Sleep(time.Duration(n-early) * 40 * time.Millisecond)
	env.Kill()
	time.Sleep(time.Second) // the scenario: containerd is down this long
	if err := env.Start(); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(f.ctx, waitTimeout)
	defer cancel()
	if ok, err := f.raw.IsServing(ctx); !ok || err != nil {
		t.Fatalf("client did not reconnect: %v", err)
	}

	failures := map[string]int{}
	for _, l := range lifecycles {
		if l.failedAt == "" {
			f.assertGone(l.id)
			continue
		}
		class := classOf(l.err)
		failures[l.failedAt+" "+class]++
		if class == "" {
			t.Errorf("%s failed at %s with an unclassified error (moby %q): %v", l.id, l.failedAt, mobyClass(l.err), l.err)
		}
		if err := recoverLifecycle(ctx, f, l); err != nil {
			t.Errorf("%s (failed at %s: %v): recovery: %v", l.id, l.failedAt, l.err, err)
		}
		f.assertGone(l.id)
	}
	var summary []string
	for k, v := range failures {
		summary = append(summary, fmt.Sprintf("%s ×%d", k, v))
	}
	sort.Strings(summary)
	t.Logf("%d of %d lifecycles completed; failed (step, class): %s", n-countFailed(lifecycles), n, strings.Join(summary, ", "))
	if countFailed(lifecycles) == 0 {
		t.Log("no lifecycle was cut off by the kill this time")
	}
	if fifos, dirs := countFIFOsAndDirs(f.stateDir); fifos != 0 || dirs != 0 {
		t.Errorf("%d FIFOs and %d dirs left in the state dir", fifos, dirs)
	}

	// Long enough for any shim re-send to arrive as a duplicate.
	time.Sleep(shimRetryWindow)
	checkExits(t, func() *exitLedger {
		l := ledgerOf(f.backend)
		mu.Lock()
		defer mu.Unlock()
		for _, e := range startedPids {
			k := [3]string{e.Info.ContainerID, e.Info.ProcessID, fmt.Sprint(e.Info.Pid)}
			if l.started[k] == 0 {
				l.started[k] = 1
			}
		}
		return l
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
// holds: ForceDelete its task (loaded, if the handle is missing: NewTask may
// have failed after creating it), delete its exec handle (releasing its IO;
// NotFound once the task is gone), delete its container (loaded, if
// NewContainer failed after creating it).
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
