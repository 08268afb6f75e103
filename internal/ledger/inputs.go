package ledger

import (
	"fmt"
	"sort"
	"time"
)

// Inputs: what this client's calls answered.

// Created records the task this client's NewTask created (pid 0: a task
// being restored gets its pid at start) and returns its incarnation. A
// created task proves the container had no other: what the ledger held of an
// earlier one is gone.
func (l *Ledger) Created(key Key, pid uint32) ID {
	l.tick++
	l.containerGone(key.Container)
	return l.add(&proc{key: key, pid: pid, ours: true}).id
}

// ExecBegin records an exec this client is about to add to the task task
// and start, and returns its incarnation; the call ends with Started,
// StartFailed, StartUnknown or ExecAborted.
func (l *Ledger) ExecBegin(key Key, task Ref) ID {
	l.tick++
	return l.add(&proc{key: key, task: l.resolve(task), ours: true, ops: 1, starting: true}).id
}

// ExecAdded records that this client's exec add was answered: containerd
// has the exec under its key (its start is next).
func (l *Ledger) ExecAdded(id ID) {
	l.tick++
	if p := l.byID[id]; p != nil {
		p.addDone, p.addDoneAt = true, l.tick
		if p.epoch != l.epoch && !p.added {
			// The stream was renewed since the call began: its
			// TaskExecAdded may have gone with the old one, and the new
			// one says nothing of an exec deleted before it.
			p.added, p.addedAt = true, l.tick
		}
	}
}

// ExecAborted ends an exec call that added nothing (refused, or the ID in
// use): the incarnation never existed.
func (l *Ledger) ExecAborted(id ID) {
	l.tick++
	if p := l.byID[id]; p != nil {
		l.remove(p)
	}
}

// StartBegin records a start of a created task in flight.
func (l *Ledger) StartBegin(id ID) {
	l.tick++
	if p := l.byID[id]; p != nil {
		p.ops++
		p.starting = true
		l.touch(p)
	}
}

func (l *Ledger) endOp(p *proc) {
	if p.ops > 0 {
		p.ops--
	}
}

// Started records a start's answer: the process runs with pid. An
// incarnation already forgotten (its exit and delete came first) stays
// forgotten.
func (l *Ledger) Started(id ID, pid uint32) {
	l.tick++
	p := l.byID[id]
	if p == nil {
		return
	}
	l.endOp(p)
	p.starting = false
	if !p.delivered {
		l.setPid(p, pid, true) // the answer names the process
	}
	l.ranNow(p)
	l.settle(p)
}

// StartFailed records a start refused (or never sent): the process never ran.
func (l *Ledger) StartFailed(id ID) {
	l.tick++
	p := l.byID[id]
	if p == nil {
		return
	}
	l.endOp(p)
	p.starting = false
	l.unstash(p)
	if p.ran != ranYes {
		p.news = nil // a created process killed: no exit of a run
	}
	l.settle(p)
}

// StartUnknown records a start whose answer was lost: containerd is asked
// whether it ran.
func (l *Ledger) StartUnknown(id ID) {
	l.tick++
	p := l.byID[id]
	if p == nil {
		return
	}
	l.endOp(p)
	p.starting = false
	l.touch(p)
	if p.ran == ranNo {
		p.ran = ranMaybe
		l.ready.Watch = true // the shim watch listens for it too
	}
	if pid, ok := p.stashedPid(); ok && p.deleted && p.pid == 0 {
		// Gone already, and no answer can name its pid now: see gone.
		l.setPid(p, pid, true)
	}
	if p.ran == ranMaybe {
		l.want(p)
	}
	l.settle(p)
}

// StartUnresolved reports whether ref's start outcome is still unknown: a
// caller about to kill it asks containerd first (Resolve), since a created
// process killed exits just like a started one.
func (l *Ledger) StartUnresolved(ref Ref) bool {
	p := l.resolve(ref)
	return p != nil && p.ran == ranMaybe && p.ours
}

