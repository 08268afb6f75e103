// Package ledger decides which process exits a libcontainerd client delivers
// to its backend. It is a pure state machine: no goroutines, no I/O, no
// clock. The client feeds it what each source says (values in) and carries
// out what it asks for (values out); etcd's raft package is the model.
//
// # Sources
//
// Six sources learn that a process ended, and they race: the event stream
// (TaskExit, TaskDelete), the answers to this client's own calls (Delete,
// DeleteProcess, Wait, Start, Status), the shim watch while containerd is
// down, and containerd's Get asked by the reconciler. Each reports to the
// ledger; only the ledger decides.
//
// # Identity, not inference
//
// An incarnation (ID) is one process's life under a key (container, process)
// from its create or first sighting to its forgetting. News is matched to an
// incarnation by what the client's own handle holds (its ID), or by key and
// pid among the incarnations containerd still has; a pid names a process only
// while containerd keeps it. News the ledger cannot place (an exit or a start
// of a process it does not hold) is checked with containerd (Get: is this
// container's process with this pid the one that stopped, with this code?)
// before it counts; otherwise it is dropped. No rule compares wall-clock
// times, and nothing of a process is remembered past its delete but what
// the ledger knew of the last few execs of this client's per container,
// while the container's task lives: an exit record (a re-send of it is a
// copy, not the exit of a new exec under a reused ID), or that the exec's
// fate was unknown (a re-sent exit is its own, delivered late): bury.
//
// # Rules
//
//   - An exit is delivered once per incarnation that ran, and only for one
//     that ran: a created process that never started gets none.
//   - An exit the stream carries, of an incarnation known to have run, is
//     delivered at once, in stream order. Any other news waits for a
//     barrier: a sentinel the client publishes after the news, whose echo
//     proves every event containerd had published before was delivered
//     first. While the stream is down nothing is released.
//   - The first real exit code reported stands; a guess (255, the process
//     confirmed gone with its code unknown) only fills in where nothing real
//     came, and never while a delete, kill-wait or start of this client's
//     for that process is in flight (its answer may carry the code).
//   - An incarnation is forgotten once containerd no longer has it (deleted,
//     its task gone, or confirmed gone) and its exit is delivered or it never
//     ran, with none of this client's calls on it in flight. So memory is
//     the processes alive, awaiting delivery, or awaiting their delete.
//   - A delete whose outcome was unknown is finished later for the
//     incarnation it was for, and only if containerd still shows that
//     process; any later answer, delete event or NotFound cancels it.
//
// # Driving it
//
// The client holds one Ledger under a mutex, calls an input method for each
// piece of news, then Ready for what to do. Deliveries only ever result from
// inputs of the stream reader (StreamExit, StreamDelete, Echo), so the
// reader queues them in the order the ledger decided.
package ledger

import (
	"fmt"
	"sort"
	"time"
)

// Key names a process: the init process has Process == Container.
type Key struct{ Container, Process string }

// InitKey is the key of container id's init process.
func InitKey(id string) Key { return Key{id, id} }

// IsInit reports whether k names an init process.
func (k Key) IsInit() bool { return k.Process == k.Container }

// ID names one incarnation; 0 is none.
type ID uint64

// Ref is what a handle knows of its process: the incarnation the ledger gave
// it (0 if none: a handle loaded from containerd), its key and its pid.
type Ref struct {
	ID  ID
	Key Key
	Pid uint32
}

// Source says where an exit came from.
type Source uint8

// The sources of exit news, in no order of precedence (a real code beats a
// guess; otherwise the first report stands).
const (
	FromStream    Source = iota // TaskExit or TaskDelete on the event stream
	FromAnswer                  // the answer to one of this client's calls
	FromShim                    // the shim itself, while containerd was down
	FromReconcile               // containerd's Get
	FromGuess                   // confirmed gone, code unknown: 255
)

func (s Source) String() string {
	switch s {
	case FromStream:
		return "event stream"
	case FromAnswer:
		return "answer"
	case FromShim:
		return "shim"
	case FromReconcile:
		return "reconcile"
	}
	return "guess"
}

// GuessCode is the exit code of a process confirmed gone whose code nobody
// knows, as moby reports exits it cannot know.
const GuessCode = 255

