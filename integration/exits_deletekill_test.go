package integration

import (
	"context"
	"fmt"
	"github.com/lcdkit/libcontainerd/internal/testenv"
	"sync"
	"testing"
	"time"

	"github.com/lcdkit/libcontainerd/types"
)

// TestTaskDeleteCutOffByKill: containers whose inits exited on their own
// (code 21, delivered) have their tasks deleted all at once, and containerd
// is SIGKILLed in the middle of those deletes and restarted. Where the shim
// had already deleted its container, the restarted containerd still lists
// the task (it reloads the shim); the documented recovery (Task.Delete
// again, or ForceDelete: every other container each) then makes the shim
// answer NotFound ("container not created"), and containerd, cleaning up
// after the shim, publishes a TaskExit of its own for the same pid (137, a
// new time) and a TaskDelete. The process's exit was delivered already:
// the backend must not get a second one. Each process gets exactly one
// exit, 21; nothing is left; the client tracks nothing. Two rounds of 16
// (a round hits the window in about half the runs here). Seen first in
// TestLifecyclesAcrossContainerdKill's lifecycles released into
// Task.Delete; this test has only those.
func TestTaskDeleteCutOffByKill(t *testing.T) {
	testenv.LogGuard(t) // an outage must not make the library log errors
	for round := 0; round < 2; round++ {
		taskDeleteCutOffByKill(t, round)
	}
}

func taskDeleteCutOffByKill(t *testing.T, round int) {
	f := newFixture(t)
	const n = 16
	ids := make([]string, n)
	ctrs := make([]types.Container, n)
	tasks := make([]types.Task, n)
	var keys [][2]string
	for i := range ids {
		ids[i] = fmt.Sprintf("dk%d-%d", round, i)
		ctrs[i] = f.newContainer(ids[i], "sh", "-c", "exit 21")
		task, err := ctrs[i].NewTask(f.ctx, "", false, newStdio().attach)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Start(f.ctx); err != nil {
			t.Fatal(err)
		}
		tasks[i] = task
		keys = append(keys, [2]string{ids[i], ids[i]})
	}
	if missing := f.backend.awaitExits(keys, waitTimeout); len(missing) > 0 {
		t.Fatalf("no exit for %v", missing)
	}

	// The deletes start 5 ms apart and containerd dies in the middle of
	// them: some are done, some not begun, some cut off half-way.
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range tasks {
		i := i
		wg.Add(1)
		time.AfterFunc(time.Duration(i)*5*time.Millisecond, func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(f.ctx, waitTimeout)
			defer cancel()
			_, errs[i] = tasks[i].Delete(ctx)
		})
	}
	time.Sleep(n * 5 * time.Millisecond / 2) // the scenario: half-way through the deletes
	env.Kill()
	time.Sleep(time.Second) // the scenario: containerd is down this long
	if err := env.Start(); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
	wg.Wait()
	// The raw client reconnects on its own backoff; wait until it has.
	serveCtx, cancel := context.WithTimeout(f.ctx, waitTimeout)
	ok, err := f.raw.IsServing(serveCtx)
	cancel()
	if !ok || err != nil {
		t.Fatalf("client did not reconnect: %v", err)
	}
	failed := 0
	for i, err := range errs {
		if err == nil {
			continue
		}
		failed++
		if c := classOf(err); c != "Unavailable" {
			t.Errorf("%s: Task.Delete failed with %q (class %q), want Unavailable", ids[i], err, c)
		}
		// The documented recoveries, every other container each: retry,
		// or ForceDelete (what moby's `rm -f` does); NotFound means the
		// failed call did it.
		ctx, cancel := context.WithTimeout(f.ctx, waitTimeout)
		if i%2 == 0 {
			if _, err := tasks[i].Delete(ctx); ignoreNotFound(err) != nil {
				t.Errorf("%s: Task.Delete again: %v", ids[i], err)
			}
		} else if err := tasks[i].ForceDelete(ctx); ignoreNotFound(err) != nil {
			t.Errorf("%s: ForceDelete: %v", ids[i], err)
		}
		cancel()
	}
	t.Logf("round %d: %d of %d task deletes cut off by the kill", round, failed, n)
	// What containerd publishes after a retried delete (its clean-up after
	// the shim) comes within moments; the shim's re-sends, if any, later.
	time.Sleep(3 * time.Second) // the scenario: an observation window for a second exit
	for i, ctr := range ctrs {
		if err := ctr.Delete(f.ctx); err != nil {
			t.Errorf("%s: Container.Delete: %v", ids[i], err)
		}
		f.assertGone(ids[i])
	}
	exits := f.backend.exits()
	for _, k := range keys {
		got := exits[k]
		switch {
		case len(got) != 1:
			t.Errorf("%s: %d exits %+v, want exactly one", k[0], len(got), got)
		case got[0].ExitCode != 21:
			t.Errorf("%s: exit code %d, want 21", k[0], got[0].ExitCode)
		}
	}
	assertNoShims(t, f.ns)
	assertNotTracked(t, f.client)
}