// Adopt records a process this client's handle found running (Task.Status,
// a loaded exec of the task task) and returns its incarnation: from now on
// its exit is this client's to deliver. Whatever else the ledger held under
// key is gone: containerd shows this one there.
func (l *Ledger) Adopt(key Key, pid uint32, task Ref) ID {
	l.tick++
	if pid == 0 {
		return 0
	}
	var p *proc
	for _, q := range l.list(key) {
		if q.pid == pid && !q.deleted && !q.exited() && (p == nil || p.seen) {
			p = q
		}
	}
	if p == nil {
		p = l.add(&proc{key: key, pid: pid})
	}
	p.ours, p.seen = true, false
	if p.task == nil && !key.IsInit() {
		p.task = l.resolve(task)
	}
	l.ranNow(p)
	for _, q := range append([]*proc(nil), l.list(key)...) {
		switch {
		case q == p || q.deleted:
		case q.pid == pid && q.seen:
			l.remove(q) // the same process, seen on the stream
		case q.pid != 0:
			l.gone(q)
		}
	}
	return p.id
}

// StatusStopped records a Status answer through a handle: stopped with code.
// Only an incarnation the ledger holds gets an exit from it: a task the
// caller loads and finds stopped is the caller's to handle.
func (l *Ledger) StatusStopped(ref Ref, pid, code uint32, at time.Time) {
	l.tick++
	if p := l.resolve(ref); p != nil {
		l.report(p, Report{Status: Stopped, Pid: pid, Code: code, At: at}, FromReconcile)
	}
}

// Resolve records what containerd said of ref's process when asked outside
// the reconciler (before the kill of a start whose outcome was unknown,
// before finishing a cut-off delete).
func (l *Ledger) Resolve(ref Ref, r Report) {
	l.tick++
	if p := l.resolve(ref); p != nil {
		if r.Status == Created && p.ran == ranMaybe && p.key.IsInit() {
			// Still created when its caller is about to kill it: a
			// created task killed exits without having run. (An exec
			// has no process until it starts: nothing to kill, and its
			// pid, in an answer, says it ran.)
			p.ran, p.seen, p.news = ranNo, false, nil
			l.ready.Watch = true
		}
		l.report(p, r, FromReconcile)
	}
}

// DeleteBegin records a delete (or a clean-up's delete) through ref in
// flight and returns the incarnation it is about (0: none held); the call
// ends with DeleteAnswer, DeleteNotFound, DeleteUnknown or DeleteFailed.
func (l *Ledger) DeleteBegin(ref Ref) ID {
	l.tick++
	p := l.resolve(ref)
	if p == nil {
		if ref.Pid == 0 {
			return 0
		}
		// A handle loaded from containerd: held from now on, so that a
		// delete cut off can be finished for this very process.
		p = l.add(&proc{key: ref.Key, pid: ref.Pid, ours: true, handleOnly: true})
	}
	p.ops++
	return p.id
}

// DeleteAnswer records a delete's answer: the process is gone, with pid and
// its exit (a pid of 0: an exec that never started).
func (l *Ledger) DeleteAnswer(id ID, ref Ref, pid, code uint32, at time.Time) {
	l.tick++
	p := l.byID[id]
	if p == nil {
		if ref.Key.IsInit() {
			if pid == 0 {
				pid = ref.Pid
			}
			l.taskGone(ref.Key.Container, pid)
		}
		return
	}
	l.endOp(p)
	l.setPid(p, pid, true)
	if p.seen && pid == p.pid {
		l.ranNow(p) // seen starting, and gone with an exit: it ran
	}
	if !p.key.IsInit() && p.ran != ranYes {
		if pid != 0 {
			l.ranNow(p) // an exec gets its pid at start: it ran
		} else {
			// And without one it never started: the exits kept for
			// it are re-sends of an earlier exec's under its ID.
			p.ran, p.stash = ranNo, nil
		}
	}
	if p.ran != ranYes {
		p.news = nil
	} else {
		l.learn(p, news{code: code, at: at, source: FromAnswer})
	}
	l.gone(p)
	l.settle(p)
}

// DeleteNotFound records a delete answered NotFound: the process was gone
// already (deleted by someone else, or by an earlier call whose answer was
// lost).
func (l *Ledger) DeleteNotFound(id ID, ref Ref) {
	l.tick++
	p := l.byID[id]
	if p == nil {
		if ref.Key.IsInit() && ref.Pid != 0 {
			l.taskGone(ref.Key.Container, ref.Pid)
		}
		return
	}
	l.endOp(p)
	l.gone(p)
	l.settle(p)
}

