package integration

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	v24 "github.com/lcdkit/libcontainerd/legacy/v24"
)

// moby v24's Container.Start: one call creates and starts the task; a start
// that fails leaves no task behind (it is force-deleted), and the container
// can start again.
func TestLegacyV24Start(t *testing.T) {
	ctx, ns := env.Context(t)
	hooks := &rpcHooks{}
	raw, err := env.Client(grpc.WithChainUnaryInterceptor(hooks.interceptor()))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	backend := newRecordingBackend()
	stateDir := t.TempDir()
	client, err := v24.NewClient(ctx, raw, stateDir, ns, backend)
	if err != nil {
		t.Fatal(err)
	}
	defer closeClient(t, client)
	f := &legacyFixture{t: t, ctx: ctx, raw: raw, stateDir: stateDir}

	ctr, err := client.NewContainer(ctx, "c", f.spec("c", env.SpecOpts("sh", "-c", "echo started; exit 4")...), "io.containerd.runc.v2", env.RuncOptions())
	if err != nil {
		t.Fatal(err)
	}
	hooks.failNextStart("c", status.Error(codes.Internal, "injected start failure"))
	_, err = ctr.Start(ctx, "", false, newStdio().attach)
	assertClass(t, err, "System")
	if err == nil || !strings.Contains(err.Error(), "injected start failure") {
		t.Fatalf("Start error %v lost the runtime's message", err)
	}
	if f.processExists("c", "") {
		t.Fatal("task left after a failed start")
	}
	if left := f.fifosOf("c", "c"); len(left) > 0 {
		t.Errorf("FIFOs left after a failed start: %v", left)
	}

	io := newStdio()
	task, err := ctr.Start(ctx, "", false, io.attach)
	if err != nil {
		t.Fatal(err)
	}
	if task.Pid() == 0 {
		t.Fatal("started task has pid 0")
	}
	io.waitLine(t, "started")
	if code := f.waitExit("c", ""); code != 4 {
		t.Fatalf("exit %d, want 4", code)
	}
	st, err := task.Delete(ctx)
	if err != nil || st.ExitCode() != 4 {
		t.Fatalf("Delete = %v, %v", st, err)
	}
	loaded, err := client.LoadContainer(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loaded.Task(ctx); err == nil {
		t.Fatal("task still there after Delete")
	}
	if err := loaded.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = client.LoadContainer(ctx, "c")
	assertClass(t, err, "NotFound")
}
