package libcontainerd

// Test adapters for the external tests (identity_test.go, package
// libcontainerd_test), which otherwise use only the public API: the few
// things that API cannot show. Each states what it guarantees; any
// implementation of the exit ledger is to keep these guarantees, whatever
// its internals, so that the external tests stay a specification.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lcdkit/libcontainerd/types"
)

// settleTimeout bounds Settle: long enough to cover a deferred delete's
// grace after an outage (5 s on b0e4646) and a reconcile round.
const settleTimeout = 30 * time.Second

// Settle waits until the client has nothing in flight, so that a test can
// then assert that nothing more is delivered; it fails t if that takes
// longer than 30 s. On return:
//
//   - the client's event stream is live (after an outage: subscribed again
//     and confirmed);
//   - every event containerd published before Settle was called, on a stream
//     that did not break, has been handled by the client;
//   - no exit the client knows of waits for delivery, no question to
//     containerd (reconcile, a check of news the ledger cannot place) is
//     pending or under way, and no deferred work (a delete finished for a
//     caller who gave up) is due, or becomes due without a further outage:
//     Settle waits out its grace;
//   - every event queued for the backend has been delivered (ProcessEvent
//     returned), including those the above released; events a backend's
//     handler caused are settled too.
//
// It does not wait for the caller's own calls still in flight, nor for
// containerd to serve: during an outage it waits until the timeout.
func Settle(t testing.TB, tc types.Client) {
	t.Helper()
	c := tc.(*Client)
	deadline := time.Now().Add(settleTimeout)
	// Two quiet rounds in a row: the second covers what a handler
	// delivered in the first caused.
	for quiet := 0; quiet < 2; {
		waitLiveUntil(t, c, deadline)
		c.settleBarrier(t, deadline)
		if why := c.settleBusy(); why != "" {
			quiet = 0
			if time.Now().After(deadline) {
				t.Fatalf("Settle: client still busy after %s: %s", settleTimeout, why)
			}
			time.Sleep(5 * time.Millisecond) // internal state: nothing to await
			continue
		}
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := c.queue.Wait(ctx)
		cancel()
		if err != nil {
			t.Fatalf("Settle: events still queued for the backend after %s: %v", settleTimeout, err)
		}
		quiet++
	}
}

// settleBarrier publishes a sentinel on the client's own topic and waits for
// it to come back through the stream: the stream reader handles events in
// order, so every event published before it has been handled.
func (c *Client) settleBarrier(t testing.TB, deadline time.Time) {
	t.Helper()
	for time.Now().Before(deadline) {
		seq := c.exits.nextBarrier()
		ctx, cancel := context.WithTimeout(c.withNamespace(context.Background()), time.Second)
		err := c.client.EventService().Publish(ctx, c.stream.sentinel, wrapperspb.UInt64(seq))
		cancel()
		if err == nil {
			// A sentinel published while the stream was being replaced
			// is lost: publish another after a while.
			again := time.Now().Add(time.Second)
			for time.Now().Before(again) {
				c.exits.mu.Lock()
				echoed := c.exits.echoed >= seq
				c.exits.mu.Unlock()
				if echoed {
					return
				}
				time.Sleep(2 * time.Millisecond) // internal state: nothing to await
			}
		} else {
			time.Sleep(20 * time.Millisecond) // containerd not answering yet
		}
		waitLiveUntil(t, c, deadline)
	}
	t.Fatalf("Settle: no barrier came back through the stream within %s", settleTimeout)
}

// settleBusy says what the client still has in flight ("" when nothing).
func (c *Client) settleBusy() string {
	x := c.exits
	x.mu.Lock()
	defer x.mu.Unlock()
	why := x.l.Pending()
	if n := len(x.finishes); n > 0 {
		why += fmt.Sprintf("; %d deferred deletes waiting for their grace", n)
	}
	return why
}

// WaitLive waits until the client's event stream is live: the subscription
// it has open now, the newest it made, is registered with containerd and
// confirmed (its probe came back), so an event containerd publishes from now
// on reaches the client unless the stream breaks again. It fails t after
// 10 s. After a test broke the stream, it must first know the client has
// subscribed again (the fake's Subscribers): until the client notices the
// break, its old subscription may still look live.
func WaitLive(t testing.TB, tc types.Client) {
	t.Helper()
	waitLiveUntil(t, tc.(*Client), time.Now().Add(10*time.Second))
}

func waitLiveUntil(t testing.TB, c *Client, deadline time.Time) {
	t.Helper()
	for !c.exits.live() {
		if time.Now().After(deadline) {
			t.Fatal("the client's event stream never went live")
		}
		time.Sleep(2 * time.Millisecond) // internal state: nothing to await
	}
}

// LedgerSize counts everything the client's exit ledger holds: an entry per
// process it tracks and anything it keeps about processes or containers it
// no longer tracks. With every process of every container deleted and its
// exit delivered, and the client settled, it is back to what it was before
// those containers existed (0 for a new client): memory is the processes
// alive or awaiting delivery or delete, nothing per container that once
// existed.
func LedgerSize(tc types.Client) int {
	return tc.(*Client).exits.size()
}