// DeleteUnknown records a delete whose answer was lost: once the stream is
// live the client is asked (Ready.Finish) to finish it, for this incarnation
// only.
func (l *Ledger) DeleteUnknown(id ID) {
	l.tick++
	p := l.byID[id]
	if p == nil {
		return
	}
	l.endOp(p)
	if !p.deleted {
		p.finish = true
		if l.live {
			l.ready.Finish = append(l.ready.Finish, Finish{ID: p.id, Key: p.key, Pid: p.pid})
		}
	}
	l.settle(p)
}

// FinishDropped gives up finishing the delete of id: containerd shows a
// process under its key that cannot be told to be it.
func (l *Ledger) FinishDropped(id ID) {
	l.tick++
	if p := l.byID[id]; p != nil {
		p.finish = false
		l.settle(p)
	}
}

// DeleteFailed records a delete refused (the process still runs).
func (l *Ledger) DeleteFailed(id ID) {
	l.tick++
	if p := l.byID[id]; p != nil {
		l.endOp(p)
		l.settle(p)
	}
}

// FinishPending reports whether the delete of id is still to be finished.
func (l *Ledger) FinishPending(id ID) bool {
	p := l.byID[id]
	return p != nil && p.finish && !p.deleted
}

// FinishTarget returns the pid the delete of id is to be finished for, as
// the ledger knows it now (an exec's may have been learned since the delete
// was cut off; 0: still not known), and whether it is still to be finished.
func (l *Ledger) FinishTarget(id ID) (uint32, bool) {
	if !l.FinishPending(id) {
		return 0, false
	}
	return l.byID[id].pid, true
}

// KillWaitBegin records a kill-and-wait through ref in flight (ForceDelete)
// and returns its incarnation (0: none held); it ends with KillWaitEnd.
func (l *Ledger) KillWaitBegin(ref Ref) ID {
	l.tick++
	p := l.resolve(ref)
	if p == nil {
		return 0
	}
	p.ops++
	return p.id
}

// WaitAnswer records a Wait's answer: the process exited with code.
func (l *Ledger) WaitAnswer(id ID, code uint32, at time.Time) {
	l.tick++
	if p := l.byID[id]; p != nil {
		l.learn(p, news{code: code, at: at, source: FromAnswer})
	}
}

// KillWaitEnd ends a kill-and-wait.
func (l *Ledger) KillWaitEnd(id ID) {
	l.tick++
	if p := l.byID[id]; p != nil {
		l.endOp(p)
		l.settle(p)
	}
}

// KnownStopped reports whether ref's process is known to have exited (its
// exit delivered, or real news of it waiting): it cannot be running.
func (l *Ledger) KnownStopped(ref Ref) bool {
	p := l.resolve(ref)
	return p != nil && p.exited()
}

// Inputs: the event stream.

// StreamStart takes a TaskStart or TaskExecStarted. A start the ledger
// cannot place is checked with containerd before the process counts as run:
// a re-sent start of a process long gone must not make one up.
func (l *Ledger) StreamStart(key Key, pid uint32) {
	l.tick++
	if pid == 0 {
		return
	}
	p := l.placeStream(key, pid, true)
	if p != nil && p.deleted && (p.startRead || p.ran == ranNo && !p.starting) {
		// It gone, and its own start read (or never to come): this is a
		// new process that reused the pid, and the stream has passed what
		// the old one said.
		p.streamDone = true
		l.settle(p)
		p = nil
	}
	if p != nil {
		p.startRead = true
	}
	switch {
	case p == nil:
		// Not placed: containerd says whether it runs.
		l.unplacedStart(key, pid)
	case p.seen:
		// Seen starting already: its check is on its way.
	case p.deleted && p.ours && p.ran != ranYes && (p.ran == ranMaybe || p.starting):
		// A start whose answer was lost or is on its way, gone before
		// containerd could say whether it ran: the stream says it did.
		l.ranNow(p)
		l.settle(p)
	case p.deleted:
		// What a process since gone said before it went.
	case !p.exited() && p.ran == ranYes || p.ran == ranMaybe || p.starting:
		// Running; or its start was not known to have happened (news
		// of its exit kept till then): it did.
		l.ranNow(p)
	case p.ran == ranNo:
		// A created process killed never starts: this is another that
		// reused the pid once that one was deleted unseen.
		l.want(p)
		l.unplacedStart(key, pid)
	default:
		// It ended, and containerd has no other process under its key
		// until it is deleted: a re-sent start, unless it was deleted
		// unseen. containerd says which.
		l.want(p)
	}
}

