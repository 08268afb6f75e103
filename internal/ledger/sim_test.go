package ledger

// A deterministic simulation of everything that races to tell a client about
// exits: containerd and its shims (processes that start, exit, are killed,
// deleted; events published, lost in outages, held and re-sent across a
// freeze; a 1.7-style restart that deletes tasks whose processes died while
// it was down, and its clean-up that re-publishes an exit with 137 after a
// delete cut off by a kill), this client's calls (each RPC takes effect or
// not, its answer arrives late or is lost), the reconciler's questions and
// their lagging answers, the shim watch, another client creating, restarting
// and deleting the same IDs, pids reused, clocks stepping both ways, and
// Close. A seeded scheduler interleaves them; after each schedule the
// invariants are checked. The client side follows the protocol the root
// package drives the ledger with (see ../../ledger.go's callers); a change
// there is mirrored here.
//
// A failure prints its seed and the command that replays it with a trace:
//
//	go test ./internal/ledger -run 'TestSimulation$' -sim.seed=N -sim.trace

import (
	"flag"
	"fmt"
	"math/rand"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"testing"
	"time"
)

var debugSim = false

var debugKey = "a"

var (
	simSeed      = flag.Int64("sim.seed", 0, "replay this seed only")
	simSchedules = flag.Int("sim.schedules", 0, "schedules to run (default: 100000, or LCD_SIM_SCHEDULES)")
	simTrace     = flag.Bool("sim.trace", false, "print the trace of every schedule run")
)

// wstatus is a process's state in the simulated containerd.
type wstatus uint8

const (
	wCreated wstatus = iota
	wRunning
	wStopped
)

// wproc is one process of the simulated world, with what the oracle knows
// of it.
type wproc struct {
	n        int // serial, for traces
	key      Key
	pid      uint32
	status   wstatus
	code     uint32
	at       time.Time // its exit time: unique, in no particular order (clocks step)
	exitStep int       // the step it exited at
	lastRead int       // the step the reader last read an event of it
	deleted  bool      // containerd no longer has it
	ours     bool
	ran      bool // its start took effect
	task     *wtask
	// oracle
	evidence  bool   // a source told the ledger it ran (so its exit is owed)
	realFed   bool   // a source gave the ledger its real code
	realFirst bool   // ... before its exit was delivered
	exits     []Exit // what the backend got
	exitIdx   []int  // their places in the backend's log
	newsEnq   int    // the stream's enqueue serial when the ledger first heard of its exit
	startEnq  int    // enqueue serial of its start event on our stream (0: none)
	startDrop bool   // that start event was lost with a broken stream
	startIdx  int    // its start's place in the backend's log (-1: none)
	// aliased: containerd showed another process under its key with its
	// pid (the pid reused while the client could not see, in an outage
	// that ended and deleted this one): nothing the API says tells them
	// apart, so its exit may go missing.
	aliased bool
}

type wtask struct {
	init  *wproc
	execs map[string]*wproc
	ours  bool
	// diedInOutage: its init exited while containerd was down (a 1.7
	// restart deletes such a task, publishing nothing).
	diedInOutage bool
	// cutDelete: a delete of it took effect with its answer cut off by a
	// kill; the restarted containerd's clean-up re-publishes the exit.
	cutDelete bool
}

type evKind uint8

const (
	evCreate evKind = iota
	evAdded
	evStart
	evExit
	evDelete
	evOOM
	evSentinel
)

type env struct {
	kind evKind
	key  Key
	pid  uint32
	code uint32
	at   time.Time
	seq  uint64
	proc *wproc
	enq  int
}

type retry struct {
	e    env
	left int
}

// rpcResult is what a call's effect produced.
type rpcResult struct {
	code uint8 // rOK, rNotFound, rConflict, rExists, rFailed
	pid  uint32
	st   wstatus
	xc   uint32
	at   time.Time
	proc *wproc
	rep  Report // a Get's report
}

const (
	rOK uint8 = iota
	rNotFound
	rConflict
	rExists
	rFailed
)

// call is one RPC of a client operation: effect runs in containerd when the
// call is sent; then runs with the answer, or lost when none came.
type call struct {
	name   string
	effect func() rpcResult
	then   func(r rpcResult, lost bool)
	// waitUp: a clean-up's call waits for containerd instead of failing.
	waitUp bool
}

type op struct {
	n     int
	what  string
	cur   *call
	sent  bool
	res   rpcResult
	lost  bool
	noEff bool // it failed before taking effect
}

// handle is a handle of this client's.
type handle struct {
	ref  Ref
	proc *wproc
}

type checkAnswer struct {
	token uint64
	r     Report
	proc  *wproc
}

type pendingFinish struct {
	f     Finish
	h     *handle
	grace int
}

type bentry struct {
	start bool
	exit  Exit
	proc  *wproc
	ctr   string
	oom   bool
}

type sim struct {
	lastDump string
	t        testing.TB
	seed     int64
	rng      *rand.Rand
	l        *Ledger
	step     int
	trace    []string
	failed   bool

	// Knobs chosen per schedule.
	cleanDead  bool // 1.7+: restart deletes tasks whose init died in the outage
	execDelete bool // TaskDelete published for exec deletes (runc: false)

	up, frozen bool
	tasks      map[string]*wtask
	procs      []*wproc
	pidsInUse  map[uint32]bool
	atSeq      int64
	subscribed bool
	subDead    bool // the subscription's containerd died: the reader will notice
	stream     []env
	enq        int
	frozenQ    []env
	retries    []retry

	ops       []*op
	cur       *op // the op whose answer is being handled
	opN       int
	checks    []Check
	answers   []checkAnswer
	finishes  []pendingFinish
	handles   map[string]*handle // container → our task handle
	execs     map[*wproc]*handle
	byID      map[ID]*wproc
	closed    bool
	closeAt   int
	execN     int
	retryExec string // an exec ID whose Exec failed, to try again

	backend []bentry
	ooms    map[string][]int // container → enqueue serials of OOM events
}

var ourCtrs = []string{"a", "b"}

const foreignCtr = "x"

func newSim(t testing.TB, seed int64) *sim {
	s := &sim{
		t: t, seed: seed, rng: rand.New(rand.NewSource(seed)), l: New(),
		up: true, tasks: map[string]*wtask{}, pidsInUse: map[uint32]bool{},
		handles: map[string]*handle{}, execs: map[*wproc]*handle{}, byID: map[ID]*wproc{},
		ooms: map[string][]int{}, closeAt: -1,
	}
	s.cleanDead = s.rng.Intn(2) == 0
	s.execDelete = s.rng.Intn(4) == 0
	s.subscribe()
	return s
}

func (s *sim) logf(format string, args ...any) {
	s.trace = append(s.trace, fmt.Sprintf("%4d ", s.step)+fmt.Sprintf(format, args...))
}

func (s *sim) failf(format string, args ...any) {
	if s.failed {
		return
	}
	s.failed = true
	s.t.Errorf("seed %d: "+format+"\nreplay: go test ./internal/ledger -run 'TestSimulation$' -sim.seed=%d -sim.trace -v",
		append(append([]any{s.seed}, args...), s.seed)...)
}

// ---- the world ----

func (s *sim) newAt() time.Time {
	s.atSeq++
	// Unique, in random order: exit times of different processes say
	// nothing about which came first.
	return time.Unix(1_700_000_000+int64(s.rng.Intn(1_000_000))*1000+s.atSeq%1000, 0)
}

