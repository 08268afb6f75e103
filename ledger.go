package libcontainerd

import (
	"sort"
	"sync"
	"time"

	"github.com/lcdkit/libcontainerd/internal/testhooks"
	"github.com/lcdkit/libcontainerd/types"
)

// The exit ledger.
//
// Six sources learn that a process ended: the stream's TaskExit and
// TaskDelete, a Delete's (or DeleteProcess's) answer, ForceDelete's Wait
// answer, the shim watch during an outage, and the reconciler (containerd's
// Get: stopped with a status, or the process gone). They race; each only
// reports to the ledger, which alone decides what the backend gets:
//
//   - A process's exit is delivered once per incarnation (container,
//     process, pid), and a real exit code always beats a guess.
//   - An exit the stream carries is delivered in stream order, at once.
//     Any other news (an answer, the shim, the reconciler) is delivered by
//     the stream reader after a barrier: a sentinel published after the
//     news came back through the stream, so every event containerd had
//     published before (that container's TaskStart or TaskOOM, the
//     process's own TaskExit) was delivered first. While containerd is
//     down there is no stream: such news waits until it serves again, so
//     the daemon's Delete on that exit can act.
//   - 255 ("vanished") is a guess: it is made only once containerd has
//     confirmed the process gone (NotFound, or its task gone), and goes
//     through the same barrier, so a real exit still in flight wins.
//   - A process is forgotten when its end is known: its exit delivered and
//     its delete seen or answered, or its task gone. Never on a timer: memory
//     is bounded by the processes alive or awaiting delivery, plus one time
//     per container (below).
//   - Copies of an exit can still come after that: a shim retrying across a
//     containerd freeze re-sends its TaskExit, and on 2.x the shim's TaskExit
//     can follow containerd's TaskDelete. A copy carries the exit's own time.
//     Each container keeps the newest exit time among its forgotten
//     processes; one shim serves the container and publishes its exits in
//     the order they happen, so an exit of a process the ledger does not
//     hold that is not newer than that is a copy, and is dropped. It also
//     keeps the pid of its last forgotten init: after a delete cut off by a
//     containerd kill, the restarted containerd can clean up after the shim
//     and publish the init's exit again (137, a new time), and that is a
//     copy too. This memory outlives the container's delete through this
//     client (containerd's clean-up can come just after it) for the last
//     retiredEnds containers deleted, a fixed bound.

// exitSource says where news of an exit came from; stream news is ordered,
// the rest waits for a barrier.
type exitSource uint8

const (
	fromStream    exitSource = iota // TaskExit or TaskDelete on the event stream
	fromAnswer                      // a Delete, DeleteProcess or Wait answer
	fromShim                        // the shim's own Wait/State while containerd is down
	fromReconcile                   // containerd's Get found it stopped
	fromGuess                       // containerd confirmed it gone; nobody knows its code
)

func (s exitSource) String() string {
	switch s {
	case fromStream:
		return "event stream"
	case fromAnswer:
		return "answer"
	case fromShim:
		return "shim"
	case fromReconcile:
		return "reconcile"
	}
	return "guess"
}

// exitNews is one report of an exit.
type exitNews struct {
	code   uint32
	at     time.Time
	source exitSource
}

// incarnation is one process under a key: a pid's life from start to its
// forgetting.
type incarnation struct {
	pid     uint32
	taskPid uint32 // the init pid of the task an exec belongs to (0: unknown)
	// since is the container's newest forgotten exit time when this
	// process was first seen: its own exit is newer, so news not newer is
	// a copy of an earlier process's under the same key and pid.
	since time.Time
	// unconfirmed: a start whose answer was lost; the reconciler says
	// whether it ran (running or stopped) or not (created: forgotten).
	unconfirmed bool
	check       bool      // the reconciler is to ask containerd about it
	exit        *exitNews // best news not delivered yet (waits for a barrier)
	after       uint64    // the exit goes out with the first echo past this barrier
	order       uint64    // when its news arrived, to release in that order
	delivered   bool
	deliveredAt time.Time // the delivered exit's time, to tell a re-send from a new process
	deleted     bool      // its delete was answered or seen
	taskGone    bool
}

