package libcontainerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"reflect"
	"runtime/debug"
	"sync"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/events"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/lcdkit/libcontainerd/internal/ledger"
	"github.com/lcdkit/libcontainerd/types"
)

const (
	// firstRetry and maxRetry bound the backoff between IsServing probes
	// while containerd is away: short enough that the shim's own re-sends
	// (+1, +3, +6, +10, +15 s) land on a live stream, and that exits from
	// the moment containerd serves again reach the backend within a second
	// (at most four probes a second during a long outage, each a local
	// socket connect).
	firstRetry = 50 * time.Millisecond
	maxRetry   = 250 * time.Millisecond
	// probeTimeout bounds one IsServing probe.
	probeTimeout = 500 * time.Millisecond
	// firstSentinelRetry and sentinelTimeout bound how long a published
	// sentinel may take to come back before it is published again: a
	// sentinel published before the server has registered the new
	// subscription (Subscribe returns before it has) is simply lost, so the
	// first retries come soon.
	firstSentinelRetry = 50 * time.Millisecond
	sentinelTimeout    = 2 * time.Second
	// barrierDelay is how long news from an answer waits for the stream's
	// own copy before a barrier is published for it: in a ForceDelete the
	// TaskExit is usually a moment behind the answer, and when it comes the
	// barrier (one Publish RPC) is not needed.
	barrierDelay = 20 * time.Millisecond
	// unknownExitCode is what a process that vanished is reported with, as
	// moby does for exits it cannot know.
	unknownExitCode = 255
)

// slowHandler is how long a backend call may run before a warning names
// the container whose queue it holds up (a variable so tests can shorten it).
var slowHandler = 10 * time.Second

// translate turns a containerd envelope into the event the backend gets,
// with the decoded event; et is "" for events that are not delivered
// (TaskDelete, others).
func translate(ev *events.Envelope) (et types.EventType, ei types.EventInfo, v interface{}, err error) {
	if ev == nil || ev.Event == nil {
		return "", ei, nil, errors.New("envelope without event")
	}
	v, err = typeurl.UnmarshalAny(ev.Event)
	if err != nil {
		return "", ei, nil, err
	}
	switch e := v.(type) {
	case *apievents.TaskCreate:
		return types.EventCreate, types.EventInfo{ContainerID: e.ContainerID, ProcessID: e.ContainerID, Pid: e.Pid}, v, nil
	case *apievents.TaskStart:
		return types.EventStart, types.EventInfo{ContainerID: e.ContainerID, ProcessID: e.ContainerID, Pid: e.Pid}, v, nil
	case *apievents.TaskExit:
		if e.ID == "" {
			// Third-party shims leave the init's ID empty: one exit must
			// not be known under two keys.
			e.ID = e.ContainerID
		}
		return types.EventExit, types.EventInfo{
			ContainerID: e.ContainerID, ProcessID: e.ID, Pid: e.Pid,
			ExitCode: e.ExitStatus, ExitedAt: timeOf(e.ExitedAt),
		}, v, nil
	case *apievents.TaskOOM:
		return types.EventOOM, types.EventInfo{ContainerID: e.ContainerID}, v, nil
	case *apievents.TaskExecAdded:
		return types.EventExecAdded, types.EventInfo{ContainerID: e.ContainerID, ProcessID: e.ExecID}, v, nil
	case *apievents.TaskExecStarted:
		return types.EventExecStarted, types.EventInfo{ContainerID: e.ContainerID, ProcessID: e.ExecID, Pid: e.Pid}, v, nil
	case *apievents.TaskPaused:
		return types.EventPaused, types.EventInfo{ContainerID: e.ContainerID}, v, nil
	case *apievents.TaskResumed:
		return types.EventResumed, types.EventInfo{ContainerID: e.ContainerID}, v, nil
	}
	return "", ei, v, nil
}

// eventStream owns the subscription: one reader goroutine that reconnects
// until the client is closed. It is also the only goroutine that queues
// events for the backend, so what it queues keeps the stream's order.
type eventStream struct {
	c        *Client
	sentinel string // private topic for live probes and barriers
	done     chan struct{}
}

func newSentinelTopic() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "/libcontainerd/sentinel/" + hex.EncodeToString(b)
}