// allocPid gives a new process of container c a pid. A small pid space:
// pids are reused as soon as a process has exited. What the ledger assumes
// of time: the stream reader is never a whole create or start behind, and a
// shim's re-sends come within seconds, so a new process does not get the
// pid of one of its container's processes whose events are still to reach
// the reader, nor that of one a check's answer still on its way names.
func (s *sim) allocPid(c string) uint32 {
	unread := map[uint32]bool{}
	pending := append(append([]env(nil), s.stream...), s.frozenQ...)
	for _, r := range s.retries {
		pending = append(pending, r.e) // a shim's re-sends come within seconds
	}
	for _, e := range pending {
		if e.key.Container == c {
			unread[e.pid] = true
		}
	}
	// Nor one a check's answer on its way names: containerd answers
	// within moments.
	for _, a := range s.answers {
		if a.proc != nil && a.proc.key.Container == c && a.r.Pid != 0 {
			unread[a.r.Pid] = true
		}
	}
	// Nor one of its container's processes that exited, or whose events
	// were read, moments ago: the kernel hands pids out in turn, and comes
	// round only after a while.
	for _, p := range s.procs {
		if p.key.Container == c && p.status == wStopped && (s.step-p.exitStep < 40 || s.step-p.lastRead < 40) {
			unread[p.pid] = true
		}
	}
	for i := 0; i < 50; i++ {
		pid := uint32(1 + s.rng.Intn(6))
		if !s.pidsInUse[pid] && !unread[pid] {
			s.pidsInUse[pid] = true
			return pid
		}
	}
	for pid := uint32(7); ; pid++ {
		if !s.pidsInUse[pid] && !unread[pid] {
			s.pidsInUse[pid] = true
			return pid
		}
	}
}

func (s *sim) newProc(key Key, ours bool, t *wtask) *wproc {
	p := &wproc{n: len(s.procs), key: key, ours: ours, task: t, startIdx: -1}
	s.procs = append(s.procs, p)
	return p
}

// publish sends an event from a shim (or containerd) toward subscribers.
func (s *sim) publish(e env) {
	// A shim re-sends what it could not forward, for as long as it lives:
	// it goes with its task's delete.
	shimLives := e.proc == nil || !e.proc.task.init.deleted
	switch {
	case !s.up:
		if shimLives {
			s.retries = append(s.retries, retry{e: e, left: 1 + s.rng.Intn(3)})
		}
	case s.frozen:
		s.frozenQ = append(s.frozenQ, e)
		if shimLives && s.rng.Intn(2) == 0 {
			// The shim's forward timed out although containerd had it:
			// it sends it again later.
			s.retries = append(s.retries, retry{e: e, left: 1 + s.rng.Intn(3)})
		}
	default:
		s.dispatch(e)
	}
}

func (s *sim) dispatch(e env) {
	if !s.subscribed || s.subDead {
		if e.kind == evStart && e.proc != nil && e.proc.startEnq == 0 {
			e.proc.startDrop = true
		}
		return
	}
	s.enq++
	e.enq = s.enq
	if e.kind == evStart && e.proc != nil && e.proc.startEnq == 0 {
		e.proc.startEnq = e.enq
	}
	if e.kind == evOOM {
		s.ooms[e.key.Container] = append(s.ooms[e.key.Container], e.enq)
	}
	s.stream = append(s.stream, e)
}

func (s *sim) exitProc(p *wproc, code uint32) {
	if p.status == wStopped {
		return
	}
	p.status, p.code, p.at, p.exitStep = wStopped, code, s.newAt(), s.step
	delete(s.pidsInUse, p.pid)
	if !s.up && p.key.IsInit() {
		p.task.diedInOutage = true
	}
	s.logf("world: %s pid %d exits %d (#%d)", p.key, p.pid, code, p.n)
	if p.key.IsInit() {
		// The init's end kills the container's other processes; the old
		// shim may publish their exits after the init's.
		var others []*wproc
		for _, e := range sortedExecs(p.task) {
			if e.status == wRunning {
				e.status, e.code, e.at, e.exitStep = wStopped, 137, s.newAt(), s.step
				delete(s.pidsInUse, e.pid)
				others = append(others, e)
			}
		}
		late := s.rng.Intn(2) == 0
		if !late {
			for _, e := range others {
				s.publish(env{kind: evExit, key: e.key, pid: e.pid, code: e.code, at: e.at, proc: e})
			}
		}
		s.publish(env{kind: evExit, key: p.key, pid: p.pid, code: code, at: p.at, proc: p})
		if late {
			for _, e := range others {
				s.publish(env{kind: evExit, key: e.key, pid: e.pid, code: e.code, at: e.at, proc: e})
			}
		}
		return
	}
	s.publish(env{kind: evExit, key: p.key, pid: p.pid, code: code, at: p.at, proc: p})
}

func sortedExecs(t *wtask) []*wproc {
	ids := make([]string, 0, len(t.execs))
	for id := range t.execs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]*wproc, 0, len(ids))
	for _, id := range ids {
		out = append(out, t.execs[id])
	}
	return out
}

// lookup finds the process containerd has under key.
func (s *sim) lookup(key Key) *wproc {
	t := s.tasks[key.Container]
	if t == nil {
		return nil
	}
	if key.IsInit() {
		return t.init
	}
	return t.execs[key.Process]
}

// report is containerd's Get of key.
func (s *sim) report(key Key) (Report, *wproc) {
	p := s.lookup(key)
	if p == nil {
		return Report{Status: Gone}, nil
	}
	r := Report{Pid: p.pid}
	switch p.status {
	case wCreated:
		r.Status = Created
	case wRunning:
		r.Status = Running
	case wStopped:
		r.Status, r.Code, r.At = Stopped, p.code, p.at
	}
	return r, p
}

func (s *sim) deleteTask(c string) {
	t := s.tasks[c]
	delete(s.tasks, c)
	// The shim goes with its task, and its re-sends with it.
	kept := s.retries[:0]
	for _, r := range s.retries {
		if r.e.proc == nil || r.e.proc.task != t {
			kept = append(kept, r)
		}
	}
	s.retries = kept
	for _, e := range t.execs {
		e.deleted = true
		if e.status != wStopped {
			delete(s.pidsInUse, e.pid)
		}
	}
	t.init.deleted = true
	if t.init.status != wStopped {
		delete(s.pidsInUse, t.init.pid)
	}
}

// ---- the client's stream reader ----

func (s *sim) subscribe() {
	s.subscribed = true
	s.stream = nil
	seq := s.l.NextBarrier()
	s.logf("stream: subscribed, live probe %d", seq)
	s.dispatch(env{kind: evSentinel, seq: seq})
}

