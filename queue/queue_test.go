package queue

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/log"
	"go.uber.org/goleak"

	"github.com/lcdkit/libcontainerd/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// within is the bound for anything that should happen "soon"; generous so
// a loaded CI machine under -race does not flake.
const within = 5 * time.Second

func waitCh(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(within):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func waitQueue(t *testing.T, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	if err := q.Wait(ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
}

// TestOrderPerID checks strict per-ID order and mutual exclusion with many
// IDs and many appending goroutines, some of which interleave IDs.
func TestOrderPerID(t *testing.T) {
	const (
		nIDs    = 200
		perID   = 50
		nMixers = 8
		perMix  = 20 // IDs per mixer
	)
	var q Queue

	type rec struct {
		running atomic.Int32
		got     []int // touched only by that ID's handlers, which are serial
	}
	own := make([]rec, nIDs)
	mix := make([]rec, nMixers*perMix)
	var bad atomic.Int32

	handler := func(r *rec, seq int) func() {
		return func() {
			if r.running.Add(1) != 1 {
				bad.Add(1)
			}
			if seq%7 == 0 {
				runtime.Gosched() // widen the window for overlap
			}
			r.got = append(r.got, seq)
			r.running.Add(-1)
		}
	}

	var wg sync.WaitGroup
	for i := 0; i < nIDs; i++ {
		i := i // per-iteration copy (go 1.21 loop semantics)
		spawn(&wg, func() {
			id := fmt.Sprintf("own-%d", i)
			for seq := 0; seq < perID; seq++ {
				q.Append(id, handler(&own[i], seq))
			}
		})
	}
	// Each mixer owns perMix IDs and appends to them round-robin, so
	// appends to one ID are interleaved with appends to others.
	for m := 0; m < nMixers; m++ {
		m := m // per-iteration copy (go 1.21 loop semantics)
		spawn(&wg, func() {
			for seq := 0; seq < perID; seq++ {
				for k := 0; k < perMix; k++ {
					j := m*perMix + k
					q.Append(fmt.Sprintf("mix-%d", j), handler(&mix[j], seq))
				}
			}
		})
	}
	wg.Wait()
	waitQueue(t, &q)

	if n := bad.Load(); n != 0 {
		t.Fatalf("%d handlers ran concurrently with another for the same id", n)
	}
	check := func(kind string, rs []rec) {
		for i := range rs {
			got := rs[i].got
			if len(got) != perID {
				t.Fatalf("%s-%d: ran %d funcs, want %d", kind, i, len(got), perID)
			}
			for j, v := range got {
				if v != j {
					t.Fatalf("%s-%d: position %d ran seq %d", kind, i, j, v)
				}
			}
		}
	}
	check("own", own)
	check("mix", mix)
	if len(q.ids) != 0 {
		t.Fatalf("map not emptied after drain: %d ids left", len(q.ids))
	}
}

// TestBlockedIDDoesNotDelayOthers blocks id A forever (until the test ends)
// and checks that id B's work still runs, also behind A on every worker.
func TestBlockedIDDoesNotDelayOthers(t *testing.T) {
	var q Queue
	release := make(chan struct{})
	started := make(chan struct{})
	q.Append("A", func() {
		close(started)
		<-release
	})
	q.Append("A", func() {}) // queued behind the blocked one

	waitCh(t, started, "A to start")
	for i := 0; i < 3; i++ {
		done := make(chan struct{})
		q.Append("B", func() { close(done) })
		waitCh(t, done, fmt.Sprintf("B #%d while A blocks", i))
	}

	close(release)
	waitQueue(t, &q)
}

// TestManyBlockedIDs blocks more IDs than the normal worker cap and checks
// that yet another ID still runs, and that every blocked ID got to start.
func TestManyBlockedIDs(t *testing.T) {
	for _, n := range []int{runtime.GOMAXPROCS(0) + 2, 300} {
		t.Run(fmt.Sprintf("blocked=%d", n), func(t *testing.T) {
			var q Queue
			release := make(chan struct{})
			var started sync.WaitGroup
			started.Add(n)
			for i := 0; i < n; i++ {
				q.Append(fmt.Sprintf("blocked-%d", i), func() {
					started.Done()
					<-release
				})
			}
			done := make(chan struct{})
			q.Append("free", func() { close(done) })
			waitCh(t, done, "an unblocked id while all workers block")

			all := make(chan struct{})
			go func() { started.Wait(); close(all) }()
			waitCh(t, all, "every blocked id to start")

			close(release)
			waitQueue(t, &q)
		})
	}
}

func captureLog(t *testing.T) *testutil.SyncBuffer {
	t.Helper()
	buf := &testutil.SyncBuffer{}
	logger := log.L.Logger
	old := logger.Out
	logger.SetOutput(buf)
	t.Cleanup(func() { logger.SetOutput(old) })
	return buf
}

func TestPanicRecovered(t *testing.T) {
	buf := captureLog(t)
	var q Queue

	var order []string
	done := make(chan struct{})
	q.Append("p", func() { order = append(order, "before") })
	q.Append("p", func() { panic("boom") })
	q.Append("p", func() {
		order = append(order, "after")
		close(done)
	})
	other := make(chan struct{})
	q.Append("other", func() { close(other) })

	waitCh(t, done, "the func after the panic")
	waitCh(t, other, "another id")
	waitQueue(t, &q)

	if strings.Join(order, ",") != "before,after" {
		t.Fatalf("order = %v", order)
	}
	out := buf.String()
	for _, want := range []string{"boom", "id=p", "stack=", "recovered panic"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestGoexitInHandler(t *testing.T) {
	captureLog(t)
	var q Queue
	done := make(chan struct{})
	var ran []int
	q.Append("g", func() { ran = append(ran, 1) })
	q.Append("g", func() { runtime.Goexit() })
	q.Append("g", func() { ran = append(ran, 3) })
	q.Append("g", func() { close(done) })
	waitCh(t, done, "funcs after a Goexit")
	waitQueue(t, &q)
	if len(ran) != 2 || ran[0] != 1 || ran[1] != 3 {
		t.Fatalf("ran = %v", ran)
	}
}

func TestEmptyIDAndNilFunc(t *testing.T) {
	var q Queue
	q.Append("", nil)
	q.Append("x", nil)
	if err := q.Wait(context.Background()); err != nil {
		t.Fatalf("Wait after nil funcs: %v", err)
	}

	var got []int
	for i := 0; i < 10; i++ {
		i := i // per-iteration copy (go 1.21 loop semantics)
		q.Append("", func() { got = append(got, i) })
		q.Append("", nil)
	}
	waitQueue(t, &q)
	for i, v := range got {
		if v != i {
			t.Fatalf("empty id ran out of order: %v", got)
		}
	}
	if len(got) != 10 {
		t.Fatalf("empty id ran %d funcs, want 10", len(got))
	}
}

func TestWaitDrains(t *testing.T) {
	var q Queue
	var n atomic.Int64
	for i := 0; i < 1000; i++ {
		id := fmt.Sprint(i % 37)
		q.Append(id, func() { n.Add(1) })
	}
	waitQueue(t, &q)
	if got := n.Load(); got != 1000 {
		t.Fatalf("ran %d funcs before Wait returned, want 1000", got)
	}
	goleak.VerifyNone(t)
}

func TestWaitContextEnds(t *testing.T) {
	var q Queue
	release := make(chan struct{})
	started := make(chan struct{})
	q.Append("slow", func() {
		close(started)
		<-release
	})
	waitCh(t, started, "handler start")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := q.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with blocked handler = %v, want deadline exceeded", err)
	}

	// The queue keeps working after a timed-out Wait.
	done := make(chan struct{})
	q.Append("other", func() { close(done) })
	waitCh(t, done, "work after a timed-out Wait")

	close(release)
	waitQueue(t, &q)
	goleak.VerifyNone(t)
}

func TestConcurrentWaiters(t *testing.T) {
	var q Queue
	release := make(chan struct{})
	q.Append("a", func() { <-release })
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for k := 0; k < 4; k++ {
		spawn(&wg, func() {
			ctx, cancel := context.WithTimeout(context.Background(), within)
			defer cancel()
			errs <- q.Wait(ctx)
		})
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Wait: %v", err)
		}
	}
}

func TestZeroValueAndAppendAfterWait(t *testing.T) {
	var q Queue
	if err := q.Wait(context.Background()); err != nil {
		t.Fatalf("Wait on zero Queue: %v", err)
	}
	for round := 0; round < 3; round++ {
		done := make(chan struct{})
		q.Append("id", func() { close(done) })
		waitCh(t, done, fmt.Sprintf("round %d", round))
		waitQueue(t, &q)
	}
	goleak.VerifyNone(t)
}

// TestIdleWorkersExit checks that without Wait the pool still shrinks to
// nothing once the queue goes quiet.
func TestIdleWorkersExit(t *testing.T) {
	var q Queue
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		q.Append(fmt.Sprint(i), wg.Done)
	}
	wg.Wait()
	goleak.VerifyNone(t) // retries for longer than idleLinger
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.workers != 0 {
		t.Fatalf("workers = %d after linger", q.workers)
	}
}

// TestWorkersReused checks that activating IDs one after another does not
// start a goroutine per activation.
func TestWorkersReused(t *testing.T) {
	var q Queue
	done := make(chan struct{})
	for i := 0; i < 2000; i++ {
		q.Append(fmt.Sprint(i), func() { done <- struct{}{} })
		<-done
	}
	waitQueue(t, &q)
	if q.spawned > runtime.GOMAXPROCS(0) {
		t.Fatalf("%d workers started for 2000 sequential activations", q.spawned)
	}
}

// TestNoGoroutinePerPendingEvent checks that a backlog costs no goroutines.
func TestNoGoroutinePerPendingEvent(t *testing.T) {
	var q Queue
	release := make(chan struct{})
	started := make(chan struct{})
	q.Append("a", func() {
		close(started)
		<-release
	})
	waitCh(t, started, "blocker")
	before := runtime.NumGoroutine()
	for k := 0; k < 10000; k++ {
		q.Append("a", func() {})
	}
	if d := runtime.NumGoroutine() - before; d > 2 {
		t.Fatalf("10000 pending events added %d goroutines", d)
	}
	close(release)
	waitQueue(t, &q)
}

// TestStress mixes appends, blocking handlers, panics and Waits from many
// goroutines, mainly for the race detector.
func TestStress(t *testing.T) {
	captureLog(t)
	var q Queue
	var ran, want atomic.Int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		g := g // per-iteration copy (go 1.21 loop semantics)
		spawn(&wg, func() {
			for i := 0; i < 300; i++ {
				id := fmt.Sprint((g*31 + i) % 23)
				want.Add(1)
				switch i % 50 {
				case 0:
					q.Append(id, func() {
						ran.Add(1)
						time.Sleep(time.Millisecond) // a slow handler, not synchronisation
					})
				case 1:
					q.Append(id, func() {
						ran.Add(1)
						panic("stress")
					})
				default:
					q.Append(id, func() { ran.Add(1) })
				}
				if i%100 == 99 {
					ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
					_ = q.Wait(ctx)
					cancel()
				}
			}
		})
	}
	wg.Wait()
	waitQueue(t, &q)
	if ran.Load() != want.Load() {
		t.Fatalf("ran %d of %d funcs", ran.Load(), want.Load())
	}
}