// run subscribes, and after every stream error waits for containerd, then
// subscribes again. While containerd is away its shims are asked directly
// (see shimwatch.go); the watch runs on its own and never delays the new
// subscription.
func (s *eventStream) run(ctx context.Context) {
	defer close(s.done)
	c := s.c
	first := true
	for ctx.Err() == nil {
		stopWatch := func() {}
		if !first {
			stopWatch = c.watchShims(ctx)
			if !c.waitServe(ctx) {
				stopWatch()
				return
			}
		}
		err := s.subscribe(ctx, sync.OnceFunc(stopWatch))
		first = false
		if ctx.Err() != nil {
			return
		}
		c.logger.WithError(err).Info("event stream lost: subscribing again once containerd serves")
	}
}

// subscribe reads one subscription until it fails. A live probe (the
// sentinel) proves the stream is live; then the reconciler asks about every
// process whose exit is not known, and news that waited for the stream (the
// shim watch's, answers given during the outage) is delivered.
func (s *eventStream) subscribe(ctx context.Context, stopWatch func()) error {
	c := s.c
	x := c.exits
	defer stopWatch()
	x.do(func(l *ledger.Ledger) { l.StreamDown() })
	subCtx, cancel := context.WithCancel(c.withNamespace(ctx))
	defer cancel()
	ch, errC := c.client.EventService().Subscribe(subCtx,
		"namespace=="+c.ns+",topic~=|^/tasks/|",
		"namespace=="+c.ns+`,topic=="`+s.sentinel+`"`)

	live := false
	began := time.Now()
	lastPublish := time.Now()
	publish := func(seq uint64) {
		lastPublish = time.Now()
		pctx, pcancel := context.WithTimeout(c.withNamespace(ctx), probeTimeout)
		defer pcancel()
		if err := c.client.EventService().Publish(pctx, s.sentinel, wrapperspb.UInt64(seq)); err != nil {
			c.logger.WithError(err).Debug("publish sentinel")
		}
	}
	publish(x.nextBarrier())
	retryDelay := firstSentinelRetry
	retry := time.NewTimer(retryDelay)
	defer retry.Stop()
	coalesce := time.NewTimer(time.Hour)
	coalesce.Stop()
	defer coalesce.Stop()
	coalescing := false
	for {
		select {
		case err := <-errC:
			x.do(func(l *ledger.Ledger) { l.StreamDown() })
			// From containerd/v2 v2.4 the stream's errors come typed:
			// a cancel is then context.Canceled, not the gRPC code.
			if err == nil || ctx.Err() != nil && (status.Code(err) == codes.Canceled || errors.Is(err, context.Canceled)) {
				return ctx.Err()
			}
			return err
		case <-retry.C:
			switch {
			case !live:
				publish(x.nextBarrier())
				if retryDelay *= 2; retryDelay > sentinelTimeout {
					retryDelay = sentinelTimeout
				}
			case x.ask(func(l *ledger.Ledger) bool { return l.WaitingOnBarrier() }) && time.Since(lastPublish) >= sentinelTimeout:
				// A barrier whose echo never came (its publish failed).
				publish(x.nextBarrier())
			}
			retry.Reset(retryDelay)
		case <-x.kick:
			if live && !coalescing {
				coalescing = true
				coalesce.Reset(barrierDelay)
			}
		case <-coalesce.C:
			coalescing = false
			if seq := x.needBarrier(); seq != 0 {
				publish(seq)
			}
		case ev := <-ch:
			if ev == nil {
				continue
			}
			if ev.Topic != s.sentinel {
				c.handleEnvelope(ev)
				continue
			}
			seq, ok := sentinelSeq(ev)
			if !ok {
				continue
			}
			if !live {
				live = true
				retryDelay = sentinelTimeout
				c.logger.WithField("after", time.Since(began)).Debug("event stream live")
				stopWatch()
				// News that came while no barrier could be published.
				signal(x.kick)
			}
			x.do(func(l *ledger.Ledger) {
				if !l.Live() {
					// containerd is asked about every process it may
					// have changed meanwhile.
					l.StreamLive()
					signal(x.relive)
				}
				l.Echo(seq)
				if seq > x.echoed {
					x.echoed = seq
				}
				if pending := l.Pending(); pending != "" {
					c.logger.WithField("barrier", seq).WithField("pending", pending).Debug("barrier echoed")
				}
			})
		}
	}
}

