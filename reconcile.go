package libcontainerd

import (
	"context"
	"fmt"
	"sync"
	"time"

	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/log"

	"github.com/lcdkit/libcontainerd/internal/errclass"
	"github.com/lcdkit/libcontainerd/internal/ledger"
)

// The reconciler asks containerd what the ledger wants to know: after every
// (re)connect, about each process it holds (whose fate the stream may have
// missed); about a start whose answer was lost; and about news it cannot
// place (an exit of a process it does not hold: is it the process containerd
// shows under that key, with that pid and code?). It also finishes the
// deletes an outage or a context cut off, once their grace has passed. It
// runs apart from the stream reader, so events never wait for it; one Get
// per question (no reply grows with the host, as a List of every task would:
// gRPC refuses replies over 16 MiB, about 26k tasks), a few containers at a
// time; and it asks again, with backoff, whatever containerd did not answer.

const (
	// reconcileWorkers bounds the containers asked about at once.
	reconcileWorkers = 8
	// reconcileCallTimeout bounds one Get.
	reconcileCallTimeout = 5 * time.Second
	// firstReconcileRetry and maxReconcileRetry bound the backoff after a
	// round in which some Get failed (containerd restarting again, say).
	firstReconcileRetry = 50 * time.Millisecond
	maxReconcileRetry   = 5 * time.Second
)

// finishGrace is how long the client waits before finishing a delete whose
// outcome was unknown: a caller that retries (the documented recovery, whose
// answer carries the exit status) goes first.
var finishGrace = 5 * time.Second

// runReconciler asks and finishes what the ledger hands out until ctx ends.
func (c *Client) runReconciler(ctx context.Context) {
	defer close(c.reconcileDone)
	delay := firstReconcileRetry
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		var checks []ledger.Check
		c.exits.mu.Lock()
		checks = c.exits.l.TakeChecks()
		c.exits.mu.Unlock()
		due, later := c.exits.dueFinishes()
		answered := c.reconcileRound(ctx, checks) && c.finishDeletes(ctx, due)
		var wait time.Duration
		switch {
		case !answered:
			wait = delay
			if delay *= 2; delay > maxReconcileRetry {
				delay = maxReconcileRetry
			}
		case later > 0:
			delay, wait = firstReconcileRetry, later
		default:
			delay = firstReconcileRetry
		}
		if wait > 0 {
			timer.Reset(wait)
		}
		// After a round containerd did not answer, wait out the backoff
		// (questions it hands back would wake us at once), unless the
		// stream goes live again: containerd serves, and the exits of the
		// outage are due.
		wake := c.exits.wake
		if !answered {
			wake = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-c.exits.relive:
			delay = firstReconcileRetry
		case <-timer.C:
		}
		if wait > 0 && !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// reconcileRound asks containerd each question, a bounded number of
// containers at once, and reports whether every one was answered (the rest
// are handed out again).
func (c *Client) reconcileRound(ctx context.Context, checks []ledger.Check) bool {
	if len(checks) == 0 {
		return true
	}
	ctx = c.withNamespace(ctx)
	byContainer := map[string][]ledger.Check{}
	for _, ck := range checks {
		byContainer[ck.Key.Container] = append(byContainer[ck.Key.Container], ck)
	}
	sem := make(chan struct{}, reconcileWorkers)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed bool
	)
	for _, list := range byContainer {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			for _, ck := range list {
				c.exits.do(func(l *ledger.Ledger) { l.CheckFailed(ck.Token) })
			}
			failed = true
			continue
		}
		wg.Add(1)
		go func(list []ledger.Check) {
			defer wg.Done()
			defer func() { <-sem }()
			for _, ck := range list {
				if !c.reconcileOne(ctx, ck) {
					mu.Lock()
					failed = true
					mu.Unlock()
				}
			}
		}(list)
	}
	wg.Wait()
	return !failed
}

// reconcileOne asks containerd about one process and tells the ledger;
// false when containerd could not answer.
func (c *Client) reconcileOne(ctx context.Context, ck ledger.Check) bool {
	cctx, cancel := context.WithTimeout(ctx, reconcileCallTimeout)
	p, err := c.getProcess(cctx, ck.Key.Container, execIDOf(ck.Key.Container, ck.Key.Process))
	cancel()
	r, ok := reportOf(p, err)
	if !ok {
		if ctx.Err() == nil {
			c.logger.WithError(err).WithFields(log.Fields{"container": ck.Key.Container, "process": ck.Key.Process}).
				Debug("reconcile: containerd did not answer; asking again")
		}
		c.exits.do(func(l *ledger.Ledger) { l.CheckFailed(ck.Token) })
		return false
	}
	c.exits.do(func(l *ledger.Ledger) {
		l.CheckAnswer(ck.Token, r)
		c.logger.WithField("key", ck.Key.String()).WithField("report", fmt.Sprintf("%+v", r)).WithField("ledger", l.Describe(ck.Key)).Debug("reconcile: containerd answered")
	})
	return true
}

