package queue

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// mobyQueue is a reference written the way moby's libcontainerd/queue
// works, kept here only to compare against: every Append makes a channel
// and starts a goroutine that waits for the previous event's channel for
// that ID, runs f, then closes its own channel.
type mobyQueue struct {
	mu   sync.Mutex
	last map[string]chan struct{}
	wg   sync.WaitGroup // for the benchmark's "wait for completion" only
}

func (q *mobyQueue) Append(id string, f func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.last == nil {
		q.last = make(map[string]chan struct{})
	}
	prev, ok := q.last[id]
	done := make(chan struct{})
	q.last[id] = done
	q.wg.Add(1)
	go func() {
		defer q.wg.Done()
		if ok {
			<-prev
		}
		f()
		close(done)
		q.mu.Lock()
		if q.last[id] == done {
			delete(q.last, id)
		}
		q.mu.Unlock()
	}()
}

func (q *mobyQueue) wait() { q.wg.Wait() }

// benchQueue is what both implementations offer the benchmarks.
type benchQueue interface {
	Append(id string, f func())
	wait()
}

type oursQueue struct{ Queue }

func (q *oursQueue) wait() {
	if err := q.Wait(context.Background()); err != nil {
		panic(err)
	}
}

var impls = []struct {
	name string
	new  func() benchQueue
}{
	{"ours", func() benchQueue { return &oursQueue{} }},
	{"moby", func() benchQueue { return &mobyQueue{} }},
}

func idNames(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("container-%d", i)
	}
	return ids
}

// BenchmarkThroughput appends b.N trivial events round-robin over a set of
// IDs and waits for all of them to run.
func BenchmarkThroughput(b *testing.B) {
	for _, impl := range impls {
		for _, nIDs := range []int{1, 10, 1000} {
			b.Run(fmt.Sprintf("%s/ids=%d", impl.name, nIDs), func(b *testing.B) {
				ids := idNames(nIDs)
				q := impl.new()
				var n atomic.Int64
				f := func() { n.Add(1) }
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					q.Append(ids[i%nIDs], f)
				}
				q.wait()
				b.StopTimer()
				if got := n.Load(); got != int64(b.N) {
					b.Fatalf("ran %d of %d events", got, b.N)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			})
		}
	}
}

// memInUse is heap plus goroutine stacks: a parked goroutine's cost is
// mostly stack, which HeapAlloc alone would not show.
func memInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc + ms.StackInuse
}

// BenchmarkPending blocks the first handler of each of nIDs IDs, queues
// b.N events behind them, and reports what each pending event costs in
// memory and goroutines.
func BenchmarkPending(b *testing.B) {
	for _, impl := range impls {
		for _, nIDs := range []int{1, 1000} {
			b.Run(fmt.Sprintf("%s/ids=%d", impl.name, nIDs), func(b *testing.B) {
				ids := idNames(nIDs)
				q := impl.new()
				release := make(chan struct{})
				var started sync.WaitGroup
				started.Add(nIDs)
				for _, id := range ids {
					q.Append(id, func() {
						started.Done()
						<-release
					})
				}
				allStarted := make(chan struct{})
				go func() { started.Wait(); close(allStarted) }()
				select {
				case <-allStarted:
				case <-time.After(10 * time.Second):
					close(release)
					b.Fatal("blocking handlers did not all start")
				}

				var n atomic.Int64
				f := func() { n.Add(1) }
				mem0 := memInUse()
				g0 := runtime.NumGoroutine()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					q.Append(ids[i%nIDs], f)
				}
				b.StopTimer()
				g1 := runtime.NumGoroutine()
				mem1 := memInUse()

				close(release)
				q.wait()
				if got := n.Load(); got != int64(b.N) {
					b.Fatalf("ran %d of %d events", got, b.N)
				}
				perEvent := (float64(mem1) - float64(mem0)) / float64(b.N)
				b.ReportMetric(max(perEvent, 0), "B/pending-event")
				b.ReportMetric(float64(g1-g0)/float64(b.N), "goroutines/pending-event")
			})
		}
	}
}