func (s *sim) readEvent() {
	e := s.stream[0]
	s.stream = s.stream[1:]
	if e.proc != nil {
		e.proc.lastRead = s.step
	}
	switch e.kind {
	case evCreate:
		s.logf("stream: create %s pid %d", e.key, e.pid)
	case evAdded:
		s.logf("stream: exec added %s", e.key)
		s.l.StreamExecAdded(e.key)
	case evSentinel:
		s.logf("stream: sentinel %d", e.seq)
		if !s.l.Live() {
			s.l.StreamLive()
		}
		s.l.Echo(e.seq)
	case evStart:
		if q := s.l.placeStream(e.key, e.pid, false); q != nil && debugSim {
			s.logf("   (placed on %d deleted=%v startRead=%v ran=%d delivered=%v)", q.id, q.deleted, q.startRead, q.ran, q.delivered)
		}
		s.logf("stream: start %s pid %d", e.key, e.pid)
		s.aliasStream(e)
		if e.proc != nil && e.proc.ours {
			s.evidence(e.proc, "stream start")
		}
		last := s.l.last
		s.l.StreamStart(e.key, e.pid)
		s.mapNew(last, e.proc)
		if e.proc != nil && !e.proc.deleted {
			s.heldAsRun(e.proc, "stream start")
		}
		s.toBackend(bentry{start: true, proc: e.proc, ctr: e.key.Container})
	case evExit:
		if q := s.l.placeStream(e.key, e.pid, false); q != nil && debugSim {
			s.logf("   (placed on %d deleted=%v startRead=%v ran=%d delivered=%v)", q.id, q.deleted, q.startRead, q.ran, q.delivered)
		}
		s.logf("stream: exit %s pid %d code %d", e.key, e.pid, e.code)
		if debugSim {
			s.dumpKey("at exit", e.key)
		}
		s.aliasStream(e)
		s.noteNews(e.proc, e.code, e.at)
		s.execRan(e)
		s.l.StreamExit(e.key, e.pid, e.code, e.at)
	case evDelete:
		s.logf("stream: delete %s pid %d code %d", e.key, e.pid, e.code)
		s.aliasStream(e)
		s.noteNews(e.proc, e.code, e.at)
		s.execRan(e)
		s.l.StreamDelete(e.key, e.pid, e.code, e.at)
	case evOOM:
		s.logf("stream: oom %s", e.key.Container)
		s.toBackend(bentry{oom: true, ctr: e.key.Container})
	}
	s.ready()
}

// execRan notes that the stream told the ledger this client's exec ran (an
// exec has a pid only once started), if the ledger still holds that exec: a
// shim's re-send after the exec was deleted and forgotten, its fate never
// named by an answer, is news of a process containerd no longer has.
func (s *sim) execRan(e env) {
	if e.proc == nil || !e.proc.ours || e.key.IsInit() || e.pid == 0 {
		return
	}
	if p := s.l.startingExec(e.key); p != nil || s.l.find(e.key, e.pid) != nil {
		s.evidence(e.proc, "stream exit of an exec")
	}
}

func (s *sim) dumpKey(what string, k Key) {
	for _, p := range s.l.list(k) {
		s.logf("   %s: id=%d pid=%d sure=%v ran=%d seen=%v news=%+v delivered=%v deleted=%v ours=%v addDone=%v added=%v stash=%d ops=%d starting=%v check=%d", what, p.id, p.pid, p.pidSure, p.ran, p.seen, p.news, p.delivered, p.deleted, p.ours, p.addDone, p.added, len(p.stash), p.ops, p.starting, p.check)
	}
}

func (s *sim) toBackend(b bentry) {
	if s.closed {
		return
	}
	if b.start && b.proc != nil && b.proc.startIdx < 0 {
		b.proc.startIdx = len(s.backend)
	}
	s.backend = append(s.backend, b)
}

// noteNews records, for the oracle, that news of p's exit reached the ledger.
func (s *sim) noteNews(p *wproc, code uint32, at time.Time) {
	if p == nil {
		return
	}
	if p.newsEnq == 0 {
		p.newsEnq = s.enq + 1
	}
	if p.status == wStopped && code == p.code && at.Equal(p.at) && !p.realFed {
		p.realFed = true
		s.logf("oracle: the ledger has #%d's real code %d", p.n, code)
	}
}

// alias notes, for the oracle, that the ledger takes news of w to be about
// its incarnation of v: the same key and pid, v having ended and been
// deleted where the ledger could not see (nothing told it of v's exit).
// containerd's API cannot tell such processes apart.
func (s *sim) alias(v, w *wproc) {
	if v == nil || w == nil || v == w || v.key != w.key || v.pid != w.pid || !v.deleted || v.newsEnq != 0 {
		return
	}
	s.logf("oracle: #%d and #%d alias (same key and pid)", v.n, w.n)
	v.aliased, w.aliased = true, true
}

func (s *sim) aliasStream(e env) {
	if q := s.l.findStream(e.key, e.pid); q != nil {
		s.alias(s.byID[q.id], e.proc)
	}
}

// mapNew maps the incarnations the ledger made since last to the world's
// process p the input was about.
func (s *sim) mapNew(last uint64, p *wproc) {
	if p == nil {
		return
	}
	for id := last + 1; id <= s.l.last; id++ {
		if s.l.byID[ID(id)] != nil && s.byID[ID(id)] == nil {
			s.byID[ID(id)] = p
			s.logf("ledger: incarnation %d is #%d", id, p.n)
		}
	}
}

// heldAsRun sets p's evidence if the ledger now holds it as run.
func (s *sim) heldAsRun(p *wproc, why string) {
	for id, w := range s.byID {
		if q := s.l.byID[id]; w == p && q != nil && q.ran == ranYes {
			s.evidence(p, why)
			return
		}
	}
}

func (s *sim) evidence(p *wproc, why string) {
	if p != nil && p.ran && !p.evidence {
		p.evidence = true
		s.logf("oracle: #%d seen running (%s)", p.n, why)
	}
}

// ready carries out what the ledger asks after an input.
func (s *sim) ready() {
	rd := s.l.Ready()
	for _, x := range rd.Deliver {
		s.deliver(x)
	}
	if rd.Barrier {
		if seq := s.l.NeedBarrier(); seq != 0 {
			s.logf("barrier %d published", seq)
			if s.up && !s.frozen {
				s.dispatch(env{kind: evSentinel, seq: seq})
			} else if s.frozen {
				s.frozenQ = append(s.frozenQ, env{kind: evSentinel, seq: seq})
			}
		}
	}
	if rd.Checks {
		s.checks = append(s.checks, s.l.TakeChecks()...)
	}
	for _, f := range rd.Finish {
		s.finishes = append(s.finishes, pendingFinish{f: f, grace: 3 + s.rng.Intn(10)})
	}
}

func (s *sim) deliver(x Exit) {
	if s.closed {
		s.failf("exit %+v delivered after Close", x)
		return
	}
	p := s.identify(x)
	s.logf("BACKEND exit %s pid %d code %d (%s) → #%v", x.Key, x.Pid, x.Code, x.Source, procN(p))
	if p == nil {
		s.failf("exit %+v of no process that ever existed", x)
		return
	}
	p.exits = append(p.exits, x)
	p.exitIdx = append(p.exitIdx, len(s.backend))
	if len(p.exits) == 1 {
		p.realFirst = p.realFed
	}
	s.backend = append(s.backend, bentry{exit: x, proc: p, ctr: x.Key.Container})
	if x.Source != FromGuess && x.Code != p.code && !(x.Code == 137 && p.status == wStopped) && !p.aliased {
		s.failf("exit %+v of #%d: code %d, which no source had", x, p.n, x.Code)
	}
	// The daemon's monitor deletes what exited.
	if p.ours && !s.closed && s.rng.Intn(5) != 0 {
		if p.key.IsInit() {
			if h := s.handles[p.key.Container]; h != nil && h.proc == p {
				s.startDelete(h, false)
			}
		} else if h := s.execs[p]; h != nil {
			s.startDelete(h, false)
		}
	}
}

func procN(p *wproc) any {
	if p == nil {
		return "none"
	}
	return p.n
}

