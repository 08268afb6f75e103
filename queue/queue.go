package queue

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/containerd/log"
)

const (
	// stallAfter is how long IDs may wait on the ready list with no worker
	// finishing a batch before the watchdog concludes that the workers are
	// stuck in handlers and adds more. Short enough that a blocked ID costs
	// others little latency, long enough that busy workers rarely trip it.
	stallAfter = 3 * time.Millisecond

	// idleLinger is how long an idle worker waits for new work before it
	// exits. It bridges bursts without spawning, yet lets the goroutine
	// count fall back to zero soon after the queue goes quiet.
	idleLinger = 100 * time.Millisecond

	// maxBurst caps how many workers one watchdog tick may add. The burst
	// doubles on every stalled tick so a wave of blocked IDs is absorbed in
	// a few ticks rather than one tick per ID.
	maxBurst = 256

	// maxRetain is the largest func-slice capacity kept for reuse, so one
	// huge burst does not pin its backing array forever.
	maxRetain = 1 << 12

	// maxFree bounds the free list of per-ID records.
	maxFree = 1 << 10

	// bigMap is the map size above which the map is dropped once the queue
	// is quiet: Go maps never shrink, and IDs come and go.
	bigMap = 1 << 12
)

// Queue is a per-ID serial work queue. The zero value is ready to use.
//
// Funcs appended for one ID run one at a time in Append order; funcs for
// different IDs run concurrently. A Queue must not be copied after first use.
type Queue struct {
	mu sync.Mutex

	// ids holds every ID that has pending or running work. An entry is
	// always either owned by a worker or on the ready list, which is what
	// lets Append schedule only when it creates an entry.
	ids     map[string]*idQueue
	peakIDs int

	// ready is a FIFO (linked through idQueue.next) of IDs with work and
	// no worker. It is non-empty only while every worker is busy.
	readyHead, readyTail *idQueue

	// free recycles idQueue records and their slices, so an ID that keeps
	// going quiet and busy again does not allocate each time.
	free  *idQueue
	nfree int

	// idle is a stack of parked workers; the top one is the most recently
	// used (warm) and the bottom ones are the first to time out.
	idle       []*worker
	workers    int // live worker goroutines, busy or idle
	maxWorkers int // GOMAXPROCS, sampled when the pool starts from empty
	spawned    int // workers ever started (lets tests check reuse)

	// progress counts batches finished; the watchdog compares it across a
	// tick to tell "busy" from "stuck".
	progress uint64

	wd      *time.Timer // watchdog, created once, armed on demand
	wdArmed bool
	wdSeen  uint64
	wdBurst int

	waiters int           // Wait calls in progress: idle workers exit at once
	done    chan struct{} // closed when workers drops to zero

	// OnWorker, if set before the first Append, is called on each worker
	// goroutine as it starts (true) and as it ends (false): a caller that
	// needs to know whether it runs inside a handler can note the
	// goroutine once per worker rather than once per handler.
	OnWorker func(start bool)
}

// idQueue is the backlog of one ID.
type idQueue struct {
	id    string
	funcs []func()
	next  *idQueue // ready list or free list link
}

// worker is the state of one worker goroutine. Its channel and timer are
// allocated once and reused across every park.
type worker struct {
	wake  chan struct{} // buffered(1): a handoff never blocks the sender
	timer *time.Timer
	idle  bool // on Queue.idle; guarded by Queue.mu

	// cur and batch are set under Queue.mu by whoever hands the worker an
	// ID; cur == nil on wake-up means "exit".
	cur   *idQueue
	batch []func()
	pos   int // next index in batch; survives a handler's Goexit
}

// Append queues f to run after every func previously appended for id.
// It never blocks on handlers. A nil f is ignored.
func (q *Queue) Append(id string, f func()) {
	if f == nil {
		return
	}
	q.mu.Lock()
	if iq := q.ids[id]; iq != nil {
		// Already owned by a worker or on the ready list: it will be seen.
		iq.funcs = append(iq.funcs, f)
		q.mu.Unlock()
		return
	}
	iq := q.newIDQueue(id)
	iq.funcs = append(iq.funcs, f)
	if q.ids == nil {
		q.ids = make(map[string]*idQueue)
	}
	q.ids[id] = iq
	if len(q.ids) > q.peakIDs {
		q.peakIDs = len(q.ids)
	}
	q.schedule(iq)
	q.mu.Unlock()
}