// placeStream is place for an event of the stream. One whose incarnation is
// gone may have been said before it went (the reader is behind), unless
// containerd has another process under the key with that pid now: a new
// process gets no pid of its container's whose events the reader has yet to
// read (it is never a whole create or start behind), so that one's are all
// read, and the event is the new one's.
func (l *Ledger) placeStream(key Key, pid uint32, start bool) *proc {
	p := l.place(key, pid, start)
	if p != nil && p.deleted {
		if q := l.find(key, pid); q != nil && !q.deleted {
			return q
		}
	}
	return p
}

// placeExit is placeStream for an exit record (TaskExit, TaskDelete). A
// process exits once: an incarnation whose exit is known with another
// record (another code, or another time stamped by its shim) is not the one
// this record is of. If the ledger holds a later incarnation under key with
// the same pid whose exit is not known (the kernel reused the pid, and the
// old one's delete never reached the stream), the record is that one's.
func (l *Ledger) placeExit(key Key, pid, code uint32, at time.Time) *proc {
	p := l.placeStream(key, pid, false)
	if p == nil || !p.otherExit(code, at) {
		return p
	}
	later := false
	for _, q := range l.list(key) {
		switch {
		case q == p:
			later = true
		case later && q.pid == pid && !q.handleOnly && !q.streamDone && !q.otherExit(code, at):
			return q
		}
	}
	return p
}

// unplacedStart holds a start the ledger cannot place as a process seen
// starting, to be confirmed by containerd.
func (l *Ledger) unplacedStart(key Key, pid uint32) {
	// An exec's task is left unknown: which of its container's tasks the
	// ledger holds is the running one is a belief, not identity (a task's
	// end has it asked about instead).
	p := l.add(&proc{key: key, pid: pid, ran: ranMaybe, seen: true})
	l.want(p)
	for _, q := range l.container(key.Container) {
		// Another process of the container started: a delivered exec of
		// another client's whose delete the stream never reports (the
		// runc shim publishes none for execs) may be gone by now; and
		// what else the ledger held under key may not be what containerd
		// shows now.
		if q != p && !q.deleted && (q.key == key || !q.key.IsInit() && !q.ours && q.delivered) {
			l.want(q)
		}
	}
}

// StreamExit takes a TaskExit. The exit of an incarnation known to have run
// is delivered at once, with the first real code reported for it; one that
// the ledger cannot place is checked with containerd first.
func (l *Ledger) StreamExit(key Key, pid, code uint32, at time.Time) {
	l.tick++
	p := l.placeExit(key, pid, code, at)
	switch {
	case p != nil && p.delivered && p.sameExit(code, at):
		// A copy: a shim re-sending.
	case p == nil, p.delivered:
		// Not placed, or not the exit delivered (a new process that
		// reused the pid, or containerd's clean-up saying 137 of one
		// whose delete was cut off): containerd says which.
		l.unplaced(key, pid, code, at)
	default:
		l.streamNews(p, news{code: code, at: at, source: FromStream})
	}
}

// streamNews delivers p's exit now if p is known to have run, with the first
// real code reported for it; otherwise it is kept until p's start is
// settled.
func (l *Ledger) streamNews(p *proc, n news) {
	if p.ran == ranMaybe && p.ours && !p.seen {
		// A start whose answer was lost, and containerd publishes its
		// exit: it ran (a kill of this client's that could catch it still
		// created asks containerd first: resolveStart).
		l.ranNow(p)
	}
	if p.ran != ranYes {
		l.learn(p, n)
		if p.ran == ranMaybe {
			l.want(p)
		}
		return
	}
	if p.news != nil && p.news.source != FromGuess {
		n = *p.news
	}
	l.deliver(p, n)
	l.settle(p)
}

// unplaced holds news of a process the ledger does not hold until containerd
// says whether it is about the process it shows.
func (l *Ledger) unplaced(key Key, pid, code uint32, at time.Time) {
	if pid == 0 {
		return
	}
	for _, p := range l.list(key) {
		if p.pid == pid && p.delivered && p.sameExit(code, at) {
			return // a copy of an exit delivered
		}
	}
	if p := l.startingExec(key); p != nil && !l.buried(key, pid, code, at) {
		p.stash = append(p.stash, news{code: code, at: at, pid: pid, source: FromStream})
		if pid, ok := p.stashedPid(); ok && p.deleted && !p.starting {
			// Gone already (see gone): nothing else can name its pid.
			l.setPid(p, pid, true)
		}
		return
	}
	if l.claimPast(key, pid, code, at) {
		return
	}
	for _, c := range l.confirms {
		if c.key == key && c.pid == pid && c.code == code && c.at.Equal(at) {
			return // a copy of news already being checked
		}
	}
	token := l.nextToken()
	l.confirms[token] = &confirm{key: key, pid: pid, code: code, at: at, check: checkWanted, born: l.tick}
	l.wanted = append(l.wanted, token)
	l.ready.Checks = true
}

