package integration

import (
	"context"
	"fmt"
	"github.com/lcdkit/libcontainerd/internal/testenv"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lcdkit/libcontainerd/types"
)

// shimRetryWindow is how long a shim keeps re-sending an event containerd
// did not take (+1, +3, +6, +10, +15 s): waiting past it shows whether any
// exit was delivered twice.
const shimRetryWindow = 16 * time.Second

// chaosProc is one process whose exit the test expects.
type chaosProc struct {
	container, process string
	codes              []uint32 // acceptable exit codes; nil: must not exit
}

// parentPid reads a process's parent from /proc (the shim of a container's
// init process).
func parentPid(pid uint32) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command may contain spaces: fields start after the last ')'.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return strconv.Atoi(fields[1])
}

// chaosHandles keeps the handles chaosCycle got, as a daemon keeps them in
// its container store: its monitor acts on them when an exit arrives.
type chaosHandles struct {
	mu    sync.Mutex
	ctrs  map[string]types.Container
	tasks map[string]types.Task
	execs map[[2]string]types.Process
}

func newChaosHandles() *chaosHandles {
	return &chaosHandles{ctrs: map[string]types.Container{}, tasks: map[string]types.Task{}, execs: map[[2]string]types.Process{}}
}

func (h *chaosHandles) keep(id string, ctr types.Container, task types.Task) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ctrs[id], h.tasks[id] = ctr, task
}

func (h *chaosHandles) keepExec(id, execID string, p types.Process) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.execs[[2]string{id, execID}] = p
}

func (h *chaosHandles) task(id string) types.Task {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tasks[id]
}

func (h *chaosHandles) exec(id, execID string) types.Process {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.execs[[2]string{id, execID}]
}

// startExiting starts container id, whose process sleeps for sleep seconds
// and exits with code; handles gets its handles.
func (f *fixture) startExiting(handles *chaosHandles, id string, sleep float64, code uint32) {
	f.t.Helper()
	ctr := f.newContainer(id, "sh", "-c", fmt.Sprintf("sleep %.1f; exit %d", sleep, code))
	task, err := ctr.NewTask(f.ctx, "", false, newStdio().attach)
	if err != nil {
		f.t.Fatal(err)
	}
	handles.keep(id, ctr, task)
	if err := task.Start(f.ctx); err != nil {
		f.t.Fatal(err)
	}
}

// execExiting runs exec execID in host's task, which sleeps for sleep
// seconds and exits with code; handles gets its handle.
func (f *fixture) execExiting(handles *chaosHandles, hostID string, host types.Task, execID string, sleep float64, code uint32) {
	f.t.Helper()
	p, err := host.Exec(f.ctx, execID, execSpec("sh", "-c", fmt.Sprintf("sleep %.1f; exit %d", sleep, code)), false, newStdio().attach)
	if err != nil {
		f.t.Fatal(err)
	}
	handles.keepExec(hostID, execID, p)
}

