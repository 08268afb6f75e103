package libcontainerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/containerd/containerd/leases"

	"github.com/lcdkit/libcontainerd/internal/errclass"
)

// Clean-up steps the library runs on the caller's behalf (deleting an exec
// or task whose create or start failed, releasing a lease, resuming a task it
// paused, removing a checkpoint image) have no caller to retry them: a
// connection that breaks under one would leave its object behind for good.
// A containerd restart takes seconds, so a clean-up retries while the error
// says the outcome is unknown, for as long as its own context allows: it
// outlasts an outage up to its own bound.

// firstCleanupRetry and maxCleanupRetry bound the pause between tries; the
// gRPC channel's own reconnect backoff is reset before each (see waitServe).
var (
	firstCleanupRetry = 50 * time.Millisecond
	maxCleanupRetry   = time.Second
)

// retryCleanup runs step until it succeeds, fails for a reason other than a
// lost connection or an ended context, or ctx ends, and returns its last
// error. NotFound is success: gone is what a clean-up wants (a retry after a
// call that took effect but lost its answer gets exactly that). ctx should
// be a fresh one with the clean-up's own bound: the caller's may be what
// failed.
func (c *Client) retryCleanup(ctx context.Context, step func(context.Context) error) error {
	delay := firstCleanupRetry
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		err := step(ctx)
		if err == nil || errclass.IsNotFound(err) {
			return nil
		}
		if !errclass.OutcomeUnknown(err) || ctx.Err() != nil {
			return err
		}
		c.logger.WithError(err).Debug("clean-up step: containerd did not answer; trying again")
		c.resetDialBackoff()
		timer.Reset(delay)
		select {
		case <-ctx.Done():
			return err
		case <-timer.C:
		}
		if delay *= 2; delay > maxCleanupRetry {
			delay = maxCleanupRetry
		}
	}
}

// leaseCleanupTimeout bounds deleting a lease, retries included.
const leaseCleanupTimeout = 30 * time.Second

// newLease creates a lease that expires after expiry and puts it on ctx;
// what names it in errors. Its ID is chosen here rather than by containerd,
// so that a create whose answer was lost (the lease exists, the caller got
// Unavailable) can still be deleted: the containerd client's WithLease
// leaves such a lease for 24 hours. release deletes the lease, on a fresh
// context, retried; with sync it returns once garbage collection has removed
// what only the lease held.
func (c *Client) newLease(ctx context.Context, what string, expiry time.Duration, sync bool) (context.Context, func(), error) {
	ls := c.client.LeasesService()
	id := "libcontainerd-" + randomHex(8)
	release := func() {
		cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), leaseCleanupTimeout)
		defer cancel()
		var opts []leases.DeleteOpt
		if sync {
			opts = append(opts, leases.SynchronousDelete)
		}
		err := c.retryCleanup(cleanupCtx, func(ctx context.Context) error {
			return ls.Delete(ctx, leases.Lease{ID: id}, opts...)
		})
		if err != nil {
			c.logger.WithError(err).WithField("lease", id).Warnf("failed to delete %s; it expires in %s", what, expiry)
		}
	}
	if _, err := ls.Create(ctx, leases.WithID(id), leases.WithExpiration(expiry)); err != nil {
		if errclass.OutcomeUnknown(err) {
			release()
		}
		return nil, nil, wrapErrorf(err, "create "+what)
	}
	return leases.WithLease(ctx, id), release, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