// sentinelSeq decodes the barrier number a sentinel carries.
func sentinelSeq(ev *events.Envelope) (uint64, bool) {
	if ev.Event == nil {
		return 0, false
	}
	v, err := typeurl.UnmarshalAny(ev.Event)
	if err != nil {
		return 0, false
	}
	n, ok := v.(*wrapperspb.UInt64Value)
	if !ok {
		return 0, false
	}
	return n.GetValue(), true
}

// resetDialBackoff resets the gRPC channel's own reconnect backoff (up to 3 s
// with the containerd client's defaults, longer with gRPC's): without it, a
// call made while containerd is back would still wait for the channel's next
// attempt.
func (c *Client) resetDialBackoff() {
	if conn := c.client.Conn(); conn != nil {
		conn.ResetConnectBackoff()
	}
}

// waitServe waits until containerd serves, with bounded probes and a short
// backoff; false when ctx ended first.
func (c *Client) waitServe(ctx context.Context) bool {
	delay := firstRetry
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		c.resetDialBackoff()
		pctx, cancel := context.WithTimeout(ctx, probeTimeout)
		ok, err := c.client.IsServing(pctx)
		cancel()
		if ok && err == nil {
			return true
		}
		timer.Reset(delay)
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
		}
		if delay *= 2; delay > maxRetry {
			delay = maxRetry
		}
	}
}

// handleEnvelope translates one event, tells the ledger what it says, and
// queues it for the backend; an exit is queued by the ledger, which decides
// whether it is one.
func (c *Client) handleEnvelope(ev *events.Envelope) {
	et, ei, v, err := translate(ev)
	if err != nil {
		c.logger.WithError(err).WithField("topic", ev.Topic).Warn("skipping malformed event")
		return
	}
	key := keyOf(ei.ContainerID, ei.ProcessID)
	if ei.ProcessID == ei.ContainerID {
		key = ledger.InitKey(ei.ContainerID)
	}
	c.exits.do(func(l *ledger.Ledger) {
		switch e := v.(type) {
		case *apievents.TaskStart, *apievents.TaskExecStarted:
			l.StreamStart(key, ei.Pid)
		case *apievents.TaskExecAdded:
			l.StreamExecAdded(key)
		case *apievents.TaskExit:
			l.StreamExit(key, ei.Pid, ei.ExitCode, ei.ExitedAt)
			return
		case *apievents.TaskDelete:
			id := e.ID
			if id == "" {
				id = e.ContainerID
			}
			l.StreamDelete(keyOf(e.ContainerID, execIDOf(e.ContainerID, id)), e.Pid, e.ExitStatus, timeOf(e.ExitedAt))
		}
		if et == "" {
			c.logger.WithFields(log.Fields{"topic": ev.Topic, "type": reflect.TypeOf(v)}).Debug("ignoring event")
			return
		}
		// Under the ledger's lock: ordered with the exits it queues.
		c.queueEvent(et, ei)
	})
	switch e := v.(type) {
	case *apievents.TaskStart:
		c.noteShim(e.ContainerID, e.Pid)
	case *apievents.TaskDelete:
		if e.ID == "" || e.ID == e.ContainerID {
			c.shims.forget(e.ContainerID, e.Pid)
		}
	}
}

// execIDOf is the exec ID of process id of a container: "" for its init.
func execIDOf(containerID, id string) string {
	if id == containerID {
		return ""
	}
	return id
}

// queueEvent hands an event to the backend's per-container queue. Only the
// stream reader calls it, so the queue keeps the order it decided.
func (c *Client) queueEvent(et types.EventType, ei types.EventInfo) {
	if c.backend == nil {
		return
	}
	c.queue.Append(ei.ContainerID, func() { c.deliver(et, ei) })
}

// deliver calls the backend for one event: an error is logged, a panic
// recovered with its stack, and a slow call reported while it runs. After
// Close nothing is called.
func (c *Client) deliver(et types.EventType, ei types.EventInfo) {
	if !c.enterHandler() {
		return
	}
	logger := c.logger.WithFields(log.Fields{"container": ei.ContainerID, "process": ei.ProcessID, "event": et})
	slow := time.AfterFunc(slowHandler, func() {
		logger.Warnf("event handler still running after %s: later events of this container wait", slowHandler)
	})
	defer slow.Stop()
	defer func() {
		if r := recover(); r != nil {
			logger.WithField("panic", r).WithField("stack", string(debug.Stack())).Error("event handler panicked")
		}
	}()
	if err := c.backend.ProcessEvent(ei.ContainerID, et, ei); err != nil {
		logger.WithError(err).Error("failed to process event")
	}
}
