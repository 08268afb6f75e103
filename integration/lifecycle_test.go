package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	cgroup1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	"github.com/containerd/containerd"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/types"
)

func TestLifecycleStdout(t *testing.T) {
	f := newFixture(t)
	ctr := f.newContainer("echo", "sh", "-c", "echo hello; echo oops >&2; exit 3")
	if _, err := os.Stat(f.bundle("echo")); err != nil {
		t.Fatalf("bundle dir not created: %v", err)
	}
	io := newStdio()
	task, err := ctr.NewTask(f.ctx, "", false, io.attach)
	if err != nil {
		t.Fatal(err)
	}
	if task.Pid() == 0 {
		t.Fatal("Pid() is 0 after NewTask")
	}
	if err := task.Start(f.ctx); err != nil {
		t.Fatal(err)
	}
	if code := f.waitExit("echo", ""); code != 3 {
		t.Fatalf("exit code %d, want 3", code)
	}
	st, err := task.Delete(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode() != 3 || st.ExitTime().IsZero() {
		t.Fatalf("exit status %d at %v", st.ExitCode(), st.ExitTime())
	}
	if got := io.stdout(); got != "hello\n" {
		t.Fatalf("stdout %q", got)
	}
	f.assertNoFIFOs("echo")
	f.deleteContainer(t, ctr, "echo")
}

func TestInitStdinEOF(t *testing.T) {
	f := newFixture(t)
	ctr := f.newContainer("cat", "cat")
	io := newStdio()
	task, err := ctr.NewTask(f.ctx, "", true, io.attach)
	if err != nil {
		t.Fatal(err)
	}
	defer task.ForceDelete(f.ctx)
	if err := task.Start(f.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := io.stdin.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	io.waitLine(t, "ping")
	if err := io.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if code := f.waitExit("cat", ""); code != 0 {
		t.Fatalf("cat exited %d", code)
	}
	if err := io.stdin.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// Closing stdin inside the callback happens before the task exists: the
// close must be carried out once it does.
func TestInitStdinCloseBeforeCreate(t *testing.T) {
	f := newFixture(t)
	ctr := f.newContainer("cat", "cat")
	io := newStdio()
	io.closeStdinInAttach = true
	task, err := ctr.NewTask(f.ctx, "", true, io.attach)
	if err != nil {
		t.Fatal(err)
	}
	defer task.ForceDelete(f.ctx)
	if err := task.Start(f.ctx); err != nil {
		t.Fatal(err)
	}
	if code := f.waitExit("cat", ""); code != 0 {
		t.Fatalf("cat exited %d", code)
	}
}

// startSleeper starts a long-running container and returns its task.
func (f *fixture) startSleeper(id string) (types.Container, types.Task) {
	f.t.Helper()
	ctr := f.newContainer(id, "sleep", "1000")
	task, err := ctr.NewTask(f.ctx, "", false, newStdio().attach)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { task.ForceDelete(f.ctx) })
	if err := task.Start(f.ctx); err != nil {
		f.t.Fatal(err)
	}
	return ctr, task
}

func execSpec(args ...string) *specs.Process {
	return &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}}
}

