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
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/events"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/lcdkit/libcontainerd/internal/errclass"
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
	// reconcileTimeout bounds the state queries after a reconnect.
	reconcileTimeout = 30 * time.Second
	// tombstoneTTL keeps a deleted process's exit in the dedupe memory past
	// the shim's last re-send (≈35 s after the first try).
	tombstoneTTL = time.Minute
	// unknownExitCode is what a process that vanished is reported with, as
	// moby does for exits it cannot know.
	unknownExitCode = 255
)

// slowHandler is how long a backend call may run before a warning names
// the container whose queue it holds up (a variable so tests can shorten it).
var slowHandler = 10 * time.Second

// procKey names one process: the init process has processID == containerID.
type procKey struct{ containerID, processID string }

// tracker remembers the processes this client has seen running (reconcile
// asks containerd about each after a reconnect) and the exits it delivered
// (so each is delivered once). Entries leave when the process is deleted.
type tracker struct {
	mu        sync.Mutex
	running   map[procKey]uint32 // pid
	exited    map[procKey]uint32 // pid whose exit was delivered
	tombs     []tombstone        // deleted processes, oldest first
	tombIndex map[procKey]uint32
	// owed holds deleted processes whose exit had not arrived yet (a
	// caller that waited and deleted before the event came): that exit is
	// still delivered, once.
	owed map[procKey]uint32
}

type tombstone struct {
	key      procKey
	pid      uint32
	deadline time.Time
}

func newTracker() *tracker {
	return &tracker{running: map[procKey]uint32{}, exited: map[procKey]uint32{}, tombIndex: map[procKey]uint32{}, owed: map[procKey]uint32{}}
}

// seenRunning records a running process, unless its exit is already known.
func (t *tracker) seenRunning(key procKey, pid uint32) {
	if pid == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.exited[key]; ok && p == pid {
		return
	}
	if p, ok := t.tombIndex[key]; ok && p == pid {
		return
	}
	t.running[key] = pid
}

// exitUnpaid reports whether the exit of (key, pid) is still to be
// delivered: the process was seen running, or was deleted before its exit
// arrived (owed).
func (t *tracker) exitUnpaid(key procKey, pid uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.running[key]; ok && p == pid {
		return true
	}
	p, ok := t.owed[key]
	return ok && p == pid
}

// firstExit reports whether this is the first exit of (key, pid), and
// records it. Later reports of the same exit (shim re-sends, reconcile) are
// duplicates.
func (t *tracker) firstExit(key procKey, pid uint32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.exited[key]; ok && p == pid {
		return false
	}
	if p, ok := t.tombIndex[key]; ok && p == pid {
		if t.owed[key] == pid {
			delete(t.owed, key)
			return true
		}
		return false
	}
	t.exited[key] = pid
	if p, ok := t.running[key]; ok && p == pid {
		delete(t.running, key)
	}
	return true
}

// deleted forgets a deleted process, keeping a tombstone long enough to
// drop a late re-send of its exit.
func (t *tracker) deleted(key procKey, pid uint32, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if pid == 0 {
		// Deleted through a handle that never knew the pid: the exit we
		// recorded, if any, is the one.
		pid = t.exited[key]
		if pid == 0 {
			pid = t.running[key]
		}
	}
	// Delivered: recorded as exited, or already deleted once with its
	// exit since paid (the TaskDelete event after a caller's delete).
	owed, isOwed := t.owed[key]
	delivered := t.exited[key] == pid || t.tombIndex[key] == pid && !(isOwed && owed == pid)
	// Only the incarnation named: the shim publishes a task's TaskDelete
	// asynchronously, so it can reach us after our own Delete returned and
	// the container's next task started (seen more than 0.5 s late on
	// 2.4.2); it must not untrack the new task.
	if p, ok := t.running[key]; ok && p == pid {
		delete(t.running, key)
	}
	if p, ok := t.exited[key]; ok && p == pid {
		delete(t.exited, key)
	}
	if isOwed && owed == pid {
		delete(t.owed, key)
	}
	for len(t.tombs) > 0 && now.After(t.tombs[0].deadline) {
		old := t.tombs[0]
		t.tombs = t.tombs[1:]
		if p, ok := t.tombIndex[old.key]; ok && p == old.pid {
			delete(t.tombIndex, old.key)
		}
		if p, ok := t.owed[old.key]; ok && p == old.pid {
			delete(t.owed, old.key)
		}
	}
	if pid != 0 && !delivered {
		t.owed[key] = pid
	}
	if pid != 0 {
		t.tombs = append(t.tombs, tombstone{key, pid, now.Add(tombstoneTTL)})
		t.tombIndex[key] = pid
	}
}