// reportOf turns containerd's Get answer into what the ledger takes; false
// when it says nothing (no answer, or the shim unreachable).
func reportOf(p *taskProcess, err error) (ledger.Report, bool) {
	if err != nil {
		return ledger.Report{Status: ledger.Gone}, errclass.IsNotFound(err)
	}
	r := ledger.Report{Pid: p.Pid}
	switch p.Status {
	case tasktypes.Status_CREATED:
		r.Status = ledger.Created
	case tasktypes.Status_RUNNING, tasktypes.Status_PAUSED, tasktypes.Status_PAUSING:
		r.Status = ledger.Running
	case tasktypes.Status_STOPPED:
		r.Status, r.Code, r.At = ledger.Stopped, p.ExitStatus, timeOf(p.ExitedAt)
	default:
		return r, false
	}
	return r, true
}

// finishDeletes finishes each delete whose outcome was unknown, only if
// containerd still shows the very process it was for, and reports whether
// containerd answered every one.
func (c *Client) finishDeletes(ctx context.Context, due []finishWork) bool {
	done := true
	for _, w := range due {
		cctx, cancel := context.WithTimeout(c.withNamespace(ctx), reconcileCallTimeout)
		if !c.finishDelete(cctx, w) {
			done = false
		}
		cancel()
	}
	return done
}

func (c *Client) finishDelete(ctx context.Context, w finishWork) bool {
	p := w.p
	p.deleting.Lock()
	defer p.deleting.Unlock()
	target := func() (uint32, bool) {
		var (
			pid     uint32
			pending bool
		)
		c.exits.do(func(l *ledger.Ledger) { pid, pending = l.FinishTarget(w.f.ID) })
		return pid, pending
	}
	pid, pending := target()
	if !pending {
		return true
	}
	ref := ledger.Ref{ID: w.f.ID, Key: w.f.Key, Pid: pid}
	st, err := c.getProcess(ctx, w.f.Key.Container, execIDOf(w.f.Key.Container, w.f.Key.Process))
	r, ok := reportOf(st, err)
	if !ok {
		c.requeueFinish(w)
		return false
	}
	if pid == 0 && r.Status != ledger.Gone && r.Pid != 0 {
		// An exec whose pid was not known: containerd may name it now.
		c.exits.do(func(l *ledger.Ledger) { l.Resolve(ref, r) })
		if pid, pending = target(); !pending {
			return true
		}
		if pid == 0 {
			// What runs under its ID cannot be told to be it: left
			// to its task's delete.
			c.exits.do(func(l *ledger.Ledger) { l.FinishDropped(w.f.ID) })
			p.releaseIO()
			return true
		}
		ref.Pid = pid
	}
	if r.Status == ledger.Gone || r.Pid != pid {
		// Not there any more, or another process: nothing of ours to
		// delete (the ledger clears the finish).
		c.exits.do(func(l *ledger.Ledger) { l.Resolve(ref, ledger.Report{Status: ledger.Gone}) })
		p.releaseIO()
		return true
	}
	if !c.exits.ask(func(l *ledger.Ledger) bool { return l.FinishPending(w.f.ID) }) {
		return true // a caller's retry came first
	}
	_, _, err = p.deleteOnce(ctx)
	switch {
	case err == nil, errclass.IsNotFound(err):
		return true
	case errclass.OutcomeUnknown(err):
		c.requeueFinish(w)
		return false
	default:
		c.logger.WithError(err).WithFields(log.Fields{"container": w.f.Key.Container, "process": w.f.Key.Process}).
			Warn("cannot finish a delete cut off earlier; the process stays until its task is deleted")
		return true
	}
}

// requeueFinish hands a finish whose questions containerd did not answer to
// the next round.
func (c *Client) requeueFinish(w finishWork) {
	x := c.exits
	x.mu.Lock()
	x.finishes = append(x.finishes, pendingFinish{f: w.f, due: time.Now()})
	x.unfinished[w.f.ID] = w.p
	x.mu.Unlock()
}