// StreamDelete takes a TaskDelete: the process is gone, and its exit (on
// containerd 2.x the shim can go before its TaskExit reached containerd) is
// delivered now if it is owed. An init's delete is the last the stream says
// of its task, and ends its execs.
func (l *Ledger) StreamDelete(key Key, pid, code uint32, at time.Time) {
	l.tick++
	p := l.placeExit(key, pid, code, at)
	if p == nil {
		if key.IsInit() {
			// A task the ledger did not hold: its execs the ledger holds
			// without knowing their task are asked about.
			l.taskGone(key.Container, 0)
		} else {
			// An exec's exit the ledger cannot place (its start's answer
			// still to name its pid): held as an unplaced exit is.
			l.unplaced(key, pid, code, at)
		}
		return
	}
	if key.IsInit() {
		p.streamDone = true
	}
	if !p.delivered {
		l.streamNews(p, news{code: code, at: at, source: FromStream})
	}
	if p.deleted {
		l.settle(p)
	} else {
		l.gone(p)
	}
}

// StreamExecAdded takes a TaskExecAdded: what the stream says of key from
// now on is of the exec this client added under it, if it is adding one.
func (l *Ledger) StreamExecAdded(key Key) {
	l.tick++
	for _, p := range l.list(key) {
		if p.ours && !p.added && p.pid == 0 && (!p.deleted || p.ran == ranMaybe) {
			p.added, p.addedAt = true, l.tick
			return
		}
	}
}

// StreamDown records that the event stream broke.
func (l *Ledger) StreamDown() {
	l.tick++
	l.live = false
}

// StreamLive records that a new subscription is live (its first sentinel
// came back): containerd is asked about every process it may have changed
// meanwhile, and the deletes outages cut off are to be finished.
func (l *Ledger) StreamLive() {
	l.tick++
	if l.live {
		return
	}
	l.live = true
	l.epoch++
	for _, p := range l.all() {
		if p.deleted {
			continue // lingering until a barrier: see settle
		}
		if p.addDone && !p.added {
			p.added, p.addedAt = true, l.tick // as in ExecAdded
		}
		if p.pid != 0 || !p.starting {
			l.want(p)
		}
		if p.finish {
			l.ready.Finish = append(l.ready.Finish, Finish{ID: p.id, Key: p.key, Pid: p.pid})
		}
	}
	l.ready.Watch = true
}

// Inputs: the shim watch and the reconciler.

// ShimReport takes what a process's shim said while containerd was down
// (pid 0: an exec whose pid is not known yet).
func (l *Ledger) ShimReport(key Key, pid uint32, r Report) {
	l.tick++
	var p *proc
	if pid != 0 {
		p = l.find(key, pid)
	} else {
		p = l.unknownPid(key)
	}
	if p == nil || p.deleted {
		return
	}
	if r.Status == Gone || r.Pid != 0 && p.pid != 0 && r.Pid != p.pid {
		return // the reconciler confirms a vanished one with containerd
	}
	l.report(p, r, FromShim)
}

