package integration

import (
	"context"
	"github.com/lcdkit/libcontainerd/internal/testenv"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"

	"github.com/lcdkit/libcontainerd/types"
)

// mobyBackend is moby's exit handling (daemon/monitor.go, v27/v28): on an
// init's exit, handleContainerExit deletes the container's task once,
// inside ProcessEvent, with a 30 s timeout, and only logs a failure; on an
// exec's exit, it deletes the exec's process in a goroutine, also once.
// Every event is recorded first.
type mobyBackend struct {
	*recordingBackend
	t       testing.TB
	handles *chaosHandles
	// busy counts ProcessEvent calls and exec deletes in flight (not a
	// WaitGroup: events keep arriving while idle waits, and a WaitGroup's
	// Add from zero must not race its Wait).
	busy atomic.Int32

	mu     sync.Mutex
	failed []string // deletes that failed, as moby would log them
}

func (b *mobyBackend) ProcessEvent(containerID string, et types.EventType, ei types.EventInfo) error {
	b.busy.Add(1)
	defer b.busy.Add(-1)
	_ = b.recordingBackend.ProcessEvent(containerID, et, ei)
	if et != types.EventExit {
		return nil
	}
	if ei.ProcessID == containerID {
		task := b.handles.task(containerID)
		if task == nil {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := task.Delete(ctx); err != nil {
			b.logFailure("delete task " + containerID + ": " + err.Error())
		}
		return nil
	}
	if p := b.handles.exec(containerID, ei.ProcessID); p != nil {
		b.busy.Add(1)
		go func() {
			defer b.busy.Add(-1)
			if _, err := p.Delete(context.Background()); err != nil {
				b.logFailure("delete process " + containerID + "/" + ei.ProcessID + ": " + err.Error())
			}
		}()
	}
	return nil
}

func (b *mobyBackend) logFailure(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failed = append(b.failed, s)
	b.t.Logf("backend (as moby, logged only): %s", s)
}

// idle waits (bounded) until no handler or exec delete is in flight.
func (b *mobyBackend) idle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for b.busy.Load() != 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond) // a count to watch: no event to await
	}
	return true
}

// TestChaosWithDeletingBackend is the chaos test with moby's monitor as the
// backend: each init's exit makes it delete the task once, inside
// ProcessEvent (an exec's exit: the exec, once, in a goroutine), failures
// only logged, as moby does. Exits arrive before, during and after
// containerd outages, and for a shim killed while containerd is down. Once
// every exit is in and the daemon has deleted each exited container once
// (and force-deleted the running ones), nothing may be left: no task, no
// FIFO or bundle dir, no fd or goroutine more than before, no shim, no
// entry in the client's exit ledger. An exit delivered while containerd is
// down leaves the daemon's one Delete failing: the library must make up for
// it (issue 18, item 7). LCD_CHAOS_LONG=1 (make soak) adds a third 3 s
// outage and a 17 s one.
func TestChaosWithDeletingBackend(t *testing.T) {
	testenv.LogGuard(t) // an outage must not make the library log errors
	handles := newChaosHandles()
	backend := &mobyBackend{recordingBackend: newRecordingBackend(), t: t, handles: handles}
	f := newFixtureBackend(t, backend.recordingBackend, backend)
	base := takeBaseline()

	outages := []time.Duration{3 * time.Second, 3 * time.Second}
	if os.Getenv("LCD_CHAOS_LONG") != "" {
		outages = append(outages, 3*time.Second, 17*time.Second)
	}
	var procs []chaosProc
	for cycle, outage := range outages {
		procs = append(procs, chaosCycle(t, f, cycle, outage, cycle == 1, handles)...)
	}
	var keys [][2]string
	for _, p := range procs {
		if p.codes != nil {
			keys = append(keys, [2]string{p.container, p.process})
		}
	}
	if missing := backend.awaitExits(keys, 60*time.Second); len(missing) > 0 {
		t.Errorf("no exit within 60 s for %v", missing)
	}
	// Long enough for any shim re-send to arrive as a duplicate, and for
	// whatever the library finishes after an outage.
	time.Sleep(shimRetryWindow)
	if !backend.idle(30 * time.Second) {
		t.Fatal("the backend's deletes did not finish within 30 s")
	}
	exits := backend.exits()
	for _, p := range procs {
		got := exits[[2]string{p.container, p.process}]
		switch {
		case p.codes == nil && len(got) > 0:
			t.Errorf("%s/%s is running but got exits %+v", p.container, p.process, got)
		case p.codes != nil && len(got) > 1:
			t.Errorf("%s/%s: %d exits %+v, want exactly one", p.container, p.process, len(got), got)
		case p.codes != nil && len(got) == 1 && !containsCode(p.codes, got[0].ExitCode):
			t.Errorf("%s/%s: exit code %d, want one of %v", p.container, p.process, got[0].ExitCode, p.codes)
		}
	}
	backend.mu.Lock()
	t.Logf("%d of the backend's deletes failed (moby logs them and goes on)", len(backend.failed))
	backend.mu.Unlock()

	// What the daemon does next: remove each exited container once (its
	// task already deleted by the monitor), `rm -f` the running ones.
	handles.mu.Lock()
	ctrs := make(map[string]types.Container, len(handles.ctrs))
	for id, c := range handles.ctrs {
		ctrs[id] = c
	}
	running := map[string]types.Task{}
	for _, p := range procs {
		if p.codes == nil {
			running[p.container] = handles.tasks[p.container]
		}
	}
	handles.mu.Unlock()
	for id, task := range running {
		if err := task.ForceDelete(f.ctx); ignoreNotFound(err) != nil {
			t.Errorf("force delete %s: %v", id, err)
		}
	}
	if !backend.idle(30 * time.Second) {
		t.Fatal("the backend's deletes did not finish within 30 s")
	}
	for id, c := range ctrs {
		if err := c.Delete(f.ctx); err != nil {
			t.Errorf("delete container %s (once, as the daemon does): %v", id, err)
		}
	}

	list, err := f.raw.TaskService().List(f.ctx, &tasks.ListTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range list.Tasks {
		t.Errorf("task left in containerd: %s %s (exit %d)", task.ID, task.Status, task.ExitStatus)
	}
	for id := range ctrs {
		if fifos := f.fifos(id); len(fifos) > 0 {
			t.Errorf("FIFOs left for %s: %v", id, fifos)
		}
	}
	if fifos, dirs := countFIFOsAndDirs(f.stateDir); fifos != 0 || dirs != 0 {
		t.Errorf("%d FIFOs and %d dirs left in the state dir", fifos, dirs)
	}
	assertNoShims(t, f.ns)
	assertNotTracked(t, f.client)
	base.check(t, "after the chaos and every container removed")
}