// identify maps a delivered exit to the world's process: by the ledger's ID
// for this client's, else by its exit time (unique), else (a guess, or
// containerd's clean-up 137) by key and pid.
func (s *sim) identify(x Exit) *wproc {
	if p := s.byID[x.ID]; p != nil {
		return p
	}
	if x.Source != FromGuess {
		for _, p := range s.procs {
			if p.key == x.Key && p.pid == x.Pid && p.status == wStopped && p.at.Equal(x.At) {
				return p
			}
		}
	}
	var best *wproc
	for _, p := range s.procs {
		if p.key == x.Key && p.pid == x.Pid && p.status != wCreated && len(p.exits) == 0 {
			best = p
		}
	}
	return best
}

// ---- this client's calls ----

func (s *sim) startOp(what string, c *call) {
	s.opN++
	o := &op{n: s.opN, what: what, cur: c}
	s.ops = append(s.ops, o)
	s.logf("client: %s (op %d)", what, o.n)
}

func (s *sim) endOp(o *op) {
	for i, x := range s.ops {
		if x == o {
			s.ops = append(s.ops[:i], s.ops[i+1:]...)
			return
		}
	}
}

// send makes o's current call reach containerd (or fail before it does).
func (s *sim) send(o *op) {
	c := o.cur
	if !s.up {
		s.logf("client: op %d %s fails: containerd down", o.n, c.name)
		o.sent, o.lost, o.noEff = true, true, true
		return
	}
	o.res = c.effect()
	o.sent = true
	s.logf("client: op %d %s takes effect (code %d)", o.n, c.name, o.res.code)
}

// answer delivers o's answer (or its loss) to the client.
func (s *sim) answer(o *op) {
	c := o.cur
	res, lost := o.res, o.lost
	o.cur, o.sent, o.lost, o.noEff, o.res = nil, false, false, false, rpcResult{}
	if lost {
		s.logf("client: op %d %s: answer lost", o.n, c.name)
	} else {
		s.logf("client: op %d %s: answered %d", o.n, c.name, res.code)
	}
	s.cur = o
	c.then(res, lost)
	s.cur = nil
	if o.cur == nil {
		s.endOp(o)
	}
	s.ready()
}

// next sets o's next call (called from a then).
func (s *sim) next(c *call) {
	if s.cur == nil {
		panic("sim: next outside an answer")
	}
	s.cur.cur = c
}

func (s *sim) newTask(c string) {
	key := InitKey(c)
	var made *wproc
	s.startOp("NewTask "+c, &call{name: "Create", effect: func() rpcResult {
		if s.tasks[c] != nil {
			return rpcResult{code: rExists}
		}
		t := &wtask{execs: map[string]*wproc{}, ours: true}
		p := s.newProc(key, true, t)
		p.pid, p.status = s.allocPid(c), wCreated
		t.init = p
		s.tasks[c] = t
		made = p
		s.publish(env{kind: evCreate, key: key, pid: p.pid, proc: p})
		return rpcResult{pid: p.pid, proc: p}
	}, then: func(r rpcResult, lost bool) {
		switch {
		case lost && made != nil:
			// removeFailedTask: the created task is found (its stdout
			// is this call's) and removed, held meanwhile so its kill's
			// exit is not taken for one of a run.
			id := s.l.Created(key, made.pid)
			s.byID[id] = made
			h := &handle{ref: Ref{ID: id, Key: key, Pid: made.pid}, proc: made}
			s.next(s.killWaitCall(h, true, func(end func()) { s.next(s.deleteCall(h, true, end)) }))
		case lost, r.code != rOK:
		default:
			id := s.l.Created(key, r.pid)
			s.byID[id] = r.proc
			s.logf("ledger: incarnation %d is #%d (created)", id, r.proc.n)
			s.handles[c] = &handle{ref: Ref{ID: id, Key: key, Pid: r.pid}, proc: r.proc}
		}
	}})
}

func (s *sim) start(h *handle) {
	s.l.StartBegin(h.ref.ID)
	s.startOp("Start "+h.ref.Key.Container, &call{name: "Start", effect: func() rpcResult {
		p := s.lookup(h.ref.Key)
		if p == nil || p != h.proc {
			return rpcResult{code: rNotFound}
		}
		if p.status != wCreated || s.rng.Intn(15) == 0 {
			return rpcResult{code: rFailed}
		}
		p.status, p.ran = wRunning, true
		s.publish(env{kind: evStart, key: p.key, pid: p.pid, proc: p})
		return rpcResult{pid: p.pid}
	}, then: func(r rpcResult, lost bool) {
		switch {
		case lost:
			s.l.StartUnknown(h.ref.ID)
		case r.code != rOK:
			s.l.StartFailed(h.ref.ID)
		default:
			s.evidence(h.proc, "start answer")
			s.l.Started(h.ref.ID, r.pid)
		}
	}})
}

func (s *sim) exec(h *handle, execID string) {
	key := Key{h.ref.Key.Container, execID}
	id := s.l.ExecBegin(key, h.ref)
	var added *wproc
	eh := &handle{ref: Ref{ID: id, Key: key}}
	s.startOp("Exec "+key.Container+"/"+execID, &call{name: "Exec", effect: func() rpcResult {
		t := s.tasks[key.Container]
		if t == nil || t.init != h.proc || t.init.status != wRunning {
			return rpcResult{code: rFailed}
		}
		if t.execs[execID] != nil {
			return rpcResult{code: rExists}
		}
		p := s.newProc(key, true, t)
		p.status = wCreated
		t.execs[execID] = p
		added = p
		s.publish(env{kind: evAdded, key: key, proc: p})
		return rpcResult{proc: p}
	}, then: func(r rpcResult, lost bool) {
		switch {
		case lost:
			// The start was never sent; the add may have happened.
			s.retryExec = execID
			s.l.StartFailed(id)
			if added != nil {
				s.byID[id] = added
			}
			eh.proc = added
			s.next(s.deleteCall(eh, true, nil))
			return
		case r.code != rOK:
			s.l.ExecAborted(id)
			return
		}
		s.byID[id] = r.proc
		eh.proc = r.proc
		s.l.ExecAdded(id)
		s.next(&call{name: "Start exec", effect: func() rpcResult {
			p := s.lookup(key)
			if p != eh.proc || p.status != wCreated || p.task.init.status != wRunning {
				return rpcResult{code: rFailed}
			}
			p.pid, p.status, p.ran = s.allocPid(key.Container), wRunning, true
			s.publish(env{kind: evStart, key: key, pid: p.pid, proc: p})
			return rpcResult{pid: p.pid}
		}, then: func(r rpcResult, lost bool) {
			switch {
			case lost:
				s.retryExec = execID
				s.l.StartUnknown(id)
				s.next(s.deleteCall(eh, true, nil))
			case r.code != rOK:
				s.l.StartFailed(id)
				s.next(s.deleteCall(eh, true, nil))
			default:
				s.evidence(eh.proc, "exec start answer")
				s.l.Started(id, r.pid)
				eh.ref.Pid = r.pid
				s.execs[eh.proc] = eh
			}
		}})
	}})
}

