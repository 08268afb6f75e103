package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	cgroup1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/types"
)

const (
	tourNamespace = "lcd-tour"
	stepTimeout   = 30 * time.Second
	// duplicateWindow: the shim re-sends an event it could not deliver
	// for up to 15 s; waiting past that shows there was no second exit.
	duplicateWindow = 16 * time.Second
)

// tour is one walk through the library; each step prints one line.
type tour struct {
	ctx     context.Context
	out     io.Writer
	h       *host
	client  types.Client
	events  *eventLog
	results []stepResult
	// what the steps share
	cat      types.Container
	catTask  types.Task
	catStdio *lines
	main     types.Container
	mainTask types.Task
}

type stepResult struct {
	name   string
	ok     bool
	detail string
	took   time.Duration
}

func tourCmd(args []string) error {
	fs := newFlagSet("tour", "[--state DIR]",
		"Starts a private containerd and walks through what libcontainerd does, one line per step, with the events as they arrive. Exit status 0 only if every step did what it says.")
	state := fs.String("state", "", "directory for the private containerd and the containers (default: a temp dir, removed afterwards)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := preflight(true); err != nil {
		return err
	}
	// Reconnect warnings are expected here (the tour kills containerd);
	// the steps say what happens.
	_ = log.SetLevel("error")
	t := &tour{ctx: context.Background(), out: os.Stdout}
	return t.run(*state)
}

// step runs one step and prints its line: the events it causes are printed
// under it as they arrive.
func (t *tour) step(name string, fn func() (string, error)) bool {
	fmt.Fprintf(t.out, "==> %s\n", name)
	start := time.Now()
	detail, err := fn()
	r := stepResult{name: name, ok: err == nil, detail: detail, took: time.Since(start)}
	if err != nil {
		r.detail = err.Error()
		fmt.Fprintf(t.out, "    FAIL: %v\n", err)
	} else {
		fmt.Fprintf(t.out, "    ok: %s\n", detail)
	}
	t.results = append(t.results, r)
	return r.ok
}

func (t *tour) run(state string) error {
	fmt.Fprintln(t.out, "libcontainerd tour: a private containerd, busybox containers, every event as the daemon's Backend sees it.")
	ok := t.step("start a private containerd (supervisor)", func() (string, error) {
		h, err := openHost(t.ctx, state, "")
		if err != nil {
			return "", err
		}
		t.h = h
		return fmt.Sprintf("pid %d, socket %s", h.daemonPID(), h.daemon.Address()), nil
	})
	if ok {
		ok = t.step("build a busybox-static rootfs", func() (string, error) {
			if err := t.h.buildRootfs(); err != nil {
				return "", err
			}
			return t.h.rootfs, nil
		})
	}
	if ok {
		ok = t.step("connect libcontainerd (NewClient)", t.connect)
	}
	if ok {
		t.step("create + start a container; stdin in, stdout out", t.stdio)
		t.step("close stdin: the process sees EOF and exits 0", t.stdinEOF)
		t.step("exec a process in a running container", t.exec)
		t.step("pause / resume", t.pauseResume)
		t.step("stats (memory, pids)", t.stats)
		t.step("exit code delivered through ProcessEvent", t.exitCode)
		t.step("containerd killed (SIGKILL) while a container exits", t.chaos)
	}
	t.step("clean up: containers, containerd, temp dir", t.cleanup)
	t.summary()
	for _, r := range t.results {
		if !r.ok {
			return exitError{1}
		}
	}
	return nil
}

func (t *tour) connect() (string, error) {
	t.events = newEventLog(t.out, "    ")
	c, err := libcontainerd.NewClient(t.ctx, t.h.cli, t.h.bundles(), tourNamespace, t.events)
	if err != nil {
		return "", err
	}
	t.client = c
	v, err := c.Version(t.ctx)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("containerd %s, namespace %s", v.Version, tourNamespace), nil
}

// newContainer creates a busybox container running args.
func (t *tour) newContainer(id string, args ...string) (types.Container, error) {
	spec, err := oci.GenerateSpec(namespaces.WithNamespace(t.ctx, tourNamespace), nil, &containers.Container{ID: id},
		oci.WithRootFSPath(t.h.rootfs), oci.WithRootFSReadonly(), oci.WithDefaultPathEnv, oci.WithProcessArgs(args...))
	if err != nil {
		return nil, err
	}
	return t.client.NewContainer(t.ctx, id, spec, "io.containerd.runc.v2", t.h.runcOptions())
}

// lines is a process's stdout, line by line, and its stdin.
type lines struct {
	stdin io.WriteCloser
	ch    chan string
	wg    sync.WaitGroup
}

func newLines() *lines { return &lines{ch: make(chan string, 64)} }

func (l *lines) attach(dio *cio.DirectIO) (cio.IO, error) {
	l.stdin = dio.Stdin
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		sc := bufio.NewScanner(dio.Stdout)
		for sc.Scan() {
			select {
			case l.ch <- sc.Text():
			default:
			}
		}
	}()
	if dio.Stderr != nil {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			_, _ = io.Copy(io.Discard, dio.Stderr)
		}()
	}
	return stdioWaiter{dio, &l.wg}, nil
}

