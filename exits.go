package libcontainerd

import (
	"sync"
	"time"

	"github.com/lcdkit/libcontainerd/internal/ledger"
	"github.com/lcdkit/libcontainerd/internal/testhooks"
	"github.com/lcdkit/libcontainerd/types"
)

// Exit delivery.
//
// Six sources learn that a process ended, and they race: the event stream's
// TaskExit and TaskDelete, the answers to this client's own calls (Delete,
// DeleteProcess, ForceDelete's Wait, Start, Status), the shim watch while
// containerd is down (shimwatch.go), and containerd's Get asked by the
// reconciler (reconcile.go). Each reports to one pure state machine,
// internal/ledger, which alone decides what the backend gets: it matches news
// to the incarnation a handle holds, or asks containerd when it cannot place
// it, and never compares clocks or remembers a pid past its delete (its
// package doc has the rules). exitState is the ledger's driver: it
// serializes the inputs and carries out what the ledger asks for.

// exitState holds the ledger and what the client does for it.
type exitState struct {
	c *Client

	mu sync.Mutex
	l  *ledger.Ledger
	// echoed is the newest barrier that came back through the stream.
	echoed uint64
	// finishes are deletes to finish once their grace has passed, and
	// unfinished the handles they are for (a finish also releases the
	// handle's FIFOs).
	finishes   []pendingFinish
	unfinished map[ledger.ID]*process

	// kick wakes the stream reader (a barrier to publish); wake wakes the
	// reconciler (questions for containerd, deletes to finish); relive
	// tells it the stream went live again; watch wakes the shim watch (the
	// processes to watch changed).
	kick, wake, relive, watch chan struct{}
}

// pendingFinish is a delete to finish, and when it is due.
type pendingFinish struct {
	f   ledger.Finish
	due time.Time
}

func newExitState(c *Client) *exitState {
	return &exitState{
		c:          c,
		l:          ledger.New(),
		unfinished: map[ledger.ID]*process{},
		kick:       make(chan struct{}, 1),
		wake:       make(chan struct{}, 1),
		relive:     make(chan struct{}, 1),
		watch:      make(chan struct{}, 1),
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func init() {
	testhooks.TrackedProcesses = func(client any) int {
		c, ok := client.(*Client)
		if !ok {
			return -1
		}
		return c.exits.size()
	}
}

// do feeds the ledger one input (f) and carries out what it asks. Exits are
// queued for the backend under the lock, so the queue gets them in the
// order the ledger decided; only the stream reader's inputs deliver any.
func (x *exitState) do(f func(l *ledger.Ledger)) {
	x.mu.Lock()
	f(x.l)
	rd := x.l.Ready()
	for _, e := range rd.Deliver {
		x.c.queueExit(e)
	}
	for _, f := range rd.Finish {
		x.finishes = append(x.finishes, pendingFinish{f: f, due: time.Now().Add(finishGrace)})
	}
	x.mu.Unlock()
	if rd.Barrier {
		signal(x.kick)
	}
	if rd.Checks || len(rd.Finish) > 0 {
		signal(x.wake)
	}
	if rd.Watch {
		signal(x.watch)
	}
}

// id runs f, an input that returns the incarnation it is about.
func (x *exitState) id(f func(l *ledger.Ledger) ledger.ID) ledger.ID {
	var id ledger.ID
	x.do(func(l *ledger.Ledger) { id = f(l) })
	return id
}

// ask runs a query (no input: nothing to carry out).
func (x *exitState) ask(f func(l *ledger.Ledger) bool) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return f(x.l)
}

// size is how many entries the ledger holds (for tests and the memory
// bound).
func (x *exitState) size() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.l.Size()
}

// nextBarrier reserves a barrier number (a live probe, or one published
// again).
func (x *exitState) nextBarrier() uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.l.NextBarrier()
}

// needBarrier returns a barrier to publish, if news waits for one.
func (x *exitState) needBarrier() uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.l.NeedBarrier()
}

// live reports whether the stream is live.
func (x *exitState) live() bool {
	return x.ask(func(l *ledger.Ledger) bool { return l.Live() })
}

// finishLater keeps the handle whose delete's outcome was unknown, for the
// ledger's Finish.
func (x *exitState) finishLater(p *process, id ledger.ID) {
	if id == 0 {
		return
	}
	x.mu.Lock()
	x.unfinished[id] = p
	x.mu.Unlock()
}

// dueFinishes returns the finishes due now, and how long until the next
// (0: none waiting). A handle whose delete no longer needs finishing (its
// process deleted otherwise) has its FIFOs released and is dropped.
func (x *exitState) dueFinishes() (due []finishWork, later time.Duration) {
	now := time.Now()
	var release []*process
	x.mu.Lock()
	keep := x.finishes[:0]
	for _, pf := range x.finishes {
		switch wait := pf.due.Sub(now); {
		case wait > 0:
			keep = append(keep, pf)
			if later == 0 || wait < later {
				later = wait
			}
		case x.l.FinishPending(pf.f.ID):
			if p := x.unfinished[pf.f.ID]; p != nil {
				due = append(due, finishWork{pf.f, p})
			}
		}
	}
	x.finishes = keep
	for id, p := range x.unfinished {
		if !x.l.FinishPending(id) {
			delete(x.unfinished, id)
			release = append(release, p)
		}
	}
	x.mu.Unlock()
	for _, p := range release {
		p.releaseIO()
	}
	return due, later
}

// finishWork is a delete to finish now through its handle.
type finishWork struct {
	f ledger.Finish
	p *process
}

// queueExit hands an exit the ledger decided on to the backend's queue.
func (c *Client) queueExit(e ledger.Exit) {
	at := e.At
	if e.Source == ledger.FromGuess {
		// Nobody knows when it ended: when it was confirmed gone.
		at = time.Now()
	}
	c.queueEvent(types.EventExit, types.EventInfo{
		ContainerID: e.Key.Container, ProcessID: e.Key.Process, Pid: e.Pid,
		ExitCode: e.Code, ExitedAt: at,
	})
	if e.Source != ledger.FromStream {
		c.logger.WithField("container", e.Key.Container).WithField("process", e.Key.Process).
			WithField("exit-code", e.Code).WithField("source", e.Source.String()).
			Debug("delivering an exit the event stream did not carry")
	}
}

// keyOf is the ledger key of a process of container id (execID "": its
// init).
func keyOf(containerID, execID string) ledger.Key {
	if execID == "" {
		return ledger.InitKey(containerID)
	}
	return ledger.Key{Container: containerID, Process: execID}
}