// deleteCall is a Delete (DeleteProcess for an exec) through h. A clean-up
// waits for containerd; after lost answers it asks again; afterwards runs
// after the delete's end.
func (s *sim) deleteCall(h *handle, cleanup bool, afterwards func()) *call {
	id := s.l.DeleteBegin(h.ref)
	if id != 0 {
		h.ref.ID = id // as process.deleteOnce: the handle holds what the ledger holds
	}
	key := h.ref.Key
	var killed bool
	var c *call
	c = &call{name: "Delete " + key.String(), waitUp: cleanup, effect: func() rpcResult {
		p := s.lookup(key)
		if p == nil || p != h.proc {
			return rpcResult{code: rNotFound}
		}
		if p.status == wRunning {
			return rpcResult{code: rConflict}
		}
		r := rpcResult{pid: p.pid, xc: p.code, at: p.at, proc: p}
		if p.status == wCreated {
			r.at, r.xc = s.newAt(), 0
		}
		if key.IsInit() {
			s.deleteTask(key.Container)
			s.publish(env{kind: evDelete, key: key, pid: p.pid, code: r.xc, at: r.at, proc: p})
		} else {
			delete(p.task.execs, key.Process)
			p.deleted = true
			if p.status == wCreated {
				r.pid = 0
			}
			if s.execDelete {
				s.publish(env{kind: evDelete, key: key, pid: p.pid, code: r.xc, at: r.at, proc: p})
			}
		}
		return r
	}, then: func(r rpcResult, lost bool) {
		switch {
		case lost:
			if key.IsInit() && h.proc != nil && s.rng.Intn(2) == 0 {
				if t := s.lookupTaskOf(h.proc); t == nil && h.proc.deleted {
					h.proc.task.cutDelete = true
				}
			}
			if cleanup || s.rng.Intn(2) == 0 {
				// The clean-up retries; so does a caller, often.
				s.logf("client: delete %s retried", key)
				s.next(s.deleteCall(h, cleanup, afterwards))
				s.l.DeleteUnknown(id)
				return
			}
			s.l.DeleteUnknown(id)
			if !key.IsInit() {
				delete(s.execs, h.proc)
			}
		case r.code == rNotFound:
			s.l.DeleteNotFound(id, h.ref)
		case r.code == rConflict:
			s.l.DeleteFailed(id)
			if cleanup && !killed {
				// removeFailedExec: kill it, wait, delete.
				killed = true
				s.next(s.killWaitCall(h, true, func(end func()) {
					s.next(s.deleteCall(h, cleanup, func() {
						end()
						if afterwards != nil {
							afterwards()
						}
					}))
				}))
				return
			}
		default:
			if !key.IsInit() && r.pid != 0 {
				s.evidence(h.proc, "exec delete answer")
			}
			s.noteNews(r.proc, r.xc, r.at)
			s.l.DeleteAnswer(id, h.ref, r.pid, r.xc, r.at)
			if !key.IsInit() {
				delete(s.execs, h.proc)
			}
		}
		if afterwards != nil {
			afterwards()
		}
	}}
	return c
}

func (s *sim) lookupTaskOf(p *wproc) *wtask {
	t := s.tasks[p.key.Container]
	if t != nil && t.init == p {
		return t
	}
	return nil
}

// killWaitCall kills h's process (an init: its whole task), waits for it,
// and reports the wait's answer; then runs next, which is handed the end of
// the kill-wait to call once its own calls are done.
func (s *sim) killWaitCall(h *handle, waitUp bool, next func(end func())) *call {
	id := s.l.KillWaitBegin(h.ref)
	key := h.ref.Key
	end := func() { s.l.KillWaitEnd(id) }
	return &call{name: "Kill " + key.String(), waitUp: waitUp, effect: func() rpcResult {
		p := s.lookup(key)
		if p == nil || p != h.proc {
			return rpcResult{code: rNotFound}
		}
		if p.status == wStopped {
			return rpcResult{code: rNotFound}
		}
		s.exitProc(p, 137)
		return rpcResult{}
	}, then: func(r rpcResult, lost bool) {
		if lost || r.code != rOK && r.code != rNotFound {
			s.l.KillWaitEnd(id)
			return
		}
		s.next(&call{name: "Wait " + key.String(), waitUp: waitUp, effect: func() rpcResult {
			p := s.lookup(key)
			if p == nil || p != h.proc {
				return rpcResult{code: rNotFound}
			}
			if p.status != wStopped {
				return rpcResult{code: rFailed}
			}
			return rpcResult{xc: p.code, at: p.at, proc: p}
		}, then: func(r rpcResult, lost bool) {
			if !lost && r.code == rOK {
				s.noteNews(r.proc, r.xc, r.at)
				s.l.WaitAnswer(id, r.xc, r.at)
			}
			if lost || r.code == rFailed {
				end()
				return
			}
			next(end)
		}})
	}}
}

// forceDelete is Task.ForceDelete.
func (s *sim) forceDelete(h *handle) {
	if s.l.KnownStopped(h.ref) {
		s.startOp("ForceDelete (stopped) "+h.ref.Key.Container, s.deleteCall(h, false, nil))
		return
	}
	killWait := func() *call {
		return s.killWaitCall(h, false, func(end func()) { s.next(s.deleteCall(h, false, end)) })
	}
	if s.l.StartUnresolved(h.ref) {
		s.startOp("ForceDelete (resolve) "+h.ref.Key.Container, &call{name: "Get", effect: func() rpcResult {
			r, p := s.report(h.ref.Key)
			if p != h.proc {
				return rpcResult{code: rNotFound}
			}
			return rpcResult{st: wstatus(r.Status), pid: r.Pid, xc: r.Code, at: r.At, proc: p}
		}, then: func(r rpcResult, lost bool) {
			if lost {
				return
			}
			rep := Report{Status: Gone}
			if r.code == rOK {
				rep = statusReport(r.proc)
				if rep.Status == Running || rep.Status == Stopped {
					s.evidence(r.proc, "resolve")
					s.noteNews(stoppedOnly(r.proc), rep.Code, rep.At)
				}
			}
			s.l.Resolve(h.ref, rep)
			s.next(killWait())
		}})
		return
	}
	s.startOp("ForceDelete "+h.ref.Key.Container, killWait())
}

func stoppedOnly(p *wproc) *wproc {
	if p != nil && p.status == wStopped {
		return p
	}
	return nil
}

func statusReport(p *wproc) Report {
	r := Report{Pid: p.pid}
	switch p.status {
	case wCreated:
		r.Status = Created
	case wRunning:
		r.Status = Running
	case wStopped:
		r.Status, r.Code, r.At = Stopped, p.code, p.at
	}
	return r
}

// startDelete is the daemon deleting a process (init: Delete, or
// ForceDelete when it may still run).
func (s *sim) startDelete(h *handle, force bool) {
	if h.ref.Key.IsInit() && force {
		s.forceDelete(h)
		return
	}
	if h.ref.Key.IsInit() && s.l.StartUnresolved(h.ref) {
		s.forceDelete(h)
		return
	}
	s.startOp("Delete "+h.ref.Key.String(), s.deleteCall(h, false, nil))
}

// status is Task.Status through h.
func (s *sim) status(h *handle) {
	s.startOp("Status "+h.ref.Key.Container, &call{name: "Get", effect: func() rpcResult {
		p := s.lookup(h.ref.Key)
		if p == nil {
			return rpcResult{code: rNotFound}
		}
		return rpcResult{proc: p}
	}, then: func(r rpcResult, lost bool) {
		if lost || r.code != rOK {
			return
		}
		rep := statusReport(r.proc)
		switch rep.Status {
		case Running:
			s.evidence(r.proc, "status running")
			id := s.l.Adopt(h.ref.Key, rep.Pid, Ref{})
			s.byID[id] = r.proc
			s.logf("ledger: incarnation %d is #%d (adopted)", id, r.proc.n)
		case Stopped:
			if r.proc == h.proc {
				s.evidence(r.proc, "status stopped")
			}
			s.noteNews(r.proc, rep.Code, rep.At)
			s.l.StatusStopped(h.ref, rep.Pid, rep.Code, rep.At)
		}
	}})
}