func (l *lines) next() (string, error) {
	select {
	case s := <-l.ch:
		return s, nil
	case <-time.After(stepTimeout):
		return "", errors.New("no output")
	}
}

func (t *tour) stdio() (string, error) {
	ctr, err := t.newContainer("tour-cat", "cat")
	if err != nil {
		return "", err
	}
	t.cat, t.catStdio = ctr, newLines()
	task, err := ctr.NewTask(t.ctx, "", true, t.catStdio.attach)
	if err != nil {
		return "", err
	}
	t.catTask = task
	if err := task.Start(t.ctx); err != nil {
		return "", err
	}
	if _, err := io.WriteString(t.catStdio.stdin, "hello through the stdin FIFO\n"); err != nil {
		return "", err
	}
	got, err := t.catStdio.next()
	if err != nil {
		return "", err
	}
	if got != "hello through the stdin FIFO" {
		return "", fmt.Errorf("stdout said %q", got)
	}
	return fmt.Sprintf("pid %d echoed %q", task.Pid(), got), nil
}

func (t *tour) stdinEOF() (string, error) {
	if t.catTask == nil {
		return "", errors.New("no container from the previous step")
	}
	if err := t.catStdio.stdin.Close(); err != nil {
		return "", err
	}
	ei, err := t.events.waitExit(t.ctx, "tour-cat", "tour-cat", stepTimeout)
	if err != nil {
		return "", err
	}
	if ei.ExitCode != 0 {
		return "", fmt.Errorf("cat exited %d", ei.ExitCode)
	}
	if err := t.finish(t.cat, t.catTask); err != nil {
		return "", err
	}
	t.cat, t.catTask = nil, nil
	return "cat saw EOF, exit 0 via EventExit; task and container deleted", nil
}

func (t *tour) exec() (string, error) {
	ctr, err := t.newContainer("tour-main", "sleep", "300")
	if err != nil {
		return "", err
	}
	t.main = ctr
	task, err := ctr.NewTask(t.ctx, "", false, newLines().attach)
	if err != nil {
		return "", err
	}
	t.mainTask = task
	if err := task.Start(t.ctx); err != nil {
		return "", err
	}
	out := newLines()
	p, err := task.Exec(t.ctx, "hi", &specs.Process{Args: []string{"sh", "-c", "echo exec says hi; exit 3"}, Cwd: "/", Env: []string{"PATH=/bin"}}, false, out.attach)
	if err != nil {
		return "", err
	}
	got, err := out.next()
	if err != nil {
		return "", err
	}
	ei, err := t.events.waitExit(t.ctx, "tour-main", "hi", stepTimeout)
	if err != nil {
		return "", err
	}
	if _, err := p.Delete(t.ctx); err != nil {
		return "", err
	}
	if ei.ExitCode != 3 {
		return "", fmt.Errorf("exec exited %d, want 3", ei.ExitCode)
	}
	return fmt.Sprintf("exec printed %q and exited 3", got), nil
}

func (t *tour) pauseResume() (string, error) {
	if t.mainTask == nil {
		return "", errors.New("no running container")
	}
	if err := t.mainTask.Pause(t.ctx); err != nil {
		return "", err
	}
	paused, err := t.mainTask.Status(t.ctx)
	if err != nil {
		return "", err
	}
	if err := t.mainTask.Resume(t.ctx); err != nil {
		return "", err
	}
	running, err := t.mainTask.Status(t.ctx)
	if err != nil {
		return "", err
	}
	if paused.Status != containerd.Paused || running.Status != containerd.Running {
		return "", fmt.Errorf("status went %s → %s", paused.Status, running.Status)
	}
	return "status paused → running", nil
}

func (t *tour) stats() (string, error) {
	if t.mainTask == nil {
		return "", errors.New("no running container")
	}
	st, err := t.mainTask.Stats(t.ctx)
	if err != nil {
		return "", err
	}
	pids, err := t.mainTask.Pids(t.ctx)
	if err != nil {
		return "", err
	}
	switch m := st.Metrics.(type) {
	case *cgroup1stats.Metrics:
		return fmt.Sprintf("cgroup v1: memory %d KiB, %d pid(s)", m.Memory.Usage.Usage/1024, len(pids)), nil
	case *cgroup2stats.Metrics:
		return fmt.Sprintf("cgroup v2: memory %d KiB, %d pid(s)", m.Memory.Usage/1024, len(pids)), nil
	}
	return "", fmt.Errorf("metrics of unexpected type %T", st.Metrics)
}

// startShort creates and starts a container that exits on its own.
func (t *tour) startShort(id string, args ...string) (types.Container, types.Task, error) {
	ctr, err := t.newContainer(id, args...)
	if err != nil {
		return nil, nil, err
	}
	task, err := ctr.NewTask(t.ctx, "", false, newLines().attach)
	if err != nil {
		return ctr, nil, err
	}
	return ctr, task, task.Start(t.ctx)
}