// runningSnapshot copies the processes to reconcile.
func (t *tracker) runningSnapshot() map[procKey]uint32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[procKey]uint32, len(t.running))
	for k, v := range t.running {
		out[k] = v
	}
	return out
}

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
// until the client is closed.
type eventStream struct {
	c        *Client
	sentinel string // private topic proving a new stream is live
	done     chan struct{}
}

func newSentinelTopic() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "/libcontainerd/sentinel/" + hex.EncodeToString(b)
}

// run subscribes, and after every stream error waits for containerd, then
// subscribes again, confirms the stream is live and reconciles.
func (s *eventStream) run(ctx context.Context) {
	defer close(s.done)
	c := s.c
	first := true
	for ctx.Err() == nil {
		stopWatch := func() {}
		if !first {
			// While containerd is away, its shims are asked directly
			// (see shimwatch.go), until the new stream is live.
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
		c.logger.WithError(err).Warn("event stream lost: waiting for containerd")
	}
}

// subscribe reads one subscription until it fails. Once the stream is known
// to be live the tracked processes are reconciled, so no exit falls between
// the old stream and the new one, nor (on the first stream) between a
// restarted daemon's Status calls and the subscription.
//
// stopWatch ends the shim watch of the outage before: once the stream is
// live, before reconcile (so reconcile sees the exits the shims reported, and
// does not report 255 for them), or when subscribe returns.
func (s *eventStream) subscribe(ctx context.Context, stopWatch func()) error {
	c := s.c
	defer stopWatch()
	subCtx, cancel := context.WithCancel(c.withNamespace(ctx))
	defer cancel()
	ch, errC := c.client.EventService().Subscribe(subCtx,
		"namespace=="+c.ns+",topic~=|^/tasks/|",
		"namespace=="+c.ns+`,topic=="`+s.sentinel+`"`)

	live := false
	publish := func() {
		pctx, pcancel := context.WithTimeout(c.withNamespace(ctx), probeTimeout)
		defer pcancel()
		if err := c.client.EventService().Publish(pctx, s.sentinel, &emptypb.Empty{}); err != nil {
			c.logger.WithError(err).Debug("publish sentinel")
		}
	}
	began := time.Now()
	publish()
	retryDelay := firstSentinelRetry
	retry := time.NewTimer(retryDelay)
	defer retry.Stop()
	for {
		select {
		case err := <-errC:
			if err == nil || status.Code(err) == codes.Canceled && ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		case <-retry.C:
			if !live {
				publish()
				if retryDelay *= 2; retryDelay > sentinelTimeout {
					retryDelay = sentinelTimeout
				}
				retry.Reset(retryDelay)
			}
		case ev := <-ch:
			if ev == nil {
				continue
			}
			if ev.Topic == s.sentinel {
				if !live {
					live = true
					c.logger.WithField("after", time.Since(began)).Debug("event stream live")
					stopWatch()
					c.reconcile(ctx)
				}
				continue
			}
			c.handleEnvelope(ctx, ev)
		}
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
		// The gRPC channel has its own reconnect backoff (up to 3 s with
		// the containerd client's defaults, longer with gRPC's): without
		// this, a probe made while containerd is back would still wait
		// for the channel's next attempt.
		if conn := c.client.Conn(); conn != nil {
			conn.ResetConnectBackoff()
		}
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

// handleEnvelope translates one event and queues it for the backend.
func (c *Client) handleEnvelope(ctx context.Context, ev *events.Envelope) {
	et, ei, v, err := translate(ev)
	if err != nil {
		c.logger.WithError(err).WithField("topic", ev.Topic).Warn("skipping malformed event")
		return
	}
	switch e := v.(type) {
	case *apievents.TaskStart:
		c.tracker.seenRunning(procKey{e.ContainerID, e.ContainerID}, e.Pid)
		c.noteShim(e.ContainerID, e.Pid)
	case *apievents.TaskExecStarted:
		c.tracker.seenRunning(procKey{e.ContainerID, e.ExecID}, e.Pid)
	case *apievents.TaskDelete:
		id := e.ID
		if id == "" {
			id = e.ContainerID
		}
		// The delete event carries the exit too. On containerd 2.x the
		// shim can be gone before its TaskExit reached containerd, which
		// then never publishes it; and containerd publishes TaskDelete
		// itself, so it can arrive before our own Delete's answer.
		c.exitReported(procKey{e.ContainerID, id}, e.Pid, e.ExitStatus, timeOf(e.ExitedAt))
		c.tracker.deleted(procKey{e.ContainerID, id}, e.Pid, time.Now())
		if id == e.ContainerID {
			c.shims.forget(e.ContainerID, e.Pid)
		}
	}
	if et == "" {
		c.logger.WithFields(log.Fields{"topic": ev.Topic, "type": reflect.TypeOf(v)}).Debug("ignoring event")
		return
	}
	c.emit(et, ei)
}

// exitReported delivers an exit that an answer (delete, wait) or a delete
// event reported, for a process whose exit has not been delivered yet.
func (c *Client) exitReported(key procKey, pid, code uint32, exitedAt time.Time) {
	if pid == 0 || !c.tracker.exitUnpaid(key, pid) {
		return
	}
	c.emit(types.EventExit, types.EventInfo{ContainerID: key.containerID, ProcessID: key.processID, Pid: pid, ExitCode: code, ExitedAt: exitedAt})
}

// emit queues an event for the backend; an exit only the first time it is
// reported for that process and pid.
func (c *Client) emit(et types.EventType, ei types.EventInfo) {
	if et == types.EventExit && !c.tracker.firstExit(procKey{ei.ContainerID, ei.ProcessID}, ei.Pid) {
		c.logger.WithFields(log.Fields{"container": ei.ContainerID, "process": ei.ProcessID, "pid": ei.Pid}).Debug("dropping duplicate exit")
		return
	}
	if c.backend == nil {
		return
	}
	c.queue.Append(ei.ContainerID, func() { c.deliver(et, ei) })
}

// deliver calls the backend for one event: an error is logged, a panic
// recovered with its stack, and a slow call reported while it runs.
func (c *Client) deliver(et types.EventType, ei types.EventInfo) {
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

// reconcile asks containerd about every process this client has seen
// running and delivers the exits the stream missed while it was down: the
// real status of a stopped process, 255 for one that vanished (its shim died
// while containerd was down, so containerd never publishes its exit).
func (c *Client) reconcile(ctx context.Context) {
	tracked := c.tracker.runningSnapshot()
	if len(tracked) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(c.withNamespace(ctx), reconcileTimeout)
	defer cancel()
	// One List covers every init process; execs need one Get each.
	list, err := c.client.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		c.logger.WithError(err).Warn("reconcile: list tasks")
		return
	}
	inits := make(map[string]*tasktypes.Process, len(list.Tasks))
	for _, p := range list.Tasks {
		inits[p.ID] = p
	}
	for key, pid := range tracked {
		var p *tasktypes.Process
		if key.processID == key.containerID {
			p = inits[key.containerID]
		} else if _, initExists := inits[key.containerID]; initExists {
			r, err := c.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: key.containerID, ExecID: key.processID})
			if err != nil && !errclass.IsNotFound(err) {
				c.logger.WithError(err).WithField("container", key.containerID).WithField("exec", key.processID).Warn("reconcile: get exec")
				continue
			}
			if r != nil {
				p = r.Process
			}
		}
		ei := types.EventInfo{ContainerID: key.containerID, ProcessID: key.processID, Pid: pid}
		switch {
		case p == nil || p.Pid != pid && p.Pid != 0:
			ei.ExitCode, ei.ExitedAt = unknownExitCode, time.Now()
		case p.Status == tasktypes.Status_STOPPED:
			ei.ExitCode, ei.ExitedAt = p.ExitStatus, timeOf(p.ExitedAt)
		default:
			continue
		}
		c.logger.WithFields(log.Fields{"container": key.containerID, "process": key.processID, "exit-code": ei.ExitCode}).Info("reconcile: delivering an exit the event stream missed")
		c.emit(types.EventExit, ei)
	}
}