func testExecStdin(t *testing.T, closeBeforeStart bool) {
	f := newFixture(t)
	_, task := f.startSleeper("c")
	io := newStdio()
	io.closeStdinInAttach = closeBeforeStart
	p, err := task.Exec(f.ctx, "e1", execSpec("cat"), true, io.attach)
	if err != nil {
		t.Fatal(err)
	}
	if !closeBeforeStart {
		if _, err := io.stdin.Write([]byte("pong\n")); err != nil {
			t.Fatal(err)
		}
		io.waitLine(t, "pong")
		if err := io.stdin.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if code := f.waitExit("c", "e1"); code != 0 {
		t.Fatalf("exec exited %d", code)
	}
	st, err := p.Delete(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode() != 0 {
		t.Fatalf("exit %d", st.ExitCode())
	}
	f.assertNoProcess("c", "e1")
	for _, name := range f.fifos("c") {
		if strings.HasPrefix(name, "e1-") {
			t.Errorf("exec FIFO %s left", name)
		}
	}
}

func TestExecStdinCloseBeforeStart(t *testing.T) { testExecStdin(t, true) }
func TestExecStdinCloseAfterStart(t *testing.T)  { testExecStdin(t, false) }

func TestExecTerminalResize(t *testing.T) {
	f := newFixture(t)
	_, task := f.startSleeper("c")
	io := newStdio()
	spec := execSpec("sh", "-c", "read x; stty size")
	spec.Terminal = true
	p, err := task.Exec(f.ctx, "tty", spec, true, io.attach)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Resize(f.ctx, 100, 40); err != nil {
		t.Fatal(err)
	}
	if _, err := io.stdin.Write([]byte("go\r")); err != nil {
		t.Fatal(err)
	}
	io.waitLine(t, "40 100")
	f.waitExit("c", "tty")
	if _, err := p.Delete(f.ctx); err != nil {
		t.Fatal(err)
	}
}

func TestExecExitCodeAndKill(t *testing.T) {
	f := newFixture(t)
	_, task := f.startSleeper("c")
	p, err := task.Exec(f.ctx, "k", execSpec("sleep", "100"), false, newStdio().attach)
	if err != nil {
		t.Fatal(err)
	}
	if p.Pid() == 0 {
		t.Fatal("exec pid 0")
	}
	if err := p.Kill(f.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if code := f.waitExit("c", "k"); code != 137 {
		t.Fatalf("exit %d, want 137", code)
	}
	if _, err := p.Delete(f.ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPauseResumeStatus(t *testing.T) {
	f := newFixture(t)
	_, task := f.startSleeper("c")
	want := func(s containerd.ProcessStatus) {
		t.Helper()
		st, err := task.Status(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != s {
			t.Fatalf("status %q, want %q", st.Status, s)
		}
	}
	want(containerd.Running)
	if err := task.Pause(f.ctx); err != nil {
		t.Fatal(err)
	}
	want(containerd.Paused)
	if err := task.Resume(f.ctx); err != nil {
		t.Fatal(err)
	}
	want(containerd.Running)
}

func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

func TestStatsAndUpdateResources(t *testing.T) {
	f := newFixture(t)
	_, task := f.startSleeper("c")
	limit := int64(64 << 20)
	if err := task.UpdateResources(f.ctx, &types.Resources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Fatal(err)
	}
	st, err := task.Stats(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Read.IsZero() {
		t.Error("stats read time is zero")
	}
	var got uint64
	switch m := st.Metrics.(type) {
	case *cgroup1stats.Metrics:
		if cgroupV2() {
			t.Fatal("cgroup v1 metrics on a cgroup v2 host")
		}
		got = m.Memory.Usage.Limit
	case *cgroup2stats.Metrics:
		if !cgroupV2() {
			t.Fatal("cgroup v2 metrics on a cgroup v1 host")
		}
		got = m.Memory.UsageLimit
	default:
		t.Fatalf("metrics of type %T", st.Metrics)
	}
	if got != uint64(limit) {
		t.Fatalf("memory limit %d, want %d", got, limit)
	}
	pids, err := task.Pids(f.ctx)
	if err != nil || len(pids) != 1 || pids[0].Pid != task.Pid() {
		t.Fatalf("Pids = %v, %v", pids, err)
	}
	sum, err := task.Summary(f.ctx)
	if err != nil || len(sum) != 1 {
		t.Fatalf("Summary = %v, %v", sum, err)
	}
}

func TestForceDeleteCreatedRunningStopped(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name  string
		start bool
		args  []string
	}{
		{"created", false, []string{"sleep", "100"}},
		{"running", true, []string{"sleep", "100"}},
		{"stopped", true, []string{"true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctr := f.newContainer(tc.name, tc.args...)
			task, err := ctr.NewTask(f.ctx, "", false, newStdio().attach)
			if err != nil {
				t.Fatal(err)
			}
			if tc.start {
				if err := task.Start(f.ctx); err != nil {
					t.Fatal(err)
				}
			}
			if tc.name == "stopped" {
				f.waitExit(tc.name, "")
			}
			if err := task.ForceDelete(f.ctx); err != nil {
				t.Fatal(err)
			}
			f.assertNoProcess(tc.name, "")
			f.assertNoFIFOs(tc.name)
			f.deleteContainer(t, ctr, tc.name)
		})
	}
}

// A restarted daemon makes a new client on the same state dir and finds its
// containers again: Task, AttachTask (stdout still flows) and Delete work,
// and the runc options come back from containerd.
func TestLoadContainerInNewClient(t *testing.T) {
	f := newFixture(t)
	ctr := f.newContainer("c", "sh", "-c", "i=0; while true; do i=$((i+1)); echo tick$i; sleep 0.05; done")
	task, err := ctr.NewTask(f.ctx, "", false, newStdio().attach)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(f.ctx); err != nil {
		t.Fatal(err)
	}
	// The first client goes away without closing the IO, as a daemon that
	// is killed would.
	second := f.newClient()
	loaded, err := second.LoadContainer(f.ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	plain, err := loaded.Task(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if plain.Pid() != task.Pid() {
		t.Fatalf("loaded pid %d, want %d", plain.Pid(), task.Pid())
	}
	io := newStdio()
	attached, err := loaded.AttachTask(f.ctx, io.attach)
	if err != nil {
		t.Fatal(err)
	}
	// Output written after the attach reaches the new reader.
	if !waitFor(func() bool { return strings.Contains(io.stdout(), "tick") }) {
		t.Fatalf("no output after reattach: %q", io.stdout())
	}
	if err := attached.ForceDelete(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.assertNoFIFOs("c")

	// Runc options recovered: a new task of the loaded container keeps its
	// runc state in the private root, not runc's host-global default.
	again, err := loaded.NewTask(f.ctx, "", false, newStdio().attach)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(env.RuncRoot(), f.ns, "c")); err != nil {
		t.Errorf("runc state not under the private root: %v", err)
	}
	if err := again.ForceDelete(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.deleteContainer(t, loaded, "c")
}

func TestReplaceContainerWithRunningTask(t *testing.T) {
	f := newFixture(t)
	f.startSleeper("r")
	ctr, err := libcontainerd.ReplaceContainer(f.ctx, f.client, "r", f.spec("r", "true"), "io.containerd.runc.v2", env.RuncOptions())
	if err != nil {
		t.Fatal(err)
	}
	f.assertNoProcess("r", "")
	task, err := ctr.NewTask(f.ctx, "", false, newStdio().attach)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(f.ctx); err != nil {
		t.Fatal(err)
	}
	if code := f.waitExit("r", ""); code != 0 {
		t.Fatalf("replaced container exited %d", code)
	}
	if _, err := task.Delete(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.deleteContainer(t, ctr, "r")
}

func TestVersion(t *testing.T) {
	f := newFixture(t)
	v, err := f.client.Version(f.ctx)
	if err != nil || v.Version == "" {
		t.Fatalf("Version = %+v, %v", v, err)
	}
}

// LIBCONTAINERD_NOCLEAN=1 keeps the bundle dir (for debugging a daemon).
func TestDeleteKeepsBundleWithNoclean(t *testing.T) {
	f := newFixture(t)
	ctr := f.newContainer("keep", "true")
	t.Setenv("LIBCONTAINERD_NOCLEAN", "1")
	if err := ctr.Delete(f.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.bundle("keep")); err != nil {
		t.Fatalf("bundle dir removed despite LIBCONTAINERD_NOCLEAN=1: %v", err)
	}
}

// The event stream ends with NewClient's context even without Close: the
// package's goleak check at exit proves its goroutines are gone.
func TestClientStopsWithContext(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(f.ctx)
	if _, err := libcontainerd.NewClient(ctx, f.raw, f.stateDir, f.ns, newRecordingBackend()); err != nil {
		t.Fatal(err)
	}
	cancel()
}

// Removing a container while its execs run (docker rm -f of a container with
// an exec) kills them with it; containerd 1.6's shim may publish their exits
// after the init's, and a shim shut down by the delete can take an unsent
// exit with it. Every process started still gets exactly one exit.
func TestForceDeleteWithExecsRunning(t *testing.T) {
	f := newFixture(t)
	for i := 0; i < 10; i++ {
		id := fmt.Sprintf("rm%d", i)
		ctr, task := f.startSleeper(id)
		for _, e := range []string{"e0", "e1"} {
			if _, err := task.Exec(f.ctx, e, execSpec("sleep", "1000"), false, newStdio().attach); err != nil {
				t.Fatal(err)
			}
		}
		if err := task.ForceDelete(f.ctx); err != nil {
			t.Fatal(err)
		}
		if err := ctr.Delete(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	checkExits(t, func() *exitLedger { return ledgerOf(f.backend) })
}