// ---- the reconciler, the finisher and the shim watch ----

func (s *sim) ask(i int) {
	c := s.checks[i]
	s.checks = append(s.checks[:i], s.checks[i+1:]...)
	if !s.up {
		s.logf("reconcile: check %d of %s: containerd down", c.Token, c.Key)
		s.l.CheckFailed(c.Token)
		s.ready()
		return
	}
	r, p := s.report(c.Key)
	s.logf("reconcile: check %d of %s pid %d asked: %+v", c.Token, c.Key, c.Pid, r)
	s.answers = append(s.answers, checkAnswer{token: c.Token, r: r, proc: p})
}

func (s *sim) answerCheck(i int) {
	a := s.answers[i]
	s.answers = append(s.answers[:i], s.answers[i+1:]...)
	s.logf("reconcile: answer %d: %+v", a.token, a.r)
	if a.proc != nil && a.r.Status != Gone {
		// Whom the ledger will take this answer to be about.
		var v *wproc
		q := s.l.byID[ID(a.token)]
		c := s.l.confirms[a.token]
		matches := c != nil && a.r.Status == Stopped && a.r.Pid == c.pid && a.r.Code == c.code && a.r.At.Equal(c.at)
		switch {
		case q != nil:
			v = s.byID[q.id]
		case !matches:
			// A check of an incarnation forgotten since, or a confirm
			// that does not match: the ledger drops the answer.
		default:
			if q = s.l.find(a.proc.key, a.proc.pid); q != nil && !q.deleted {
				v = s.byID[q.id]
			}
		}
		s.alias(v, a.proc)
		takes := q != nil && (v == a.proc || q.pid == 0 && (q.key.IsInit() || q.addDone)) || q == nil && matches
		if q != nil && a.r.Status == Stopped && a.r.Pid != q.pid {
			// Forwarded to the incarnation with that pid (checked).
			for _, o := range s.l.list(a.proc.key) {
				if o != q && o.ours && !o.key.IsInit() && o.pid == a.r.Pid && !o.deleted && o.born < q.asked {
					s.alias(s.byID[o.id], a.proc)
					if s.byID[o.id] == a.proc {
						takes = true
					}
				}
			}
		}
		if a.r.Status == Stopped && takes {
			s.noteNews(a.proc, a.r.Code, a.r.At)
		}
	}
	last := s.l.last
	if debugSim && a.proc != nil {
		s.dumpKey("before answer", a.proc.key)
	}
	s.l.CheckAnswer(a.token, a.r)
	if debugSim && a.proc != nil {
		s.dumpKey("after answer", a.proc.key)
	}
	s.mapNew(last, a.proc)
	if a.proc != nil && (a.r.Status == Running || a.r.Status == Stopped) {
		s.heldAsRun(a.proc, "reconcile")
	}
	s.ready()
}

// finish is the client finishing a delete whose answer was lost.
func (s *sim) finish(i int) {
	pf := s.finishes[i]
	s.finishes = append(s.finishes[:i], s.finishes[i+1:]...)
	pid, pending := s.l.FinishTarget(pf.f.ID)
	if !pending {
		return
	}
	p := s.byID[pf.f.ID]
	h := &handle{ref: Ref{ID: pf.f.ID, Key: pf.f.Key, Pid: pid}, proc: p}
	s.startOp("finish delete "+pf.f.Key.String(), &call{name: "Get", waitUp: true, effect: func() rpcResult {
		r, q := s.report(pf.f.Key)
		return rpcResult{st: wstatus(r.Status), pid: r.Pid, proc: q, rep: r}
	}, then: func(r rpcResult, lost bool) {
		if lost {
			return
		}
		// As reconcile.go's finishDelete: the pid as the ledger knows it
		// now.
		pid, pending := s.l.FinishTarget(pf.f.ID)
		if !pending {
			return
		}
		if pid == 0 && r.proc != nil && r.pid != 0 {
			h.ref.Pid = 0
			s.l.Resolve(h.ref, r.rep)
			if pid, pending = s.l.FinishTarget(pf.f.ID); !pending {
				return
			}
			if pid == 0 {
				s.l.FinishDropped(pf.f.ID)
				return
			}
		}
		h.ref.Pid = pid
		if r.proc == nil || r.proc.pid != pid {
			s.l.Resolve(h.ref, Report{Status: Gone})
			return
		}
		if s.l.FinishPending(pf.f.ID) {
			s.next(s.deleteCall(h, true, nil))
		}
	}})
}

func (s *sim) shimReport() {
	ws := s.l.Watched()
	if len(ws) == 0 {
		return
	}
	sort.Slice(ws, func(i, j int) bool {
		if ws[i].Key != ws[j].Key {
			return ws[i].Key.String() < ws[j].Key.String()
		}
		return ws[i].Pid < ws[j].Pid
	})
	w := ws[s.rng.Intn(len(ws))]
	p := s.lookup(w.Key)
	if p == nil || w.Pid != 0 && p.pid != w.Pid {
		return // its shim is gone, or serves another process now
	}
	var q *proc
	if w.Pid != 0 {
		q = s.l.find(w.Key, w.Pid)
	} else {
		q = s.l.pending(w.Key)
	}
	if q != nil && s.byID[q.id] != nil && s.byID[q.id] != p {
		return // the shim the watch noted is gone; this is another's
	}
	r := statusReport(p)
	if r.Status == Running || r.Status == Stopped {
		s.evidence(p, "shim")
	}
	if r.Status == Stopped {
		s.noteNews(p, r.Code, r.At)
	}
	s.logf("shim: %s pid %d says %+v", w.Key, w.Pid, r)
	s.l.ShimReport(w.Key, w.Pid, r)
	s.ready()
}

// ---- containerd's life ----

func (s *sim) kill() {
	s.logf("containerd killed")
	s.up, s.frozen = false, false
	if s.subscribed {
		s.subDead = true
	}
	for _, o := range s.ops {
		if o.sent && !o.lost {
			o.lost = true
		}
	}
	// Events a frozen containerd had accepted die with it.
	s.frozenQ = nil
}

func (s *sim) restart() {
	s.logf("containerd restarted")
	s.up = true
	ids := make([]string, 0, len(s.tasks))
	for id := range s.tasks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		t := s.tasks[id]
		if s.cleanDead && t.diedInOutage {
			// 1.7+: a task whose processes died while containerd was
			// down is deleted at start-up; nothing is published.
			s.logf("world: restart deletes %s", id)
			s.deleteTask(id)
		}
		t.diedInOutage = false
	}
	for _, p := range s.procs {
		if p.key.IsInit() && p.task.cutDelete {
			p.task.cutDelete = false
			// Clean-up after the shim of a delete cut off by the kill:
			// the exit again, with 137 and a new time.
			at := s.newAt()
			s.logf("world: clean-up re-publishes %s pid %d", p.key, p.pid)
			s.publish(env{kind: evExit, key: p.key, pid: p.pid, code: 137, at: at})
			s.publish(env{kind: evDelete, key: p.key, pid: p.pid, code: 137, at: at})
		}
	}
}

func (s *sim) thaw() {
	s.logf("containerd thawed")
	s.frozen = false
	q := s.frozenQ
	s.frozenQ = nil
	for _, e := range q {
		s.dispatch(e)
	}
}

// ---- another client ----