// report applies what containerd (or a shim) said of p's key. Of a process
// known deleted it says nothing (whatever is under the key now is another),
// unless it was asked before then: an exit it names by p's pid is p's.
func (l *Ledger) report(p *proc, r Report, source Source) {
	if p.deleted {
		if source == FromReconcile && p.asked < p.goneAt && r.Status == Running && r.Pid == p.pid && p.pid != 0 && p.ran == ranMaybe && !l.newerWithPid(p) {
			// Running when asked, before it went: it ran.
			l.ranNow(p)
		}
		if source == FromReconcile && p.asked < p.goneAt && r.Status == Stopped && r.Pid == p.pid && p.pid != 0 && !p.exited() {
			if p.ran == ranMaybe {
				l.ranNow(p)
			}
			l.learn(p, news{code: r.Code, at: r.At, source: source})
		}
		l.settle(p)
		return
	}
	if r.Status != Gone && r.Status != Created && r.Pid != 0 && !p.deleted && (p.key.IsInit() || p.addDone) && (p.pid == 0 || !p.pidSure && p.ours) {
		// containerd names the process under the key now: this one,
		// unless an exec's add was not answered (an earlier exec may
		// still hold its ID).
		l.setPid(p, r.Pid, true)
	}
	if p.pid == 0 && (r.Status == Running || r.Status == Stopped) {
		// An exec whose add no answer confirmed: what runs or ran under
		// its ID may be an earlier exec's.
		l.settle(p)
		return
	}
	if r.Status == Gone || r.Pid != 0 && p.pid != 0 && r.Pid != p.pid || l.another(p, r) {
		l.gone(p)
		return
	}
	switch r.Status {
	case Created:
		// A start whose answer was lost may still be under way in the
		// shim (containerd handed it over before it went): "created"
		// says nothing of whether it will run. Only a start seen on the
		// stream and not yet confirmed is undone: that was a re-send.
		if p.ran == ranMaybe && p.seen {
			p.ran, p.seen, p.news = ranNo, false, nil
			l.ready.Watch = true
		}
	case Running:
		if p.ran == ranMaybe {
			l.ranNow(p)
		}
	case Stopped:
		if p.ran == ranMaybe {
			l.ranNow(p)
		}
		l.learn(p, news{code: r.Code, at: r.At, source: source})
	}
	l.settle(p)
}

// another reports whether what containerd shows under p's key and pid is
// another process than p: p exited, and it runs or exited otherwise (the pid
// was reused); or p is an unconfirmed start of a process whose exit another
// incarnation already has (a re-sent start).
func (l *Ledger) another(p *proc, r Report) bool {
	switch {
	case p.exited() && r.Status == Running:
		return true
	case p.exited() && r.Status == Stopped:
		return !p.sameExit(r.Code, r.At)
	case p.seen && r.Status == Stopped:
		for _, q := range l.list(p.key) {
			if q != p && q.pid == p.pid && q.sameExit(r.Code, r.At) {
				return true
			}
		}
	}
	return false
}

// TakeChecks hands out the questions for containerd that wait.
func (l *Ledger) TakeChecks() []Check {
	l.tick++
	out := make([]Check, 0, len(l.wanted))
	for _, token := range l.wanted {
		if p := l.byID[ID(token)]; p != nil {
			if p.check != checkWanted {
				continue
			}
			p.check, p.asked = checkInFlight, l.tick
			out = append(out, Check{Token: token, Key: p.key, Pid: p.pid})
		} else if c := l.confirms[token]; c != nil && c.check == checkWanted {
			c.check, c.asked = checkInFlight, l.tick
			out = append(out, Check{Token: token, Key: c.key, Pid: c.pid})
		}
	}
	l.wanted = l.wanted[:0]
	return out
}

// CheckFailed records a question containerd did not answer: it is asked
// again at the next TakeChecks.
func (l *Ledger) CheckFailed(token uint64) {
	l.tick++
	if p := l.byID[ID(token)]; p != nil {
		if p.check == checkInFlight || p.check == checkAgain {
			p.check = checkNone
			l.want(p)
		}
	} else if c := l.confirms[token]; c != nil && c.check == checkInFlight {
		c.check = checkWanted
		l.wanted = append(l.wanted, token)
		l.ready.Checks = true
	}
}

// CheckAnswer records containerd's answer to a check.
func (l *Ledger) CheckAnswer(token uint64, r Report) {
	l.tick++
	if p := l.byID[ID(token)]; p != nil {
		l.checked(p, r)
		return
	}
	c := l.confirms[token]
	if c == nil {
		return
	}
	delete(l.confirms, token)
	if r.Status != Stopped || r.Pid != c.pid || r.Code != c.code || !c.at.IsZero() && !r.At.IsZero() && !c.at.Equal(r.At) {
		return // not the process containerd shows: a copy of an old exit
	}
	l.confirmed(c.key, r, c.asked)
}