// chaosCycle starts containers and execs that exit before, during and after
// a containerd outage, kills containerd with SIGKILL, keeps it down for
// outage, and restarts it on the same dirs. handles, if not nil, gets every
// handle as soon as it exists.
func chaosCycle(t *testing.T, f *fixture, cycle int, outage time.Duration, killShim bool, handles *chaosHandles) []chaosProc {
	var procs []chaosProc
	// Exit times relative to the kill at ~1 s: before, during, after.
	sleeps := []float64{0.2, 1.5, 2.0, 2.5, 3.0, 5.0, 6.0}
	if outage > 10*time.Second {
		sleeps = []float64{0.2, 2.0, 5.0, 9.0, 13.0, 17.0, 20.0}
	}
	for i, s := range sleeps {
		id := fmt.Sprintf("c%d-%d", cycle, i)
		code := uint32(10 + i)
		f.startExiting(handles, id, s, code)
		procs = append(procs, chaosProc{id, id, []uint32{code}})
	}
	// One long-running container: its execs exit around the outage, it
	// does not exit at all.
	hostID := fmt.Sprintf("h%d", cycle)
	hostCtr, host := f.startSleeper(hostID)
	handles.keep(hostID, hostCtr, host)
	procs = append(procs, chaosProc{hostID, hostID, nil})
	for i, s := range []float64{0.3, 2.0, 3.5, 7.0} {
		execID := fmt.Sprintf("x%d", i)
		code := uint32(40 + i)
		f.execExiting(handles, hostID, host, execID, s, code)
		procs = append(procs, chaosProc{hostID, execID, []uint32{code}})
	}
	var shimVictim string
	var shimPid int
	if killShim {
		shimVictim = fmt.Sprintf("s%d", cycle)
		ctr, task := f.startSleeper(shimVictim)
		handles.keep(shimVictim, ctr, task)
		var err error
		if shimPid, err = parentPid(task.Pid()); err != nil {
			t.Fatal(err)
		}
		// containerd cleans up after a dead shim (137) or the task simply
		// vanishes and reconcile reports it gone (255).
		procs = append(procs, chaosProc{shimVictim, shimVictim, []uint32{137, 255}})
	}

	time.Sleep(time.Second) // the scenario: let the first ones exit while containerd is up
	env.Kill()
	if killShim {
		if err := syscall.Kill(shimPid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill shim %d: %v", shimPid, err)
		}
	}
	time.Sleep(outage) // the scenario: containerd is down this long
	if err := env.Start(); err != nil {
		t.Fatalf("restart containerd: %v", err)
	}
	// Our raw client reconnects on its own backoff; wait until it has.
	ctx, cancel := context.WithTimeout(f.ctx, waitTimeout)
	defer cancel()
	if ok, err := f.raw.IsServing(ctx); !ok || err != nil {
		t.Fatalf("client did not reconnect: %v", err)
	}
	t.Logf("cycle %d: containerd down for %s (shim killed: %v)", cycle, outage, killShim)
	return procs
}

// TestChaosExitsAcrossContainerdRestarts: every process gets exactly one
// EventExit with its real code across repeated containerd kills, including
// exits during the outage, an outage longer than the shim's re-sends, and a
// shim killed while containerd was down; none is invented for a process
// still running.
func TestChaosExitsAcrossContainerdRestarts(t *testing.T) {
	testenv.LogGuard(t) // an outage must not make the library log errors
	f := newFixture(t)
	var procs []chaosProc
	for cycle := 0; cycle < 3; cycle++ {
		procs = append(procs, chaosCycle(t, f, cycle, 3*time.Second, cycle == 1, nil)...)
	}
	procs = append(procs, chaosCycle(t, f, 3, 17*time.Second, false, nil)...)

	expectExit := func() bool {
		exits := f.backend.exits()
		for _, p := range procs {
			if p.codes != nil && len(exits[[2]string{p.container, p.process}]) == 0 {
				return false
			}
		}
		return true
	}
	f.backend.waitUntil(t, 60*time.Second, "every exit", expectExit)
	// Long enough for any shim re-send to arrive as a duplicate.
	time.Sleep(shimRetryWindow)

	exits := f.backend.exits()
	for _, p := range procs {
		got := exits[[2]string{p.container, p.process}]
		switch {
		case p.codes == nil && len(got) > 0:
			t.Errorf("%s/%s is running but got exits %+v", p.container, p.process, got)
		case p.codes != nil && len(got) != 1:
			t.Errorf("%s/%s: %d exits %+v, want exactly one", p.container, p.process, len(got), got)
		case p.codes != nil && !containsCode(p.codes, got[0].ExitCode):
			t.Errorf("%s/%s: exit code %d, want one of %v", p.container, p.process, got[0].ExitCode, p.codes)
		}
	}
	total := 0
	for _, evs := range exits {
		total += len(evs)
	}
	t.Logf("%d processes, %d exits delivered", len(procs), total)
	_ = types.EventExit
}

func containsCode(codes []uint32, c uint32) bool {
	for _, x := range codes {
		if x == c {
			return true
		}
	}
	return false
}
