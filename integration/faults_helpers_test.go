package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"google.golang.org/grpc"

	"github.com/lcdkit/libcontainerd/internal/faults"
	"github.com/lcdkit/libcontainerd/internal/testutil"
	"github.com/lcdkit/libcontainerd/types"
)

// newFaultFixture is newFixture on a containerd client with the fault
// injector installed first (it sees each call as the library made it), then
// the RPC counter, then intercept (fakes answering an RPC: a fault before a
// call keeps it from them, a fault after a call lets them answer).
func newFaultFixture(t testing.TB, intercept ...grpc.UnaryClientInterceptor) *fixture {
	t.Helper()
	return newFixtureDial(t, faults.DialOptions(), intercept...)
}

// hostState is what an operation can leave behind, in containerd (the
// test's namespace) and on the host: containers with their bundle label,
// tasks and the probed execs with their status, leases, content, ingests,
// images, containerd's temp dir, ctrd-* dirs in the host's temp dir, and
// every file under the state dir and the extra paths.
type hostState struct {
	Containers, Tasks, Execs              []string
	Leases, Content, Ingests, Images      []string
	DaemonTemp, HostTemp, StateDir, Extra []string
}

// snapshot reads the state; execProbes are the exec IDs to look for in each
// task (containerd lists no execs), extra paths outside the state dir
// (checkpoint dirs) whose files count too.
func snapshot(t testing.TB, raw *containerd.Client, ctx context.Context, stateDir string, execProbes []string, extra ...string) hostState {
	t.Helper()
	var s hostState
	ctrs, err := raw.ContainerService().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ctrs {
		s.Containers = append(s.Containers, c.ID+" bundle="+c.Labels["com.docker/engine.bundle.path"])
	}
	list, err := raw.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Tasks {
		s.Tasks = append(s.Tasks, p.ID+" "+p.Status.String())
		for _, x := range execProbes {
			r, err := raw.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: p.ID, ExecID: x})
			if err == nil {
				s.Execs = append(s.Execs, p.ID+"/"+x+" "+r.Process.Status.String())
			}
		}
	}
	ls, err := raw.LeasesService().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		s.Leases = append(s.Leases, l.ID)
	}
	// Content, ingests, images and containerd's temp dir as the checkpoint
	// tests read them.
	cs := (&fixture{t: t, ctx: ctx, raw: raw}).state()
	s.Content, s.Ingests, s.Images, s.DaemonTemp = cs.Content, cs.Ingests, cs.Images, cs.DaemonTemp
	s.HostTemp, _ = filepath.Glob(filepath.Join(os.TempDir(), "ctrd-*"))
	s.StateDir = treeOf(stateDir)
	for _, p := range extra {
		if _, err := os.Lstat(p); err != nil {
			s.Extra = append(s.Extra, p+" absent")
			continue
		}
		s.Extra = append(s.Extra, p+" present")
		for _, e := range treeOf(p) {
			s.Extra = append(s.Extra, p+"/"+e)
		}
	}
	for _, l := range [][]string{s.Containers, s.Tasks, s.Execs, s.Leases, s.Content, s.Ingests, s.Images, s.DaemonTemp, s.HostTemp, s.StateDir, s.Extra} {
		sort.Strings(l)
	}
	return s
}

// treeOf lists every path under dir (relative), with its type.
func treeOf(dir string) []string {
	var out []string
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || path == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		kind := "file"
		switch {
		case d.IsDir():
			kind = "dir"
		case d.Type()&os.ModeNamedPipe != 0:
			kind = "fifo"
		}
		out = append(out, rel+" "+kind)
		return nil
	})
	return out
}

// diffState says how two states differ, field by field.
func diffState(a, b hostState) string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := 0; i < va.NumField(); i++ {
		x, y := va.Field(i).Interface().([]string), vb.Field(i).Interface().([]string)
		if !reflect.DeepEqual(x, y) {
			out = append(out, fmt.Sprintf("%s: %v vs %v", va.Type().Field(i).Name, x, y))
		}
	}
	return strings.Join(out, "; ")
}

// classOf is the class both classifiers give err, or "" if they disagree
// or give none.
func classOf(err error) string {
	c := mobyClass(err)
	if c == "" {
		return ""
	}
	for _, target := range testutil.ErrdefsTargets(c) {
		if !errors.Is(err, target) {
			return ""
		}
	}
	return c
}

// wantClass is the class an operation's error must have under a fault of
// kind: a lost connection, or the caller's cancelled context.
func wantClass(kind faults.Kind) string {
	if kind == faults.Cancel {
		return "Cancelled"
	}
	return "Unavailable"
}