// Exit is an exit to deliver. A guess has a zero At: the client stamps it.
type Exit struct {
	ID     ID
	Key    Key
	Pid    uint32
	Code   uint32
	At     time.Time
	Source Source
}

// Status is what containerd (or a shim) says of a process.
type Status uint8

// Process states a Report carries.
const (
	Gone    Status = iota // NotFound: containerd does not have it
	Created               // created, not started
	Running               // running or paused
	Stopped               // exited; Code and At say how
)

// Report is containerd's (or a shim's) answer about one key: its process's
// status and pid (another pid than the one asked about means the process
// asked about is gone).
type Report struct {
	Status Status
	Pid    uint32
	Code   uint32
	At     time.Time
}

// Check asks the client to Get the process under Key and answer CheckAnswer
// (or CheckFailed) with Token. Pid is the process the ledger has in mind
// (0: not known yet).
type Check struct {
	Token uint64
	Key   Key
	Pid   uint32
}

// Finish asks the client to finish a delete whose outcome was unknown: once
// its grace has passed and FinishPending still says so, Get the key, and
// delete only if containerd still shows Pid.
type Finish struct {
	ID  ID
	Key Key
	Pid uint32
}

// Watch is a process whose exit the shim watch is to listen for while
// containerd is down (Pid 0: an exec whose pid is not known yet).
type Watch struct {
	Key Key
	Pid uint32
}

// Ready is what the ledger asks of the client after an input.
type Ready struct {
	// Deliver lists exits for the backend, in order.
	Deliver []Exit
	// Barrier: news waits for a barrier not yet published (NeedBarrier).
	Barrier bool
	// Checks: questions for containerd wait (TakeChecks).
	Checks bool
	// Finish lists deletes to finish after their grace.
	Finish []Finish
	// Watch: the set of processes to watch changed (Watched).
	Watch bool
}

// String is the key as logs show it: the container ID for an init,
// container/exec for an exec.
func (k Key) String() string {
	if k.IsInit() {
		return k.Container
	}
	return k.Container + "/" + k.Process
}

type ran uint8

const (
	ranNo    ran = iota // created, not started (or not known to have started)
	ranMaybe            // a start whose outcome is unknown, or seen on the stream and not yet confirmed
	ranYes              // confirmed started
)

type checkState uint8

const (
	checkNone     checkState = iota
	checkWanted              // to be handed out by TakeChecks
	checkInFlight            // handed out, no answer yet
	checkAgain               // handed out, and wanted again after the answer
)

type news struct {
	code   uint32
	at     time.Time
	source Source
	pid    uint32 // the pid it named
}

type proc struct {
	id  ID
	key Key
	pid uint32 // 0: not known yet (an exec before its start, a task being restored)
	// pidSure: an answer or containerd named pid (not only the stream).
	pidSure bool
	task    *proc // an exec's task: its init's incarnation (nil: not known)
	ours    bool  // a handle of this client holds it; it will delete it
	// handleOnly: registered by the delete of a handle loaded from
	// containerd (DeleteBegin), to hold that delete's outcome; nothing says
	// the process still runs, so what the stream says goes elsewhere.
	handleOnly bool
	ran        ran
	// seen: a start only the stream reported, not yet confirmed by
	// containerd: its exit counts once it is.
	seen bool
	news *news // the best exit news not delivered yet
	done *news // the exit delivered
	// waiting: news waits for the first echo past barrier after.
	waiting      bool
	after, order uint64
	delivered    bool
	deleted      bool   // containerd no longer has it
	goneAt       uint64 // when the ledger learned it was deleted
	// startRead: the stream carried its start.
	startRead bool
	// streamDone: the stream carried its init's TaskDelete, the last it
	// says of it, or a barrier published after it was gone came back;
	// until then a deleted init lingers (see settle).
	streamDone bool
	lingering  bool
	// added: the stream carried this exec's TaskExecAdded. One shim
	// publishes a task's events in order, and an exec ID names one exec at
	// a time: what the stream says of the key after it is this exec's.
	added   bool
	addedAt uint64 // when added was set
	// stash keeps the exits the stream carried of the key since this
	// exec's add while its start's answer is on its way: placed once the
	// answer names its pid.
	stash []news
	// addDone: this client's exec add was answered: containerd has this
	// exec under its key.
	addDone   bool
	addDoneAt uint64 // when addDone was set
	ops       int    // this client's start, delete or kill-wait calls in flight
	// starting: a start of this client's is in flight (an exec's add and
	// start, or a task's start).
	starting bool
	check    checkState
	// asked is when its check was handed out; touched when the ledger last
	// learned of its start or exit: an answer to a check asked before then
	// may not reflect it.
	asked, touched uint64
	born           uint64 // when the ledger first held it
	epoch          uint64 // the stream's epoch then
	finish         bool   // a delete with an unknown outcome is to be finished
}