func (s *sim) foreign() {
	ctrs := []string{foreignCtr}
	for _, c := range ourCtrs {
		if s.handles[c] == nil && !s.opOn(c) {
			ctrs = append(ctrs, c)
		}
	}
	c := ctrs[s.rng.Intn(len(ctrs))]
	t := s.tasks[c]
	if !s.up || s.frozen {
		return // its calls go through containerd too
	}
	switch {
	case t == nil:
		if c != foreignCtr && s.rng.Intn(3) != 0 {
			return
		}
		// Create and start a task, as another client (or the daemon's
		// previous life) would; pids are reused.
		nt := &wtask{execs: map[string]*wproc{}}
		p := s.newProc(InitKey(c), false, nt)
		p.pid, p.status, p.ran = s.allocPid(c), wRunning, true
		nt.init = p
		s.tasks[c] = nt
		s.logf("foreign: task %s pid %d (#%d)", c, p.pid, p.n)
		s.publish(env{kind: evCreate, key: p.key, pid: p.pid, proc: p})
		s.publish(env{kind: evStart, key: p.key, pid: p.pid, proc: p})
	case t.ours:
		return
	case t.init.status == wRunning && s.rng.Intn(3) == 0:
		id := fmt.Sprintf("f%d", s.rng.Intn(3))
		if t.execs[id] != nil {
			return
		}
		p := s.newProc(Key{c, id}, false, t)
		p.pid, p.status, p.ran = s.allocPid(c), wRunning, true
		t.execs[id] = p
		s.logf("foreign: exec %s/%s pid %d (#%d)", c, id, p.pid, p.n)
		s.publish(env{kind: evAdded, key: p.key, proc: p})
		s.publish(env{kind: evStart, key: p.key, pid: p.pid, proc: p})
	case s.rng.Intn(2) == 0:
		// Delete a stopped exec (no event, as the runc shim), or the task.
		for _, e := range sortedExecs(t) {
			if e.status == wStopped {
				delete(t.execs, e.key.Process)
				e.deleted = true
				s.logf("foreign: delete exec %s", e.key)
				if s.execDelete {
					s.publish(env{kind: evDelete, key: e.key, pid: e.pid, code: e.code, at: e.at, proc: e})
				}
				return
			}
		}
		if t.init.status == wStopped {
			s.logf("foreign: delete task %s", c)
			s.deleteTask(c)
			s.publish(env{kind: evDelete, key: t.init.key, pid: t.init.pid, code: t.init.code, at: t.init.at, proc: t.init})
		}
	default:
		procs := append([]*wproc{t.init}, sortedExecs(t)...)
		p := procs[s.rng.Intn(len(procs))]
		if p.status == wRunning {
			s.exitProc(p, uint32(s.rng.Intn(100)))
		}
	}
}

func (s *sim) opOn(c string) bool {
	for _, o := range s.ops {
		if strings.Contains(o.what, " "+c) {
			return true
		}
	}
	return false
}

// ---- the scheduler ----

type action struct {
	weight int
	name   string
	do     func()
}

func (s *sim) actions(drain bool) []action {
	var as []action
	add := func(w int, name string, do func()) { as = append(as, action{w, name, do}) }

	// The stream reader.
	if s.subscribed && s.subDead {
		add(4, "stream breaks", func() {
			s.logf("stream: broken")
			s.subscribed, s.subDead = false, false
			for _, e := range s.stream {
				if e.kind == evStart && e.proc != nil && e.proc.startEnq == e.enq {
					e.proc.startDrop = true
				}
			}
			s.stream = nil
			s.l.StreamDown()
			s.ready()
		})
	}
	if !s.subscribed && s.up {
		add(4, "resubscribe", s.subscribe)
	}
	if s.subscribed && len(s.stream) > 0 {
		// What reached the reader before containerd died is still read.
		add(12, "read event", s.readEvent)
	}
	if s.subscribed && !s.subDead && s.up && !s.frozen && s.l.WaitingOnBarrier() && !s.sentinelQueued() {
		add(2, "republish barrier", func() {
			seq := s.l.NextBarrier()
			s.logf("barrier %d published again", seq)
			s.dispatch(env{kind: evSentinel, seq: seq})
		})
	}
	if s.subscribed && !s.subDead && s.up && !s.frozen && s.needsBarrier() {
		add(2, "barrier timer", func() {
			if seq := s.l.NeedBarrier(); seq != 0 {
				s.dispatch(env{kind: evSentinel, seq: seq})
			}
		})
	}
	// The shims' re-sends.
	if s.up && !s.frozen && len(s.retries) > 0 {
		add(3, "shim re-send", func() {
			i := s.rng.Intn(len(s.retries))
			r := s.retries[i]
			s.retries = append(s.retries[:i], s.retries[i+1:]...)
			s.logf("shim: re-sends %v %s pid %d", r.e.kind, r.e.key, r.e.pid)
			s.dispatch(r.e)
		})
	}
	if !s.up && len(s.retries) > 0 {
		add(1, "shim gives up", func() {
			i := s.rng.Intn(len(s.retries))
			if s.retries[i].left--; s.retries[i].left <= 0 {
				s.retries = append(s.retries[:i], s.retries[i+1:]...)
			}
		})
	}
	// This client's calls.
	for _, o := range s.ops {
		o := o
		switch {
		case o.cur == nil:
		case !o.sent && (s.up && !s.frozen || !s.up && !o.cur.waitUp):
			add(6, "send", func() { s.send(o) })
		case o.sent:
			add(6, "answer", func() { s.answer(o) })
		}
	}
	if len(s.checks) > 0 && (s.up && !s.frozen || !s.up) {
		add(4, "reconcile asks", func() { s.ask(s.rng.Intn(len(s.checks))) })
	}
	if len(s.answers) > 0 {
		add(4, "reconcile answer", func() { s.answerCheck(s.rng.Intn(len(s.answers))) })
	}
	for i := range s.finishes {
		i := i
		if s.finishes[i].grace > 0 {
			add(2, "grace passes", func() { s.finishes[i].grace-- })
		} else {
			add(2, "finish delete", func() { s.finish(i) })
		}
		break
	}
	if !s.subscribed || !s.l.Live() {
		add(3, "shim watch", s.shimReport)
	}
	if drain {
		return as
	}
	// The world.
	for _, p := range s.procs {
		p := p
		if p.status == wRunning && !p.deleted {
			add(1, "exit", func() { s.exitProc(p, uint32(s.rng.Intn(100))) })
			if p.key.IsInit() && s.rng.Intn(4) == 0 {
				add(1, "oom", func() { s.publish(env{kind: evOOM, key: p.key}) })
			}
		}
	}
	switch {
	case s.up && !s.frozen:
		add(1, "kill containerd", s.kill)
		add(1, "freeze containerd", func() { s.logf("containerd frozen"); s.frozen = true })
	case s.frozen:
		add(3, "thaw containerd", s.thaw)
		add(1, "kill frozen containerd", s.kill)
	default:
		add(3, "restart containerd", s.restart)
	}
	add(2, "another client", s.foreign)
	// This client.
	for _, c := range ourCtrs {
		c := c
		h := s.handles[c]
		if s.opOn(c) {
			continue
		}
		switch {
		case h == nil:
			if s.tasks[c] == nil {
				add(3, "new task", func() { s.newTask(c) })
			}
		case h.proc.status == wCreated && !h.proc.deleted && !s.l.StartUnresolved(h.ref) && s.l.byID[h.ref.ID] != nil && !h.proc.ran:
			add(3, "start", func() { s.start(h) })
		case h.proc.status == wRunning && !h.proc.deleted:
			add(2, "exec", func() {
				// A daemon names every exec anew; it retries a failed
				// one under the same ID.
				id := s.retryExec
				if id == "" || s.rng.Intn(2) == 0 {
					s.execN++
					id = fmt.Sprintf("e%d", s.execN)
				}
				s.retryExec = ""
				s.exec(h, id)
			})
			add(1, "kill", func() {
				if s.up {
					s.exitProc(h.proc, 137)
				}
			})
		}
		if h != nil {
			add(1, "status", func() { s.status(h) })
			add(1, "force delete", func() { s.forceDelete(h) })
			if h.proc.deleted {
				add(2, "forget handle", func() { delete(s.handles, c) })
			}
		}
	}
	return as
}