// ledger owns the exit state of one client.
type ledger struct {
	mu    sync.Mutex
	procs map[string]map[string][]*incarnation // container → process → incarnations, oldest first
	// waiting holds the incarnations whose exit waits for a barrier.
	waiting map[*incarnation]procKey
	// published is the newest barrier published; echoed the newest come
	// back; live says the stream is up and caught up to its first echo.
	published, echoed uint64
	live              bool
	epoch             uint64    // times the stream went live
	liveAt            time.Time // when it last did
	// ends holds, per container, what is known of its forgotten processes
	// to tell a copy of their exits; retired lists the containers deleted
	// through this client whose entry is still kept, oldest first.
	ends    map[string]containerEnd
	retired []string
	news    uint64 // news counter (incarnation.order)
	count   int    // incarnations held, for tests and the memory bound
	// kick wakes the stream reader (a barrier is needed); wake wakes the
	// reconciler (something to check); added wakes the shim watch (a
	// process to watch).
	kick, wake, added chan struct{}
}

func newLedger() *ledger {
	return &ledger{
		procs:   map[string]map[string][]*incarnation{},
		waiting: map[*incarnation]procKey{},
		ends:    map[string]containerEnd{},
		kick:    make(chan struct{}, 1),
		wake:    make(chan struct{}, 1),
		added:   make(chan struct{}, 1),
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
		return c.ledger.size()
	}
}

// size is how many incarnations the ledger holds.
func (l *ledger) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count
}

func (l *ledger) incs(key procKey) []*incarnation { return l.procs[key.containerID][key.processID] }

// find returns the incarnation of key with pid that news of an exit at
// time at is about: the undelivered one, or the one whose delivered exit
// it repeats. A pid reused under the same key is a new incarnation; a
// re-send of the old exit carries the old time.
func (l *ledger) find(key procKey, pid uint32, at time.Time) *incarnation {
	var undelivered *incarnation
	for _, inc := range l.incs(key) {
		if inc.pid != pid {
			continue
		}
		if inc.delivered && (at.IsZero() || inc.deliveredAt.IsZero() || inc.deliveredAt.Equal(at)) {
			return inc
		}
		if !inc.delivered && undelivered == nil {
			undelivered = inc
		}
	}
	if undelivered != nil {
		return undelivered
	}
	// A delivered one whose time differs: still the same process if no
	// other incarnation with that pid exists (a guess has no real time).
	for _, inc := range l.incs(key) {
		if inc.pid == pid {
			return inc
		}
	}
	return nil
}

func (l *ledger) add(key procKey, inc *incarnation) {
	m := l.procs[key.containerID]
	if m == nil {
		m = map[string][]*incarnation{}
		l.procs[key.containerID] = m
	}
	m[key.processID] = append(m[key.processID], inc)
	l.count++
}

func (l *ledger) remove(key procKey, inc *incarnation) {
	m := l.procs[key.containerID]
	list := m[key.processID]
	for i, x := range list {
		if x == inc {
			list = append(list[:i:i], list[i+1:]...)
			l.count--
			break
		}
	}
	if inc.delivered {
		l.noteEnd(key, inc.pid, inc.deliveredAt)
	}
	if len(list) == 0 {
		delete(m, key.processID)
	} else {
		m[key.processID] = list
	}
	if len(m) == 0 {
		delete(l.procs, key.containerID)
	}
	delete(l.waiting, inc)
}

// isOlder reports whether an exit at time at happened before this process
// was first seen: a copy of an earlier process's exit.
func (inc *incarnation) isOlder(at time.Time) bool {
	return !inc.delivered && !at.IsZero() && !inc.since.IsZero() && !at.After(inc.since)
}

// retiredEnds bounds how many deleted containers' ends are kept.
const retiredEnds = 4096

// containerEnd is what the ledger keeps of a container's forgotten
// processes: the newest exit time, and the last init's pid.
type containerEnd struct {
	at      time.Time
	initPid uint32
}