// exited reports whether p's exit is known (delivered, or real news waits).
func (p *proc) exited() bool {
	return p.delivered || p.news != nil && p.news.source != FromGuess
}

// exitRecord returns p's real exit record, delivered or waiting; nil if
// none (a guess is no record).
func (p *proc) exitRecord() *news {
	n := p.done
	if n == nil {
		n = p.news
	}
	if n == nil || n.source == FromGuess {
		return nil
	}
	return n
}

// sameRecord reports whether two exit records (code, and the time the shim
// stamped, where both have one) are the same process's.
func sameRecord(code uint32, at time.Time, code2 uint32, at2 time.Time) bool {
	return code == code2 && (at.IsZero() || at2.IsZero() || at.Equal(at2))
}

// sameExit reports whether an exit with code at time at is p's own exit,
// the one delivered or waiting: the same process's record, stamped by its
// shim (not a comparison of two processes' clocks).
func (p *proc) sameExit(code uint32, at time.Time) bool {
	n := p.exitRecord()
	return n != nil && sameRecord(n.code, n.at, code, at)
}

// otherExit reports whether p's exit is known (delivered, or real news
// waiting) with a record other than code at time at: an exit record of
// another process.
func (p *proc) otherExit(code uint32, at time.Time) bool {
	n := p.exitRecord()
	return n != nil && !sameRecord(n.code, n.at, code, at)
}

// confirm is a piece of news the ledger could not place, waiting for
// containerd to say whether it is about the process it shows.
type confirm struct {
	key   Key
	pid   uint32
	code  uint32
	at    time.Time
	check checkState
	asked uint64
	born  uint64 // when the stream carried it
}

// Ledger is the exit state of one client. The zero value is not usable:
// call New. It is not safe for concurrent use.
type Ledger struct {
	ctrs     map[string]map[string][]*proc // container → process → incarnations, oldest first
	byID     map[ID]*proc
	confirms map[uint64]*confirm
	last     uint64 // last ID or token handed out
	tick     uint64 // counts inputs (proc.asked, proc.touched)
	// published is the newest barrier published; live says the stream is
	// up and caught up to its first echo.
	published uint64
	live      bool
	epoch     uint64 // counts the times the stream went live
	closed    bool
	news      uint64             // news counter (proc.order)
	waiting   map[*proc]struct{} // procs whose news waits for a barrier
	lingering map[*proc]struct{} // deleted inits the stream may still speak of
	// past: per container, the last execs of this client's forgotten
	// while the container had processes the ledger holds (bury); dropped
	// with the last of them, when the task's shim is gone or going.
	past   map[string][]pastExec
	wanted []uint64 // checks to hand out
	ready  Ready
}

// New returns an empty ledger; the stream is not live yet.
func New() *Ledger {
	return &Ledger{
		ctrs:      map[string]map[string][]*proc{},
		byID:      map[ID]*proc{},
		confirms:  map[uint64]*confirm{},
		waiting:   map[*proc]struct{}{},
		lingering: map[*proc]struct{}{},
		past:      map[string][]pastExec{},
	}
}

// Size is how many incarnations and unplaced news the ledger holds: 0 once
// every process it knew is deleted and its exit settled.
func (l *Ledger) Size() int { return len(l.byID) + len(l.confirms) }

// Ready returns what the client is to do, and resets it.
func (l *Ledger) Ready() Ready {
	rd := l.ready
	l.ready = Ready{}
	if l.closed {
		rd.Deliver = nil
	}
	return rd
}

// Close stops all deliveries: the client is closing.
func (l *Ledger) Close() { l.closed = true }

