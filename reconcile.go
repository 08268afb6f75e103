package libcontainerd

import (
	"context"
	"sync"
	"time"

	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/log"

	"github.com/lcdkit/libcontainerd/internal/errclass"
)

// The reconciler asks containerd about the processes whose fate the stream
// may have missed, and finishes the deletes containerd's going away cut off: after every (re)connect each process with no known exit,
// and a start whose answer was lost. It runs apart from the stream reader,
// so events never wait for it; one Get per process (no reply grows with the
// host, as a List of every task would: gRPC refuses replies over 16 MiB,
// about 26k tasks), a few containers at a time; and it retries with backoff
// until every process is confirmed running or has its exit.

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

// runReconciler checks what the ledger asks for until ctx ends.
func (c *Client) runReconciler(ctx context.Context) {
	defer close(c.reconcileDone)
	delay := firstReconcileRetry
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.ledger.wake:
		}
		for {
			work := c.ledger.toCheck()
			deletes, later := c.unfinishedDeletes()
			if len(work) == 0 && len(deletes) == 0 {
				delay = firstReconcileRetry
				if later == 0 {
					break
				}
				// Deletes to finish once the grace after the outage
				// has passed.
				timer.Reset(later)
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
				continue
			}
			if c.reconcileRound(ctx, work) && c.finishDeletes(ctx, deletes) {
				delay = firstReconcileRetry
				continue
			}
			timer.Reset(delay)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			if delay *= 2; delay > maxReconcileRetry {
				delay = maxReconcileRetry
			}
		}
	}
}

// finishGrace is how long after containerd's return the client waits
// before finishing a cut-off delete itself: a caller that retries (the
// documented recovery, whose answer carries the exit status) goes first.
const finishGrace = 5 * time.Second

// finishLater records a delete whose outcome is unknown. The reconciler
// finishes it once containerd is back from its next outage (the stream live
// again) and finishGrace has passed: a daemon that deleted once and gave
// up, because containerd went away, is covered.
func (c *Client) finishLater(p *process) {
	c.unfinished.Store(p, c.ledger.liveEpoch())
}

// unfinishedDeletes returns the cut-off deletes to finish now, and how
// long until the next one is due (0: none waiting).
func (c *Client) unfinishedDeletes() (due []*process, later time.Duration) {
	epoch, since := c.ledger.liveSince()
	wait := finishGrace - time.Since(since)
	c.unfinished.Range(func(k, v any) bool {
		switch {
		case v.(uint64) >= epoch:
			// Its outage has not ended yet: the next live wakes us.
		case wait > 0:
			later = wait
		default:
			due = append(due, k.(*process))
		}
		return true
	})
	return due, later
}

// finishDeletes deletes again each process whose delete was cut off, and
// reports whether containerd answered every one.
func (c *Client) finishDeletes(ctx context.Context, procs []*process) bool {
	done := true
	for _, p := range procs {
		c.unfinished.Delete(p)
		cctx, cancel := context.WithTimeout(ctx, reconcileCallTimeout)
		_, err := p.Delete(cctx) // records itself again if cut off again
		cancel()
		switch {
		case err == nil, errclass.IsNotFound(err):
		case errclass.OutcomeUnknown(err):
			done = false
		default:
			c.logger.WithError(err).WithFields(log.Fields{"container": p.ctr.id, "process": p.key().processID}).
				Warn("cannot finish a delete cut off earlier")
		}
	}
	return done
}

// reconcileRound asks about each container's processes, a bounded number of
// containers at once, and reports whether every question was answered.
func (c *Client) reconcileRound(ctx context.Context, work map[string][]checkTarget) bool {
	ctx = c.withNamespace(ctx)
	sem := make(chan struct{}, reconcileWorkers)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed bool
	)
	for _, targets := range work {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return false
		}
		wg.Add(1)
		go func(targets []checkTarget) {
			defer wg.Done()
			defer func() { <-sem }()
			for _, t := range targets {
				if !c.reconcileOne(ctx, t) {
					mu.Lock()
					failed = true
					mu.Unlock()
				}
			}
		}(targets)
	}
	wg.Wait()
	return !failed
}

// reconcileOne asks containerd about one process and tells the ledger;
// false when containerd could not answer.
func (c *Client) reconcileOne(ctx context.Context, t checkTarget) bool {
	isInit := t.key.processID == t.key.containerID
	execID := t.key.processID
	if isInit {
		execID = ""
	}
	cctx, cancel := context.WithTimeout(ctx, reconcileCallTimeout)
	p, err := c.getProcess(cctx, t.key.containerID, execID)
	cancel()
	if err != nil && !errclass.IsNotFound(err) {
		if ctx.Err() == nil {
			c.logger.WithError(err).WithFields(log.Fields{"container": t.key.containerID, "process": t.key.processID}).Debug("reconcile: get process")
		}
		return false
	}
	l := c.ledger
	logger := c.logger.WithFields(log.Fields{"container": t.key.containerID, "process": t.key.processID, "pid": t.pid})
	if err != nil || p.Pid != t.pid && p.Pid != 0 {
		// Gone, or another process under the key: confirmed gone. The
		// ledger guesses 255 unless a real exit arrives first.
		logger.Info("reconcile: process gone")
		if isInit {
			l.taskGone(t.key.containerID, t.pid)
		} else {
			l.gone(t.key, t.pid)
		}
		return true
	}
	switch p.Status {
	case tasktypes.Status_STOPPED:
		logger.WithField("exit-code", p.ExitStatus).Info("reconcile: an exit the event stream missed")
		l.report(t.key, t.pid, exitNews{code: p.ExitStatus, at: timeOf(p.ExitedAt), source: fromReconcile}, false, false)
	case tasktypes.Status_CREATED:
		l.notStarted(t.key, t.pid)
	case tasktypes.Status_UNKNOWN:
		return false // the shim is unreachable for now
	default:
		l.running(t.key, t.pid)
	}
	return true
}