// Wait blocks until every func appended so far (and any appended while it
// waits) has run and every worker goroutine has exited; idle workers are
// told to exit at once. It returns ctx.Err() if ctx ends first. The Queue
// stays usable afterwards. Wait must not be called from a handler of the
// same Queue, since that handler's own worker could never exit.
func (q *Queue) Wait(ctx context.Context) error {
	q.mu.Lock()
	if q.workers == 0 {
		q.mu.Unlock()
		return nil
	}
	for _, w := range q.idle {
		w.idle = false
		w.cur = nil
		w.wake <- struct{}{}
	}
	clear(q.idle)
	q.idle = q.idle[:0]
	q.waiters++
	if q.done == nil {
		q.done = make(chan struct{})
	}
	done := q.done
	q.mu.Unlock()

	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	q.mu.Lock()
	q.waiters--
	q.mu.Unlock()
	return err
}

// newIDQueue takes a record from the free list or allocates one.
// Caller holds q.mu.
func (q *Queue) newIDQueue(id string) *idQueue {
	iq := q.free
	if iq == nil {
		return &idQueue{id: id}
	}
	q.free = iq.next
	q.nfree--
	iq.next = nil
	iq.id = id
	return iq
}

// release returns a drained record to the free list. Caller holds q.mu.
func (q *Queue) release(iq *idQueue) {
	if q.nfree >= maxFree {
		return
	}
	iq.id = ""
	if cap(iq.funcs) > maxRetain {
		iq.funcs = nil
	}
	iq.next = q.free
	q.free = iq
	q.nfree++
}

// schedule finds a worker for iq, which has work and no worker: an idle
// one if any, else a new one while under the GOMAXPROCS cap, else the
// ready list (with the watchdog armed in case every worker is stuck).
// Caller holds q.mu.
func (q *Queue) schedule(iq *idQueue) {
	if n := len(q.idle); n > 0 {
		w := q.idle[n-1]
		q.idle[n-1] = nil
		q.idle = q.idle[:n-1]
		w.idle = false
		assign(w, iq)
		w.wake <- struct{}{}
		return
	}
	if q.workers == 0 {
		// runtime.GOMAXPROCS takes a scheduler-wide lock, so sample it
		// only when the pool starts from empty, not on every activation.
		q.maxWorkers = runtime.GOMAXPROCS(0)
	}
	if q.workers < q.maxWorkers {
		q.spawn(iq)
		return
	}
	q.pushReady(iq)
}

// spawn starts a worker that begins with iq. Caller holds q.mu.
func (q *Queue) spawn(iq *idQueue) {
	w := &worker{wake: make(chan struct{}, 1)}
	assign(w, iq)
	q.workers++
	q.spawned++
	go q.run(w)
}

// assign hands iq's whole backlog to w, giving iq w's emptied slice back
// so both arrays are reused. Caller holds q.mu.
func assign(w *worker, iq *idQueue) {
	w.cur = iq
	w.batch, iq.funcs = iq.funcs, w.batch[:0]
	w.pos = 0
}

// pushReady appends iq to the ready list. Caller holds q.mu.
func (q *Queue) pushReady(iq *idQueue) {
	iq.next = nil
	if q.readyTail == nil {
		q.readyHead = iq
	} else {
		q.readyTail.next = iq
	}
	q.readyTail = iq
	q.armWatchdog()
}

// popReady removes the oldest ready ID, or returns nil. Caller holds q.mu.
func (q *Queue) popReady() *idQueue {
	iq := q.readyHead
	if iq == nil {
		return nil
	}
	q.readyHead = iq.next
	if q.readyHead == nil {
		q.readyTail = nil
	}
	iq.next = nil
	return iq
}