// noteEnd records a forgotten process's delivered exit.
func (l *ledger) noteEnd(key procKey, pid uint32, at time.Time) {
	end := l.ends[key.containerID]
	if !at.IsZero() && at.After(end.at) {
		end.at = at
	}
	if key.processID == key.containerID {
		end.initPid = pid
	}
	l.ends[key.containerID] = end
}

// isCopy reports whether an exit of (key, pid) at time at, of a process
// the ledger does not hold, repeats one already delivered and forgotten.
func (l *ledger) isCopy(key procKey, pid uint32, at time.Time) bool {
	end, ok := l.ends[key.containerID]
	if !ok {
		return false
	}
	if key.processID == key.containerID && pid != 0 && pid == end.initPid {
		return true
	}
	return !at.IsZero() && !at.After(end.at)
}

// settle forgets inc if its end is fully known: delivered, and deleted or
// its task gone.
func (l *ledger) settle(key procKey, inc *incarnation) {
	if inc.delivered && (inc.deleted || inc.taskGone) {
		l.remove(key, inc)
	}
}

// started records a process seen running (confirmed) or maybe started (a
// start whose answer was lost). taskPid is the init pid of its task.
func (l *ledger) started(key procKey, pid, taskPid uint32, confirmed bool) {
	if pid == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, inc := range l.incs(key) {
		if inc.pid != pid {
			continue
		}
		if inc.delivered && inc.deleted {
			continue // the pid was reused by a new process
		}
		if confirmed && inc.unconfirmed {
			inc.unconfirmed = false
		}
		return
	}
	if key.processID == key.containerID {
		taskPid = pid
	} else if taskPid == 0 {
		taskPid = l.currentInit(key.containerID)
	}
	for _, old := range append([]*incarnation(nil), l.incs(key)...) {
		if old.delivered && old.deleted {
			l.remove(key, old) // superseded: its copies are long gone
		}
	}
	inc := &incarnation{pid: pid, taskPid: taskPid, unconfirmed: !confirmed, check: !confirmed, since: l.ends[key.containerID].at}
	l.add(key, inc)
	signal(l.added)
	if !confirmed {
		signal(l.wake)
	}
}

// currentInit returns the pid of the container's newest init whose task is
// not known gone (0: none tracked).
func (l *ledger) currentInit(containerID string) uint32 {
	list := l.procs[containerID][containerID]
	for i := len(list) - 1; i >= 0; i-- {
		if !list[i].taskGone && !list[i].deleted {
			return list[i].pid
		}
	}
	return 0
}

// tracks reports whether the ledger holds the incarnation (key, pid).
func (l *ledger) tracks(key procKey, pid uint32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, inc := range l.incs(key) {
		if inc.pid == pid {
			return true
		}
	}
	return false
}

// streamExit takes an exit the stream carried and reports whether it is
// to be delivered now. A process this client never saw running still gets
// it (as moby does) unless it is a copy of one delivered before; it is not
// held, only its time noted.
func (l *ledger) streamExit(key procKey, pid uint32, at time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	inc := l.find(key, pid, at)
	if inc == nil {
		if l.isCopy(key, pid, at) {
			return false
		}
		l.noteEnd(key, pid, at)
		return true
	}
	if inc.isOlder(at) {
		return false
	}
	if inc.delivered {
		l.settle(key, inc)
		return false
	}
	l.markDelivered(key, inc, at)
	l.settle(key, inc)
	return true
}

func (l *ledger) markDelivered(key procKey, inc *incarnation, at time.Time) {
	inc.delivered, inc.deliveredAt = true, at
	inc.exit, inc.check, inc.unconfirmed = nil, false, false
	delete(l.waiting, inc)
}

// better says whether news replaces what is known: a real code beats a
// guess; otherwise the first report stands.
func better(news exitNews, known *exitNews) bool {
	return known == nil || known.source == fromGuess && news.source != fromGuess
}