// exitLedger checks that every process containerd started got exactly one
// exit: started processes come from the start events, keyed by container,
// process and pid (IDs are reused across cases, pids are not).
type exitLedger struct {
	started, exits map[[3]string]int
}

func newExitLedger() *exitLedger {
	return &exitLedger{started: map[[3]string]int{}, exits: map[[3]string]int{}}
}

func (l *exitLedger) add(et types.EventType, container, process string, pid uint32) {
	k := [3]string{container, process, fmt.Sprint(pid)}
	switch et {
	case types.EventStart, types.EventExecStarted:
		l.started[k]++
	case types.EventExit:
		l.exits[k]++
	}
}

// missing lists started processes without an exit.
func (l *exitLedger) missing() []string {
	var out []string
	for k := range l.started {
		if l.exits[k] == 0 {
			out = append(out, strings.Join(k[:], "/"))
		}
	}
	sort.Strings(out)
	return out
}

// duplicated lists processes with more than one exit.
func (l *exitLedger) duplicated() []string {
	var out []string
	for k, n := range l.exits {
		if n > 1 {
			out = append(out, fmt.Sprintf("%s ×%d", strings.Join(k[:], "/"), n))
		}
	}
	sort.Strings(out)
	return out
}

func ledgerOf(b *recordingBackend) *exitLedger {
	l := newExitLedger()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.events {
		l.add(e.Type, e.Info.ContainerID, e.Info.ProcessID, e.Info.Pid)
	}
	return l
}

func legacyLedgerOf(b legacyBackend) *exitLedger {
	l := newExitLedger()
	for _, e := range b.snapshot() {
		l.add(e.Type, e.Info.ContainerID, e.Info.ProcessID, e.Info.Pid)
	}
	return l
}

// checkExits waits (bounded) until every started process has an exit, then
// checks none has two.
func checkExits(t *testing.T, ledger func() *exitLedger) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for len(ledger().missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // the backend's queue runs on its own
	}
	l := ledger()
	if m := l.missing(); len(m) > 0 {
		t.Errorf("started processes without an exit: %v", m)
	}
	if d := l.duplicated(); len(d) > 0 {
		t.Errorf("exits delivered more than once: %v", d)
	}
	t.Logf("%d started processes, each with exactly one exit", len(l.started))
}

// leakBaseline is the goroutine and fd count to come back to.
type leakBaseline struct{ goroutines, fds int }

func takeBaseline() leakBaseline { return leakBaseline{runtime.NumGoroutine(), openFDs()} }

// check waits (bounded) for goroutines of closed IO to end, then compares.
func (b leakBaseline) check(t testing.TB, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for (runtime.NumGoroutine() > b.goroutines+2 || openFDs() > b.fds+2) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > b.goroutines+2 {
		buf := make([]byte, 1<<20)
		t.Errorf("%s: goroutines %d -> %d\n%s", what, b.goroutines, g, buf[:runtime.Stack(buf, true)])
	}
	if fd := openFDs(); fd > b.fds+2 {
		t.Errorf("%s: open fds %d -> %d", what, b.fds, fd)
	}
}

// faultTable counts cases and passes per operation and kind, for the
// summary the matrix prints.
type faultTable struct {
	mu    sync.Mutex
	ops   []string
	cells map[string]map[faults.Kind][2]int // cases, passed
}

func (ft *faultTable) add(op string, kind faults.Kind, passed bool) {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	if ft.cells == nil {
		ft.cells = map[string]map[faults.Kind][2]int{}
	}
	row, ok := ft.cells[op]
	if !ok {
		row = map[faults.Kind][2]int{}
		ft.cells[op] = row
		ft.ops = append(ft.ops, op)
	}
	c := row[kind]
	c[0]++
	if passed {
		c[1]++
	}
	row[kind] = c
}

func (ft *faultTable) String() string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%-34s", "operation")
	for _, k := range faults.Kinds {
		fmt.Fprintf(&b, " %13s", string(k)+" ok/cases")
	}
	b.WriteString("\n")
	var total [2]int
	for _, op := range ft.ops {
		fmt.Fprintf(&b, "%-34s", op)
		for _, k := range faults.Kinds {
			c := ft.cells[op][k]
			fmt.Fprintf(&b, " %13s", fmt.Sprintf("%d/%d", c[1], c[0]))
			total[0] += c[0]
			total[1] += c[1]
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "%d of %d cases passed", total[1], total[0])
	return b.String()
}