// confirmed takes containerd's word, asked at tick asked, that the process
// it had under key ran and stopped as r says: it is the incarnation the
// ledger held there then (by containerd's state, not the stream's order), or
// a new one. One the ledger learned of after the question is another.
func (l *Ledger) confirmed(key Key, r Report, asked uint64) {
	n := news{code: r.Code, at: r.At, source: FromStream}
	// Of the incarnations with this pid the ledger held when it asked:
	// the one whose exit this is, else the newest whose exit is not known;
	// one that ended otherwise is another process.
	var p, other *proc
	for _, q := range l.list(key) {
		switch {
		case q.pid != r.Pid || q.born >= asked:
		case q.exited() && q.sameExit(r.Code, r.At):
			p = q
		case !q.exited() && (p == nil || !p.exited()):
			p = q
		case q.exited():
			other = q
		}
	}
	if p == nil && other != nil {
		// The incarnation held under this pid ended otherwise:
		// containerd shows a new process that reused the pid.
		l.gone(other)
	}
	if p != nil {
		if !p.exited() || p.sameExit(r.Code, r.At) {
			switch {
			case p.seen:
				l.ranNow(p) // its start and its exit, confirmed
			case p.ran == ranMaybe:
				l.want(p) // a created process killed exits alike
			}
			l.learn(p, n)
			return
		}
	} else if q := l.added(key, asked); q != nil {
		// This client's exec, its pid not known yet: containerd has
		// only it under the key.
		l.setPid(q, r.Pid, true)
		if q.ran == ranMaybe {
			l.want(q)
		}
		l.learn(q, n)
		return
	}
	p = l.add(&proc{key: key, pid: r.Pid, ran: ranYes})
	l.learn(p, n)
}

// unknownPid returns this client's exec under key whose start may have run
// but whose pid is not known (the shim watch asks its shim by exec ID).
func (l *Ledger) unknownPid(key Key) *proc {
	for _, p := range l.list(key) {
		if p.ours && p.pid == 0 && !p.deleted && p.ran == ranMaybe {
			return p
		}
	}
	return nil
}

// added returns this client's exec under key whose add was answered before
// tick asked and whose pid is not known yet.
func (l *Ledger) added(key Key, asked uint64) *proc {
	if key.IsInit() {
		return nil
	}
	for _, p := range l.list(key) {
		if p.ours && p.addDone && p.pid == 0 && !p.deleted && p.born < asked {
			return p
		}
	}
	return nil
}

// checked applies a check's answer to p. An answer to a question asked
// before the ledger learned of p's start or exit may not reflect it: a
// process gone stays gone and an exit stays an exit, but "running" or
// "created" from before then says nothing now.
func (l *Ledger) checked(p *proc, r Report) {
	again := p.check == checkAgain
	p.check = checkNone
	if r.Status != Gone && r.Status != Created && r.Pid != 0 && p.pid == 0 && p.ours && p.addDone && p.addDoneAt < p.asked && (!p.deleted || p.asked < p.goneAt) {
		// The answer names this client's exec's pid (asked once its add
		// was answered, while containerd had it): the exits kept for it
		// are placed first, and may be newer than the answer.
		l.setPid(p, r.Pid, true)
	}
	stale := p.touched >= p.asked
	if r.Status == Stopped && r.Pid != 0 && r.Pid != p.pid {
		// containerd shows another process under the key stopped: if
		// the ledger holds it as this client's earlier exec under the
		// same ID, still there, this is its exit (an exit stays an
		// exit).
		for _, q := range l.list(p.key) {
			if q != p && q.ours && !q.key.IsInit() && q.pid == r.Pid && !q.deleted && q.born < p.asked {
				l.report(q, r, FromReconcile)
				break
			}
		}
	}
	switch {
	case stale && p.seen && r.Status == Running && r.Pid == p.pid && (!p.deleted || p.asked < p.goneAt) && !l.newerWithPid(p):
		// Running when asked, which was after its start was read: it
		// ran, whatever the stream said of it since (its exit, kept
		// till now, goes out); what it does now, the next answer says.
		if l.heldAlready(p, r) {
			return
		}
		l.ranNow(p)
		if p.deleted {
			l.settle(p)
			return
		}
		again = true
	case stale && (r.Status == Running || r.Status == Created),
		stale && r.Status == Gone && p.pid == 0:
		again = true
	case p.seen && (r.Status == Running || r.Status == Stopped) && r.Pid == p.pid:
		if l.heldAlready(p, r) {
			return
		}
		l.report(p, r, FromReconcile)
	default:
		l.report(p, r, FromReconcile)
	}
	if again && l.byID[p.id] == p && !p.deleted {
		l.want(p)
	}
	if l.byID[p.id] == p && p.deleted {
		l.settle(p) // it may have waited for this answer (settle)
	}
}