// report takes news of an exit that did not come in stream order. Only a
// process this client tracks gets an exit this way, unless adopt is set (an
// exec whose failed start ran all the same): a task the caller loads and
// finds stopped is the caller's to handle. deleted says the news is a
// delete's answer.
func (l *ledger) report(key procKey, pid uint32, news exitNews, deleted, adopt bool) {
	if pid == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	inc := l.find(key, pid, news.at)
	if inc == nil {
		if !adopt || l.isCopy(key, pid, news.at) {
			return
		}
		inc = &incarnation{pid: pid}
		l.add(key, inc)
	}
	if inc.isOlder(news.at) {
		return
	}
	if deleted {
		inc.deleted = true
	}
	if inc.delivered {
		l.settle(key, inc)
		return
	}
	l.learn(key, inc, news)
}

// learn records news for an undelivered incarnation and asks for a barrier.
func (l *ledger) learn(key procKey, inc *incarnation, news exitNews) {
	inc.check = false
	if !better(news, inc.exit) {
		return
	}
	inc.exit = &news
	inc.after = l.published
	l.news++
	inc.order = l.news
	l.waiting[inc] = key
	signal(l.kick)
}

// deleted records a process's delete (an answer that carried no exit, or a
// NotFound: deleted behind our back).
func (l *ledger) deleted(key procKey, pid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, inc := range append([]*incarnation(nil), l.incs(key)...) {
		if pid != 0 && inc.pid != pid {
			continue
		}
		inc.deleted = true
		l.settle(key, inc)
	}
}

// taskGone settles every process of the container's task whose init was
// initPid (0: whatever task it had): each is gone, so one without news of
// its exit gets a guess, after a barrier.
func (l *ledger) taskGone(containerID string, initPid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for processID, list := range l.procs[containerID] {
		key := procKey{containerID, processID}
		for _, inc := range append([]*incarnation(nil), list...) {
			if initPid != 0 && inc.taskPid != 0 && inc.taskPid != initPid {
				continue // a later task's, or an earlier one's
			}
			inc.taskGone = true
			if !inc.delivered && inc.exit == nil {
				if inc.unconfirmed {
					l.remove(key, inc) // never ran as far as anyone knows
					continue
				}
				l.learn(key, inc, exitNews{code: unknownExitCode, at: time.Now(), source: fromGuess})
			}
			l.settle(key, inc)
		}
	}
}

// gone records that containerd confirmed one process gone: a guess, unless
// real news comes first.
func (l *ledger) gone(key procKey, pid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, inc := range l.incs(key) {
		if inc.pid != pid || inc.delivered {
			continue
		}
		if inc.exit != nil {
			return // news already waits (the shim watch heard it)
		}
		if inc.unconfirmed {
			l.remove(key, inc)
			return
		}
		l.learn(key, inc, exitNews{code: unknownExitCode, at: time.Now(), source: fromGuess})
		return
	}
}

// notStarted forgets an unconfirmed start that containerd says never
// happened (the task or exec is still created).
func (l *ledger) notStarted(key procKey, pid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, inc := range l.incs(key) {
		if inc.pid == pid && inc.unconfirmed && !inc.delivered {
			l.remove(key, inc)
			return
		}
	}
}

// running records that containerd confirmed a process running.
func (l *ledger) running(key procKey, pid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, inc := range l.incs(key) {
		if inc.pid == pid && !inc.delivered {
			inc.unconfirmed, inc.check = false, false
		}
	}
}

// checkAll marks every undelivered process with no news for the reconciler:
// after a reconnect, anything may have happened to it.
func (l *ledger) checkAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	any := false
	for _, m := range l.procs {
		for _, list := range m {
			for _, inc := range list {
				if !inc.delivered && inc.exit == nil {
					inc.check, any = true, true
				}
			}
		}
	}
	if any {
		signal(l.wake)
	}
}

// checkTarget is one process the reconciler asks about.
type checkTarget struct {
	key procKey
	pid uint32
}

// toCheck lists, by container, the processes the reconciler is to ask about.
func (l *ledger) toCheck() map[string][]checkTarget {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]checkTarget{}
	for containerID, m := range l.procs {
		for processID, list := range m {
			for _, inc := range list {
				if inc.check && !inc.delivered && inc.exit == nil {
					out[containerID] = append(out[containerID], checkTarget{procKey{containerID, processID}, inc.pid})
				}
			}
		}
	}
	return out
}