// run is a worker goroutine's body.
func (q *Queue) run(w *worker) {
	if hook := q.OnWorker; hook != nil {
		hook(true)
		defer hook(false)
	}
	normal := false
	defer func() {
		if !normal {
			// A handler called runtime.Goexit. Recover cannot stop that, so
			// carry the worker's state (pos already points past that
			// handler) over to a fresh goroutine.
			log.L.WithField("id", w.cur.id).Error("queue: handler called runtime.Goexit; continuing on a new worker goroutine")
			go q.run(w)
		}
	}()
	for {
		iq := w.cur
		for w.pos < len(w.batch) {
			f := w.batch[w.pos]
			w.batch[w.pos] = nil // let the closure go; also keeps recycled arrays clean
			w.pos++
			call(iq.id, f)
		}
		w.batch = w.batch[:0]
		if cap(w.batch) > maxRetain {
			w.batch = nil
		}

		q.mu.Lock()
		q.progress++
		if len(iq.funcs) > 0 {
			if q.readyHead == nil {
				// Nobody else is waiting: keep going without a round trip
				// through the ready list (and without arming the watchdog).
				assign(w, iq)
				q.mu.Unlock()
				continue
			}
			q.pushReady(iq) // back of the line, for fairness
		} else {
			delete(q.ids, iq.id)
			q.release(iq)
		}
		w.cur = nil
		if next := q.popReady(); next != nil {
			assign(w, next)
			q.mu.Unlock()
			continue
		}
		if q.waiters > 0 {
			q.exitLocked()
			q.mu.Unlock()
			normal = true
			return
		}
		w.idle = true
		q.idle = append(q.idle, w)
		q.mu.Unlock()

		if !q.park(w) {
			normal = true
			return
		}
	}
}

// park waits, idle, for a handoff. It returns false if the worker should
// exit, having already been accounted for.
func (q *Queue) park(w *worker) bool {
	if w.timer == nil {
		w.timer = time.NewTimer(idleLinger)
	} else {
		w.timer.Reset(idleLinger)
	}
	select {
	case <-w.wake:
		w.timer.Stop()
	case <-w.timer.C:
		q.mu.Lock()
		if w.idle {
			q.removeIdle(w)
			q.exitLocked()
			q.mu.Unlock()
			return false
		}
		// Handed work (or told to exit) just as the linger ran out; the
		// wake-up is already in the buffered channel.
		q.mu.Unlock()
		<-w.wake
	}
	if w.cur == nil {
		q.mu.Lock()
		q.exitLocked()
		q.mu.Unlock()
		return false
	}
	return true
}

// removeIdle takes w off the idle stack. Caller holds q.mu.
func (q *Queue) removeIdle(w *worker) {
	// Timed-out workers are the oldest, near the bottom: scan from there.
	for i, x := range q.idle {
		if x == w {
			copy(q.idle[i:], q.idle[i+1:])
			q.idle[len(q.idle)-1] = nil
			q.idle = q.idle[:len(q.idle)-1]
			break
		}
	}
	w.idle = false
}

// exitLocked accounts for a worker about to return. When the last one
// goes, the queue is quiet: wake Wait callers and drop cached memory.
// Caller holds q.mu.
func (q *Queue) exitLocked() {
	q.workers--
	if q.workers > 0 {
		return
	}
	if q.done != nil {
		close(q.done)
		q.done = nil
	}
	if q.wdArmed {
		q.wd.Stop()
		q.wdArmed = false
	}
	q.wdBurst = 0
	q.free, q.nfree = nil, 0
	if q.peakIDs > bigMap {
		q.ids, q.peakIDs = nil, 0
	}
	q.idle = nil
}

// armWatchdog schedules a stall check unless one is pending.
// Caller holds q.mu.
func (q *Queue) armWatchdog() {
	if q.wdArmed {
		return
	}
	q.wdArmed = true
	q.wdSeen = q.progress
	if q.wd == nil {
		q.wd = time.AfterFunc(stallAfter, q.watchdog)
	} else {
		q.wd.Reset(stallAfter)
	}
}

// watchdog runs when IDs have been waiting for stallAfter. If no worker
// finished a batch in that time, the workers are presumed stuck in
// handlers, and extra workers are started for waiting IDs.
func (q *Queue) watchdog() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.wdArmed = false
	if q.readyHead == nil {
		q.wdBurst = 0
		return
	}
	if q.progress != q.wdSeen {
		q.wdBurst = 0
		q.armWatchdog()
		return
	}
	q.wdBurst = min(max(1, 2*q.wdBurst), maxBurst)
	for i := 0; i < q.wdBurst; i++ {
		iq := q.popReady()
		if iq == nil {
			break
		}
		q.spawn(iq)
	}
	if q.readyHead != nil {
		q.armWatchdog()
	}
}

// call runs one handler, recovering and logging a panic so that one bad
// event neither kills the process nor stops the ID's later events.
func call(id string, f func()) {
	defer func() {
		if r := recover(); r != nil {
			log.L.WithField("id", id).WithField("panic", r).WithField("stack", string(debug.Stack())).Error("queue: recovered panic in handler")
		}
	}()
	f()
}