// Live reports whether the stream is live.
func (l *Ledger) Live() bool { return l.live }

func (l *Ledger) nextToken() uint64 {
	l.last++
	return l.last
}

// list returns the incarnations held under key, oldest first.
func (l *Ledger) list(key Key) []*proc { return l.ctrs[key.Container][key.Process] }

// container returns the incarnations of a container's processes, a copy
// the caller may change the ledger under.
func (l *Ledger) container(id string) []*proc {
	var out []*proc
	for _, list := range l.ctrs[id] {
		out = append(out, list...)
	}
	sortByID(out)
	return out
}

// sortByID orders incarnations by age, so that what the ledger asks for
// never depends on map order: the same inputs give the same outputs.
func sortByID(ps []*proc) {
	sort.Slice(ps, func(i, j int) bool { return ps[i].id < ps[j].id })
}

// all returns every incarnation, oldest first.
func (l *Ledger) all() []*proc {
	out := make([]*proc, 0, len(l.byID))
	for _, p := range l.byID {
		out = append(out, p)
	}
	sortByID(out)
	return out
}

// inSet returns a set's incarnations, oldest first.
func inSet(set map[*proc]struct{}) []*proc {
	out := make([]*proc, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sortByID(out)
	return out
}

func (l *Ledger) add(p *proc) *proc {
	p.id = ID(l.nextToken())
	p.pidSure = p.pid != 0 && !p.seen
	p.touched, p.born, p.epoch = l.tick, l.tick, l.epoch
	m := l.ctrs[p.key.Container]
	if m == nil {
		m = map[string][]*proc{}
		l.ctrs[p.key.Container] = m
	}
	m[p.key.Process] = append(m[p.key.Process], p)
	l.byID[p.id] = p
	l.ready.Watch = true
	return p
}

func (l *Ledger) remove(p *proc) {
	m := l.ctrs[p.key.Container]
	list := m[p.key.Process]
	for i, x := range list {
		if x == p {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(m, p.key.Process)
	} else {
		m[p.key.Process] = list
	}
	if len(m) == 0 {
		delete(l.ctrs, p.key.Container)
		delete(l.past, p.key.Container)
	} else if !p.key.IsInit() && p.ours {
		l.bury(p)
	}
	delete(l.byID, p.id)
	l.unwait(p)
	if p.lingering {
		p.lingering = false
		delete(l.lingering, p)
	}
	l.unstash(p)
}

// pastExecs is how many forgotten execs of a container the ledger keeps
// (past).
const pastExecs = 8

// pastExec is what the ledger keeps of an exec of this client's it has
// forgotten: its ID and pid, and the exit delivered for it (guess: a 255
// guessed, no record to match) or, with unknown, that none was: its start's
// answer was lost and it went before anything said whether it ran.
type pastExec struct {
	process string
	pid     uint32 // 0: never named (unknown)
	code    uint32
	at      time.Time
	guess   bool
	unknown bool
}

// bury keeps what the ledger knows of p, an exec of this client's being
// forgotten while its container's task may still have a shim. A caller may
// reuse its exec ID (a daemon retrying a failed exec), and the shim may
// still re-send p's exit (published while containerd was down) after the
// new exec's add. A re-send with p's exit record (or, for a guess, its pid)
// is a copy of p's, not the new exec's exit; and one of an exec whose fate
// was unknown is its exit, delivered late (claimPast).
func (l *Ledger) bury(p *proc) {
	x := pastExec{process: p.key.Process, pid: p.pid}
	switch n := p.exitRecord(); {
	case p.delivered && n != nil && p.pid != 0:
		x.code, x.at = n.code, n.at
	case p.delivered && p.pid != 0:
		x.guess = true
	case !p.delivered && p.ran == ranMaybe:
		x.unknown = true
	default:
		return
	}
	past := l.past[p.key.Container]
	if len(past) == pastExecs {
		past = append(past[:0], past[1:]...)
	}
	l.past[p.key.Container] = append(past, x)
}

// buried reports whether an exit of key with pid, code and time at is the
// record of an exec of this client's the ledger has forgotten, whose exit
// was delivered. (A new exec that got the same pid exits at another time.)
func (l *Ledger) buried(key Key, pid, code uint32, at time.Time) bool {
	for _, x := range l.past[key.Container] {
		if x.process == key.Process && x.pid == pid && !x.unknown && (x.guess || sameRecord(x.code, x.at, code, at)) {
			return true
		}
	}
	return false
}

// claimPast takes an exit of key with pid the ledger cannot place as the
// exit of the oldest exec of this client's under key it forgot with its fate
// unknown (its start's answer lost, gone before anything said it ran): the
// shim re-sent it after the ledger let go. Only this client's exec held
// that ID then, and an exec exits only once started. It reports whether
// there was one; the exit is delivered after a barrier, as any.
func (l *Ledger) claimPast(key Key, pid, code uint32, at time.Time) bool {
	if key.IsInit() || l.buried(key, pid, code, at) {
		return false
	}
	past := l.past[key.Container]
	for i, x := range past {
		if x.process != key.Process || !x.unknown || x.pid != 0 && x.pid != pid {
			continue
		}
		l.past[key.Container] = append(past[:i:i], past[i+1:]...)
		p := l.add(&proc{key: key, pid: pid, ours: true, ran: ranYes, deleted: true, streamDone: true})
		l.learn(p, news{code: code, at: at, source: FromStream})
		return true
	}
	return false
}

func (l *Ledger) unwait(p *proc) {
	if p.waiting {
		p.waiting = false
		delete(l.waiting, p)
	}
}

// touch notes that the ledger learned of p's start or exit now.
func (l *Ledger) touch(p *proc) { p.touched = l.tick }

// find returns the incarnation of key with pid that containerd has, as far
// as the ledger knows, else the newest deleted one; nil if none.
func (l *Ledger) find(key Key, pid uint32) *proc {
	if pid == 0 {
		return nil
	}
	var deleted *proc
	list := l.list(key)
	for i := len(list) - 1; i >= 0; i-- {
		p := list[i]
		if p.pid != pid {
			continue
		}
		if !p.deleted {
			return p
		}
		if deleted == nil {
			deleted = p
		}
	}
	return deleted
}

// findStream returns the incarnation an event the stream carried of key
// and pid speaks of. The stream is in order: an init's events speak of the
// oldest incarnation with that pid whose TaskDelete it has not carried yet
// (a new task that reused the pid comes after the old one's delete). Exec
// IDs are not reused while a delete could still be on its way, so an exec's
// events speak of the incarnation find returns.
func (l *Ledger) findStream(key Key, pid uint32) *proc {
	if pid == 0 {
		return nil
	}
	if !key.IsInit() {
		if p := l.find(key, pid); p != nil && !p.handleOnly {
			return p
		}
		return nil
	}
	for _, p := range l.list(key) {
		if p.pid == pid && !p.streamDone && !p.handleOnly {
			return p
		}
	}
	return nil
}

// pending returns this client's incarnation of key whose pid is not known
// yet and whose start may still be reported: an exec being started whose
// add the stream has carried, a task being restored. A start or exit the
// stream carries of key with a pid is about it.
func (l *Ledger) pending(key Key) *proc {
	list := l.list(key)
	for i := len(list) - 1; i >= 0; i-- {
		p := list[i]
		// Gone already is no exception: a start in flight, or one whose
		// answer was lost, may have run before its task went.
		if p.pid != 0 || !p.ours || !p.starting && p.ran != ranMaybe {
			continue
		}
		if key.IsInit() && p.starting || !key.IsInit() && p.added {
			return p
		}
	}
	return nil
}

// place finds the incarnation what the stream carried of key and pid is
// about; a start binds its pid to this client's pending incarnation of key
// (the pid the stream named gives way to the one the start's answer names,
// with the news of it: setPid). An exit is not bound so: a shim's re-send of
// an older exec's can overtake; it is kept until an answer names the pid
// (stash).
func (l *Ledger) place(key Key, pid uint32, start bool) *proc {
	if pid == 0 {
		return nil // an exec deleted before it started: nothing to place
	}
	if p := l.findStream(key, pid); p != nil {
		return p
	}
	if p := l.pending(key); p != nil && start {
		l.setPid(p, pid, false)
		return p
	}
	return nil
}

// setPid records p's pid as an answer or containerd (sure) or the stream
// named it. A pid the stream named gives way to one an answer names (a
// shim's re-sent event can overtake newer ones), and news of the exit of
// the pid it gave way from is not this process's.
func (l *Ledger) setPid(p *proc, pid uint32, sure bool) {
	if pid == 0 || p.pid != 0 && p.pidSure {
		return
	}
	if p.pid == pid {
		// The stream named it first: now it is sure, and the exits kept
		// for it can be placed.
		if sure {
			p.pidSure = true
			l.unstash(p)
		}
		return
	}
	old := p.pid
	p.pid, p.pidSure = pid, sure
	l.touch(p)
	l.ready.Watch = true
	if n := p.news; old != 0 && n != nil && n.pid == old && n.source != FromGuess {
		p.news = nil
		l.unwait(p)
		l.unplaced(p.key, old, n.code, n.at)
	}
	if sure {
		l.unstash(p)
	}
}

// unstash places the exits kept for p: one of its pid is its own (a new
// process gets no pid whose events are still on their way); the rest is
// news the ledger cannot place.
func (l *Ledger) unstash(p *proc) {
	stash := p.stash
	p.stash = nil
	for _, n := range stash {
		if n.pid == p.pid && p.pid != 0 && l.byID[p.id] == p {
			if (p.ran == ranMaybe || p.starting) && !p.key.IsInit() {
				l.ranNow(p) // an exec has a pid only once started: it ran
			}
			l.learn(p, news{code: n.code, at: n.at, source: FromStream})
		} else {
			l.unplaced(p.key, n.pid, n.code, n.at)
		}
	}
}

// stashedPid returns the one pid the exits kept for p name, if they name
// one.
func (p *proc) stashedPid() (uint32, bool) {
	if len(p.stash) == 0 {
		return 0, false
	}
	pid := p.stash[0].pid
	for _, n := range p.stash[1:] {
		if n.pid != pid {
			return 0, false
		}
	}
	return pid, pid != 0
}

// startingExec returns this client's exec under key whose pid no answer has
// named yet (its start's answer on its way, or lost), its add carried by the
// stream: an exit of the key the stream carries now is kept for it.
func (l *Ledger) startingExec(key Key) *proc {
	if key.IsInit() {
		return nil
	}
	for _, p := range l.list(key) {
		if p.ours && p.pid == 0 && p.added && (p.starting || p.ran == ranMaybe) {
			return p
		}
	}
	return nil
}

func (l *Ledger) resolve(ref Ref) *proc {
	if ref.ID != 0 {
		return l.byID[ref.ID]
	}
	if p := l.find(ref.Key, ref.Pid); p != nil && !p.deleted {
		return p
	}
	return nil
}

// want asks for a check of p.
func (l *Ledger) want(p *proc) {
	switch p.check {
	case checkNone:
		p.check = checkWanted
		l.wanted = append(l.wanted, uint64(p.id))
		l.ready.Checks = true
	case checkInFlight:
		p.check = checkAgain
	}
}

// learn records news of p's exit. News of an incarnation not known to have
// run is kept until its start is settled; news of one that ran waits for a
// barrier.
func (l *Ledger) learn(p *proc, n news) {
	if p.delivered {
		return
	}
	if p.news != nil && (p.news.source != FromGuess || n.source == FromGuess) {
		return // the first real report stands
	}
	n.pid = p.pid
	p.news = &n
	if n.source != FromGuess {
		l.touch(p)
	}
	l.ready.Watch = true
	l.release(p)
}

// release queues p's news for the next barrier if p ran.
func (l *Ledger) release(p *proc) {
	if p.news == nil || p.ran != ranYes || p.delivered {
		return
	}
	if !p.waiting {
		p.waiting = true
		l.waiting[p] = struct{}{}
	}
	p.after = l.published
	l.news++
	p.order = l.news
	l.ready.Barrier = true
}

// ranNow marks p as confirmed started.
func (l *Ledger) ranNow(p *proc) {
	if p.ran == ranYes {
		return
	}
	p.ran, p.seen = ranYes, false
	l.touch(p)
	l.ready.Watch = true
	l.release(p)
}

// deliver hands p's exit to the backend now (stream order).
func (l *Ledger) deliver(p *proc, n news) {
	l.touch(p)
	p.delivered = true
	p.done, p.news = &n, nil
	l.unwait(p)
	if !l.closed {
		l.ready.Deliver = append(l.ready.Deliver, Exit{ID: p.id, Key: p.key, Pid: p.pid, Code: n.code, At: n.at, Source: n.source})
	}
	l.ready.Watch = true
	// News still being checked with containerd that is this exit is a
	// copy of it.
	for token, c := range l.confirms {
		if c.key == p.key && c.pid == p.pid && p.sameExit(c.code, c.at) {
			delete(l.confirms, token)
		}
	}
}

// gone records that containerd no longer has p, nor (for an init) its
// task's execs.
func (l *Ledger) gone(p *proc) {
	if p.deleted {
		return
	}
	p.deleted, p.finish, p.goneAt = true, false, l.tick
	l.ready.Watch = true
	if pid, ok := p.stashedPid(); ok && p.pid == 0 && !p.starting {
		// Gone before any answer named its pid, and the exits the
		// stream carried of the key since its add all name one: its
		// own (nothing else can name it any more). While its start is
		// in flight, that start's answer decides (StartUnknown).
		l.setPid(p, pid, true)
	}
	if p.key.IsInit() {
		l.execsGone(p)
	}
	l.settle(p)
}

// execsGone settles the execs of the task whose init is p; an exec whose
// task the ledger does not know is asked about.
func (l *Ledger) execsGone(init *proc) {
	for _, q := range l.container(init.key.Container) {
		switch {
		case q.key.IsInit() || q.deleted:
		case q.task == init:
			l.gone(q)
		case q.task == nil:
			l.want(q)
		}
	}
}

// settle makes the guess p is owed, or forgets p, once nothing of this
// client's is in flight on it.
func (l *Ledger) settle(p *proc) {
	if !p.deleted || p.ops > 0 {
		return
	}
	switch {
	case p.ran == ranYes && !p.delivered && p.news == nil:
		// Confirmed gone and nobody knows its code: a guess, after a
		// barrier so that a real exit still on its way wins.
		l.learn(p, news{code: GuessCode, source: FromGuess})
	case p.seen && p.ran == ranMaybe && (p.check == checkInFlight || p.check == checkAgain):
		// Seen starting, and containerd asked before it went: its
		// answer may confirm it ran (checked).
	case p.delivered, p.ran != ranYes:
		// Delivered; or never known to have run (a start never
		// confirmed before its process went: its exit cannot be known).
		if !p.streamDone && (p.key.IsInit() && p.pid != 0 || p.ours && p.ran == ranMaybe) {
			// The stream may still carry what the task said before its
			// delete (or, of a start whose outcome is unknown, that it
			// started): kept until its TaskDelete, or a barrier, comes.
			if !p.lingering {
				p.lingering = true
				l.lingering[p] = struct{}{}
				p.after = l.published
				l.ready.Barrier = true
			}
			return
		}
		l.remove(p)
	}
}

// containerGone settles everything the ledger holds of a container:
// containerd has no task for it.
func (l *Ledger) containerGone(container string) {
	for _, p := range l.container(container) {
		l.gone(p)
	}
}

// taskGone settles the task whose init has pid in the container, as an
// answer that names it by pid says (0: one the ledger does not hold); an
// exec whose task the ledger does not know is asked about.
func (l *Ledger) taskGone(container string, pid uint32) {
	if init := l.find(InitKey(container), pid); init != nil && pid != 0 {
		l.gone(init)
		return
	}
	for _, q := range l.container(container) {
		if !q.key.IsInit() && !q.deleted && q.task == nil {
			l.want(q)
		}
	}
}

// Describe says what the ledger holds under key, for debug logs.
func (l *Ledger) Describe(key Key) string {
	var b []byte
	for _, p := range l.list(key) {
		b = fmt.Appendf(b, "[#%d pid %d ran=%d seen=%v starting=%v ops=%d news=%v delivered=%v deleted=%v check=%d] ",
			p.id, p.pid, p.ran, p.seen, p.starting, p.ops, p.news != nil, p.delivered, p.deleted, p.check)
	}
	return string(b)
}