// newerWithPid reports whether the ledger learned, since p's check was
// handed out, of another process under p's key with p's pid: containerd may
// have answered about that one (a check is carried out some time after it
// is handed out).
func (l *Ledger) newerWithPid(p *proc) bool {
	for _, q := range l.list(p.key) {
		if q != p && q.pid == p.pid && q.born > p.asked {
			return true
		}
	}
	return false
}

// heldAlready hands containerd's answer r about p, a process seen starting,
// to the incarnation the ledger holds it as already, if any (this client's,
// its start's answer not placed yet), and forgets p.
func (l *Ledger) heldAlready(p *proc, r Report) bool {
	q := l.added(p.key, p.asked)
	for _, x := range l.list(p.key) {
		if x != p && x.pid == p.pid && !x.deleted && !x.seen && x.born < p.asked {
			q = x
			break
		}
	}
	if q == nil {
		return false
	}
	l.remove(p)
	if r.Status == Running && q.touched >= p.asked {
		// Asked before the ledger learned of q's start or exit: it ran,
		// and "running" says nothing of now.
		if q.ran == ranMaybe && q.pid == r.Pid {
			l.ranNow(q)
		}
		l.settle(q)
		return true
	}
	l.report(q, r, FromReconcile)
	return true
}

// Watched lists the processes whose exit the shim watch is to listen for:
// each that ran (or may have) whose exit is not known.
func (l *Ledger) Watched() []Watch {
	var out []Watch
	for _, p := range l.all() {
		if p.deleted || p.exited() || p.ran == ranNo || p.seen {
			continue
		}
		if p.pid == 0 && (p.key.IsInit() || p.ran != ranMaybe) {
			continue
		}
		out = append(out, Watch{Key: p.key, Pid: p.pid})
	}
	return out
}

// Barriers.

// NeedBarrier returns the number of a barrier to publish if news (or a
// deleted task the stream may still speak of) waits for one not yet
// published (0: none needed).
func (l *Ledger) NeedBarrier() uint64 {
	for p := range l.waiting {
		if p.after == l.published {
			l.published++
			return l.published
		}
	}
	for p := range l.lingering {
		if p.after == l.published {
			l.published++
			return l.published
		}
	}
	return 0
}

// NextBarrier reserves a barrier number (a live probe, or a barrier
// published again because its echo never came).
func (l *Ledger) NextBarrier() uint64 {
	l.published++
	return l.published
}

// WaitingOnBarrier reports whether anything waits for the echo of a
// barrier already published.
func (l *Ledger) WaitingOnBarrier() bool {
	for p := range l.waiting {
		if p.after < l.published {
			return true
		}
	}
	for p := range l.lingering {
		if p.after < l.published {
			return true
		}
	}
	return false
}

// Echo takes a barrier that came back through the stream: every exit whose
// news came before it was published is delivered, in the order the news
// came, and deleted tasks the stream has passed are forgotten.
func (l *Ledger) Echo(seq uint64) {
	l.tick++
	if !l.live {
		return
	}
	var ready []*proc
	for _, p := range inSet(l.waiting) {
		if p.after < seq {
			ready = append(ready, p)
		}
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].order < ready[j].order })
	for _, p := range ready {
		l.deliver(p, *p.news)
		l.settle(p)
	}
	for _, p := range inSet(l.lingering) {
		if p.after < seq {
			p.streamDone, p.lingering = true, false
			delete(l.lingering, p)
			l.settle(p)
		}
	}
}

// ContainerGone records containerd's word that a container has no task (a
// Get before deleting it answered NotFound): none of its processes exist.
func (l *Ledger) ContainerGone(container string) {
	l.tick++
	l.containerGone(container)
}

// Pending says what the ledger still waits for ("" when nothing): exits
// waiting for a barrier, deleted tasks the stream may still speak of,
// questions for containerd, news it cannot place yet.
func (l *Ledger) Pending() string {
	checks := 0
	for _, p := range l.byID {
		if p.check != checkNone {
			checks++
		}
	}
	for _, c := range l.confirms {
		if c.check != checkNone {
			checks++
		}
	}
	if len(l.waiting)+len(l.lingering)+checks == 0 {
		return ""
	}
	return fmt.Sprintf("%d exits waiting for a barrier, %d deleted tasks waiting for the stream, %d questions for containerd",
		len(l.waiting), len(l.lingering), checks)
}