func (s *sim) needsBarrier() bool {
	for p := range s.l.waiting {
		if p.after == s.l.published {
			return true
		}
	}
	return false
}

func (s *sim) sentinelQueued() bool {
	for _, e := range s.stream {
		if e.kind == evSentinel {
			return true
		}
	}
	return false
}

func (s *sim) pick(as []action) action {
	total := 0
	for _, a := range as {
		total += a.weight
	}
	n := s.rng.Intn(total)
	for _, a := range as {
		if n -= a.weight; n < 0 {
			return a
		}
	}
	return as[len(as)-1]
}

// run plays one schedule of n steps, then lets everything settle, removes
// every process, settles again, and checks the invariants.
func (s *sim) run(n int) {
	if s.rng.Intn(10) == 0 {
		s.closeAt = s.rng.Intn(n + 1)
	}
	for s.step = 0; s.step < n && !s.failed; s.step++ {
		if s.step == s.closeAt {
			s.logf("client: Close")
			s.l.Close()
			s.closed = true
		}
		last := s.l.last
		s.pick(s.actions(false)).do()
		if debugSim && s.l.last != last {
			s.logf("   (ledger handed out up to %d)", s.l.last)
		}
		if debugSim && debugKey != "" {
			var b strings.Builder
			k := InitKey(debugKey)
			if c, e, ok := strings.Cut(debugKey, "/"); ok {
				k = Key{c, e}
			}
			for _, p := range s.l.list(k) {
				fmt.Fprintf(&b, "[id=%d pid=%d ran=%d seen=%v news=%v deleted=%v ours=%v ops=%d check=%d finish=%v linger=%v streamDone=%v] ", p.id, p.pid, p.ran, p.seen, p.news != nil, p.deleted, p.ours, p.ops, p.check, p.finish, p.lingering, p.streamDone)
			}
			if b.String() != s.lastDump {
				s.lastDump = b.String()
				s.logf("   %s: %s", debugKey, b.String())
			}
		}
	}
	s.calm()
	s.drain()
	// Everything goes: this client removes its tasks, the other its own.
	for _, c := range ourCtrs {
		if h := s.handles[c]; h != nil && !h.proc.deleted {
			s.forceDelete(h)
		}
		delete(s.handles, c)
	}
	s.drain()
	for _, c := range append([]string{foreignCtr}, ourCtrs...) {
		if t := s.tasks[c]; t != nil {
			for _, p := range append([]*wproc{t.init}, sortedExecs(t)...) {
				s.exitProc(p, 1)
			}
			s.deleteTask(c)
			s.publish(env{kind: evDelete, key: t.init.key, pid: t.init.pid, code: t.init.code, at: t.init.at, proc: t.init})
		}
	}
	s.drain()
	// A last outage: the reconnect's checks forget what no event said
	// was deleted (another client's execs, a delete lost in an outage).
	s.kill()
	s.restart()
	s.drain()
	s.check()
}

// calm ends outages and freezes.
func (s *sim) calm() {
	if s.frozen {
		s.thaw()
	}
	if !s.up {
		s.restart()
	}
}

// drain runs every pending step until nothing is left to do.
func (s *sim) drain() {
	s.calm()
	for i := 0; i < 5000 && !s.failed; i++ {
		s.step++
		as := s.actions(true)
		if len(as) == 0 {
			return
		}
		s.pick(as).do()
	}
	if !s.failed {
		s.failf("did not settle")
	}
}

func (s *sim) check() {
	for _, p := range s.procs {
		switch {
		case len(p.exits) > 1:
			s.failf("#%d %s pid %d: %d exits %+v", p.n, p.key, p.pid, len(p.exits), p.exits)
		case len(p.exits) == 1 && !p.ran && p.ours:
			s.failf("#%d %s pid %d never ran, got exit %+v", p.n, p.key, p.pid, p.exits[0])
		case len(p.exits) == 0 && p.evidence && p.ran && !s.closed && !p.aliased:
			s.failf("#%d %s pid %d ran (the ledger was told so) and got no exit", p.n, p.key, p.pid)
		}
		if len(p.exits) == 1 {
			x := p.exits[0]
			if p.realFirst && x.Code != p.code && !p.aliased {
				s.failf("#%d %s: exit code %d (%s), but a source gave the ledger the real %d", p.n, p.key, x.Code, x.Source, p.code)
			}
			if p.startEnq != 0 && !p.startDrop && p.startEnq < p.newsEnq && (p.startIdx < 0 || p.startIdx > p.exitIdx[0]) && !s.closed {
				s.failf("#%d %s: exit delivered before its start (start at %d, exit at %d)", p.n, p.key, p.startIdx, p.exitIdx[0])
			}
		}
	}
	if n := s.l.Size(); n != 0 && !s.failed {
		var held []string
		for _, p := range s.l.byID {
			held = append(held, fmt.Sprintf("%+v", *p))
		}
		s.failf("ledger holds %d entries after every process was deleted: %s", n, strings.Join(held, "; "))
	}
	for _, o := range s.ops {
		if !s.failed {
			s.failf("op %d %s never ended", o.n, o.what)
		}
	}
}

func simSchedulesToRun(t *testing.T) int {
	if *simSchedules > 0 {
		return *simSchedules
	}
	if v := os.Getenv("LCD_SIM_SCHEDULES"); v != "" {
		var n int
		if _, err := fmt.Sscan(v, &n); err == nil && n > 0 {
			return n
		}
	}
	if testing.Short() || raceEnabled {
		return 5000
	}
	return 100_000
}

// TestSimulation runs seeded schedules of every source against the ledger
// and checks the invariants after each.
func TestSimulation(t *testing.T) {
	if *simSeed != 0 {
		runSeed(t, *simSeed, true)
		return
	}
	n := simSchedulesToRun(t)
	base := time.Now().UnixNano()
	if v := os.Getenv("LCD_SIM_BASE"); v != "" {
		fmt.Sscan(v, &base)
	}
	t.Logf("%d schedules from base seed %d", n, base)
	for i := 0; i < n; i++ {
		if !runSeed(t, base+int64(i), *simTrace) {
			return
		}
	}
}

func runSeed(t *testing.T, seed int64, trace bool) bool {
	s := newSim(t, seed)
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("seed %d panicked: %v\n%s\nreplay: go test ./internal/ledger -run 'TestSimulation$' -sim.seed=%d -sim.trace -v", seed, r, debug.Stack(), seed)
		}
	}()
	s.run(150)
	if trace || s.failed {
		if trace || testing.Verbose() {
			t.Logf("trace of seed %d:\n%s", seed, strings.Join(s.trace, "\n"))
		}
	}
	return !s.failed
}