// tracked copies the processes that may still exit unreported, for the
// shim watch: a start whose answer was lost included (containerd 1.7+
// deletes a task whose process ran and ended while it was down, so its
// shim is the only witness).
func (l *ledger) tracked() map[procKey]uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[procKey]uint32{}
	for containerID, m := range l.procs {
		for processID, list := range m {
			for _, inc := range list {
				if !inc.delivered && inc.exit == nil {
					out[procKey{containerID, processID}] = inc.pid
				}
			}
		}
	}
	return out
}

// knownStopped reports whether the process's exit is known (delivered or
// waiting): its task cannot be running.
func (l *ledger) knownStopped(key procKey, pid uint32) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, inc := range l.incs(key) {
		if inc.pid == pid && (inc.delivered || inc.exit != nil && inc.exit.source != fromGuess) {
			return true
		}
	}
	return false
}

// needBarrier returns the next barrier to publish if news waits for one
// not yet published (0: none needed).
func (l *ledger) needBarrier() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	for inc := range l.waiting {
		if inc.after == l.published {
			l.published++
			return l.published
		}
	}
	return 0
}

// waitingOn reports whether news waits for an echo of a published barrier.
func (l *ledger) waitingOn() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for inc := range l.waiting {
		if inc.after < l.published {
			return true
		}
	}
	return false
}

// nextBarrier reserves a barrier number (for the live probe and re-sends).
func (l *ledger) nextBarrier() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.published++
	return l.published
}

// setLive marks the stream down (false) or up.
func (l *ledger) setLive(live bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if live && !l.live {
		l.epoch++
		l.liveAt = time.Now()
	}
	l.live = live
}

// liveEpoch counts the times the stream went live.
func (l *ledger) liveEpoch() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch
}

// liveSince returns the live count and when the stream last went live.
func (l *ledger) liveSince() (uint64, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.epoch, l.liveAt
}

// echo takes a barrier that came back through the stream and returns the
// exits it releases, in the order their news arrived per container.
func (l *ledger) echo(seq uint64) []types.EventInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq > l.echoed {
		l.echoed = seq
	}
	if !l.live {
		return nil
	}
	var ready []*incarnation
	for inc := range l.waiting {
		if inc.after < seq && !inc.delivered {
			ready = append(ready, inc)
		}
	}
	sort.Slice(ready, func(i, j int) bool { return ready[i].order < ready[j].order })
	out := make([]types.EventInfo, 0, len(ready))
	for _, inc := range ready {
		key := l.waiting[inc]
		news := inc.exit
		l.markDelivered(key, inc, news.at)
		if news.source == fromGuess {
			// No time was ever known: a later real report must not look
			// like a new process.
			inc.deliveredAt = time.Time{}
		}
		out = append(out, types.EventInfo{
			ContainerID: key.containerID, ProcessID: key.processID, Pid: inc.pid,
			ExitCode: news.code, ExitedAt: news.at,
		})
		l.settle(key, inc)
	}
	return out
}

// retire queues a deleted container's end for dropping, and drops the
// oldest beyond the bound (unless its ID is in use again).
func (l *ledger) retire(containerID string) {
	if _, ok := l.ends[containerID]; !ok {
		return
	}
	l.retired = append(l.retired, containerID)
	for len(l.retired) > retiredEnds {
		old := l.retired[0]
		l.retired = l.retired[1:]
		if _, inUse := l.procs[old]; !inUse {
			delete(l.ends, old)
		}
	}
}

// forgetContainer drops everything of a container deleted through this
// client: none of its processes can exit any more.
func (l *ledger) forgetContainer(containerID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.retire(containerID)
	for processID, list := range l.procs[containerID] {
		for _, inc := range append([]*incarnation(nil), list...) {
			if inc.delivered || inc.exit == nil {
				l.remove(procKey{containerID, processID}, inc)
			}
		}
	}
}