// spawn runs f in a goroutine counted by wg (sync.WaitGroup.Go is Go 1.25;
// the module's language version is 1.21, its consumers' floor).
func spawn(wg *sync.WaitGroup, f func()) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		f()
	}()
}

// TestOnWorker checks that the hook runs on the worker goroutine itself, at
// its start and its end, balanced (a Goexit in a handler included), and that
// every handler runs on a goroutine the hook announced.
func TestOnWorker(t *testing.T) {
	var (
		mu      sync.Mutex
		live    = map[string]int{}
		started int
	)
	self := func() string {
		buf := make([]byte, 64)
		buf = buf[:runtime.Stack(buf, false)]
		return strings.Fields(string(buf))[1] // "goroutine N [running]:"
	}
	var q Queue
	q.OnWorker = func(start bool) {
		mu.Lock()
		defer mu.Unlock()
		if start {
			live[self()]++
			started++
		} else {
			live[self()]--
		}
	}
	outside := make(chan string, 200)
	for i := 0; i < 100; i++ {
		q.Append(fmt.Sprint(i%7), func() {
			mu.Lock()
			if live[self()] <= 0 {
				outside <- self()
			}
			mu.Unlock()
		})
	}
	q.Append("x", func() { runtime.Goexit() })
	q.Append("x", func() {})
	waitQueue(t, &q)
	close(outside)
	for g := range outside {
		t.Errorf("a handler ran on goroutine %s, which the hook did not announce", g)
	}
	// A worker's end hook runs as its goroutine returns, just after Wait
	// has seen it go.
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		var open []string
		for g, n := range live {
			if n != 0 {
				open = append(open, fmt.Sprintf("goroutine %s: %d", g, n))
			}
		}
		n := started
		mu.Unlock()
		if n == 0 {
			t.Fatal("the hook never ran")
		}
		if len(open) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("starts not matched by an end: %v", open)
		}
		time.Sleep(time.Millisecond)
	}
}