func (t *tour) finish(ctr types.Container, task types.Task) error {
	if task != nil {
		if _, err := task.Delete(t.ctx); err != nil {
			return err
		}
	}
	if ctr != nil {
		return ctr.Delete(t.ctx)
	}
	return nil
}

func (t *tour) exitCode() (string, error) {
	ctr, task, err := t.startShort("tour-exit", "sh", "-c", "exit 42")
	if err != nil {
		return "", err
	}
	ei, err := t.events.waitExit(t.ctx, "tour-exit", "tour-exit", stepTimeout)
	if err != nil {
		return "", err
	}
	if err := t.finish(ctr, task); err != nil {
		return "", err
	}
	if ei.ExitCode != 42 {
		return "", fmt.Errorf("exit code %d, want 42", ei.ExitCode)
	}
	return "EventExit code=42", nil
}

// chaos kills containerd while a container exits: the supervisor restarts
// it, and the exit that happened while it was down is still delivered,
// exactly once (moby's client loses it).
func (t *tour) chaos() (string, error) {
	ctr, task, err := t.startShort("tour-chaos", "sh", "-c", "sleep 2; exit 7")
	if err != nil {
		return "", err
	}
	oldPID := t.h.daemonPID()
	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		return "", err
	}
	fmt.Fprintf(t.out, "    containerd pid %d killed; the container exits in 2 s, while containerd is down\n", oldPID)
	deadline := time.Now().Add(stepTimeout)
	for t.h.daemonPID() == oldPID || t.h.daemonPID() == 0 {
		if time.Now().After(deadline) {
			return "", errors.New("supervisor did not restart containerd")
		}
		time.Sleep(50 * time.Millisecond) // polling another process's state
	}
	newPID := t.h.daemonPID()
	fmt.Fprintf(t.out, "    supervisor restarted containerd as pid %d\n", newPID)
	ei, err := t.events.waitExit(t.ctx, "tour-chaos", "tour-chaos", 60*time.Second)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(t.out, "    waiting %s for any duplicate re-sent by the shim...\n", duplicateWindow)
	time.Sleep(duplicateWindow)
	n := t.events.exitCount("tour-chaos", "tour-chaos")
	if err := t.finish(ctr, task); err != nil {
		return "", err
	}
	if ei.ExitCode != 7 || n != 1 {
		return "", fmt.Errorf("%d exit(s), code %d: want exactly one, code 7", n, ei.ExitCode)
	}
	return fmt.Sprintf("exit 7 delivered exactly once across the restart (containerd %d → %d); moby's client loses it", oldPID, newPID), nil
}

func (t *tour) cleanup() (string, error) {
	var errs []error
	if t.catTask != nil {
		errs = append(errs, t.catTask.ForceDelete(t.ctx))
	}
	if t.cat != nil {
		errs = append(errs, t.cat.Delete(t.ctx))
	}
	if t.mainTask != nil {
		errs = append(errs, t.mainTask.ForceDelete(t.ctx))
	}
	if t.main != nil {
		errs = append(errs, t.main.Delete(t.ctx))
	}
	left := 0
	if t.h != nil && t.h.cli != nil {
		ctrs, err := t.h.cli.ContainerService().List(namespaces.WithNamespace(t.ctx, tourNamespace))
		errs = append(errs, err)
		left = len(ctrs)
	}
	if t.client != nil {
		errs = append(errs, t.client.(*libcontainerd.Client).Close())
	}
	if t.h == nil {
		return "", errors.Join(errs...)
	}
	pid, dir := t.h.daemonPID(), t.h.dir
	errs = append(errs, t.h.close())
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	if left != 0 {
		return "", fmt.Errorf("%d container(s) left", left)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil && pid != 0 {
		return "", fmt.Errorf("containerd pid %d still running", pid)
	}
	if t.h.ownDir {
		if _, err := os.Stat(dir); err == nil {
			return "", fmt.Errorf("%s still exists", dir)
		}
		return fmt.Sprintf("no containers left, containerd %d stopped, %s removed", pid, dir), nil
	}
	return fmt.Sprintf("no containers left, containerd %d stopped (state kept in %s)", pid, dir), nil
}

func (t *tour) summary() {
	fmt.Fprintln(t.out)
	w := tabwriter.NewWriter(t.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "STEP\tRESULT\tTIME")
	passed := 0
	for _, r := range t.results {
		result := "ok"
		if !r.ok {
			result = "FAIL"
		} else {
			passed++
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", r.name, result, r.took.Round(time.Millisecond))
	}
	w.Flush()
	fmt.Fprintf(t.out, "\n%d of %d steps ok; events delivered: %d\n", passed, len(t.results), t.totalEvents())
}

func (t *tour) totalEvents() int {
	if t.events == nil {
		return 0
	}
	n := 0
	for _, et := range []types.EventType{types.EventCreate, types.EventStart, types.EventExit, types.EventExecAdded, types.EventExecStarted, types.EventPaused, types.EventResumed, types.EventOOM} {
		n += t.events.count(et)
	}
	return n
}
