package integration

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	cerrdefs "github.com/containerd/containerd/errdefs" // the client's own: separate sentinels at v1.7.12
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// SPEC §8: every bad input gets a classified error, no panic, and leaves
// nothing behind.

func TestNewContainerInvalidID(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"", strings.Repeat("a", 77), "a/b", "..", "../x", "/abs", "a b"} {
		_, err := f.client.NewContainer(f.ctx, id, f.spec("x", "true"), "io.containerd.runc.v2", env.RuncOptions())
		assertClass(t, err, "InvalidParameter")
	}
	entries, _ := os.ReadDir(f.stateDir)
	if len(entries) != 0 {
		t.Fatalf("state dir not empty: %v", entries)
	}
	ctrs, err := f.raw.ContainerService().List(f.ctx)
	if err != nil || len(ctrs) != 0 {
		t.Fatalf("containers created: %v %v", ctrs, err)
	}
	for method, n := range f.rpcs.snapshot() {
		if !strings.Contains(method, ".events.") && !strings.HasSuffix(method, "/List") {
			t.Errorf("%s called %d times for invalid IDs", method, n)
		}
	}
}

func TestNewContainerNilSpec(t *testing.T) {
	f := newFixture(t)
	_, err := f.client.NewContainer(f.ctx, "nilspec", nil, "io.containerd.runc.v2", env.RuncOptions())
	assertClass(t, err, "InvalidParameter")
	f.assertGone("nilspec")
}

func TestNewTaskNilProcess(t *testing.T) {
	f := newFixture(t)
	spec := f.spec("noproc", "true")
	spec.Process = nil
	ctr, err := f.client.NewContainer(f.ctx, "noproc", spec, "io.containerd.runc.v2", env.RuncOptions())
	if err != nil {
		t.Fatal(err)
	}
	_, err = ctr.NewTask(f.ctx, "", true, newStdio().attach)
	assertClass(t, err, "InvalidParameter")
	f.assertNoFIFOs("noproc")
	f.assertNoProcess("noproc", "")
	f.deleteContainer(t, ctr, "noproc")
}

func TestExecNilSpecAndBadID(t *testing.T) {
	f := newFixture(t)
	_, task := f.startSleeper("c")
	_, err := task.Exec(f.ctx, "e", nil, false, newStdio().attach)
	assertClass(t, err, "InvalidParameter")
	for _, id := range []string{"", "../e", "a/b"} {
		_, err := task.Exec(f.ctx, id, execSpec("true"), false, newStdio().attach)
		assertClass(t, err, "InvalidParameter")
	}
	if left := f.fifos("c"); len(left) != 1 || left[0] != "c-stdout" && len(left) > 2 {
		// Only the init process's FIFOs may be there.
		for _, name := range left {
			if !strings.HasPrefix(name, "c-") {
				t.Errorf("FIFO %s left", name)
			}
		}
	}
}

func TestNewContainerDuplicateID(t *testing.T) {
	f := newFixture(t)
	_, task := f.startSleeper("dup")
	before := f.fifos("dup")
	_, err := f.client.NewContainer(f.ctx, "dup", f.spec("dup", "true"), "io.containerd.runc.v2", env.RuncOptions())
	assertClass(t, err, "Conflict")
	if !strings.Contains(err.Error(), "id already in use") {
		t.Errorf("message %q", err)
	}
	if !cerrdefs.IsAlreadyExists(err) {
		t.Errorf("containerd's AlreadyExists cause lost: %v", err)
	}
	// The existing container is untouched: bundle, FIFOs, task.
	if after := f.fifos("dup"); len(after) != len(before) {
		t.Errorf("FIFOs changed: %v -> %v", before, after)
	}
	st, err := task.Status(f.ctx)
	if err != nil || st.Status != containerd.Running {
		t.Errorf("existing task: %v %v", st, err)
	}
}

func TestExecDuplicateID(t *testing.T) {
	f := newFixture(t)
	_, task := f.startSleeper("c")
	io := newStdio()
	first, err := task.Exec(f.ctx, "e", execSpec("cat"), true, io.attach)
	if err != nil {
		t.Fatal(err)
	}
	_, err = task.Exec(f.ctx, "e", execSpec("true"), true, newStdio().attach)
	assertClass(t, err, "Conflict")
	if !strings.Contains(err.Error(), "id already in use") {
		t.Errorf("message %q", err)
	}
	_, err = task.Exec(f.ctx, "c", execSpec("true"), false, newStdio().attach)
	assertClass(t, err, "Conflict")
	// The first exec's stdio still works.
	if _, err := io.stdin.Write([]byte("still\n")); err != nil {
		t.Fatal(err)
	}
	io.waitLine(t, "still")
	io.stdin.Close()
	if code := f.waitExit("c", "e"); code != 0 {
		t.Fatalf("first exec exited %d", code)
	}
	if _, err := first.Delete(f.ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNewTaskUnknownShim(t *testing.T) {
	f := newFixture(t)
	ctr, err := f.client.NewContainer(f.ctx, "shim", f.spec("shim", "true"), "io.containerd.nope.v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = ctr.NewTask(f.ctx, "", true, newStdio().attach)
	if err == nil {
		t.Fatal("NewTask with an unknown shim succeeded")
	}
	if mobyClass(err) == "" {
		t.Errorf("unclassified: %v", err)
	}
	f.assertNoFIFOs("shim")
	f.assertNoProcess("shim", "")
	f.deleteContainer(t, ctr, "shim")
}

func TestNewTaskMissingBinary(t *testing.T) {
	f := newFixture(t)
	ctr := f.newContainer("nobin", "/nonexistent")
	_, err := ctr.NewTask(f.ctx, "", true, newStdio().attach)
	if err == nil {
		t.Fatal("NewTask of a missing binary succeeded")
	}
	if !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("runtime message lost: %v", err)
	}
	if mobyClass(err) == "" {
		t.Errorf("unclassified: %v", err)
	}
	f.assertNoFIFOs("nobin")
	f.assertNoProcess("nobin", "")
	f.deleteContainer(t, ctr, "nobin")
}

func TestExecMissingBinary(t *testing.T) {
	f := newFixture(t)
	_, task := f.startSleeper("c")
	_, err := task.Exec(f.ctx, "nobin", execSpec("/nonexistent"), true, newStdio().attach)
	if err == nil {
		t.Fatal("exec of a missing binary succeeded")
	}
	if !strings.Contains(err.Error(), "no such file or directory") {
		t.Errorf("runtime message lost: %v", err)
	}
	f.assertNoProcess("c", "nobin")
	for _, name := range f.fifos("c") {
		if strings.HasPrefix(name, "nobin-") {
			t.Errorf("FIFO %s left", name)
		}
	}
	// The ID is free again.
	p, err := task.Exec(f.ctx, "nobin", execSpec("true"), false, newStdio().attach)
	if err != nil {
		t.Fatal(err)
	}
	f.waitExit("c", "nobin")
	if _, err := p.Delete(f.ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNewTaskCancelledContext(t *testing.T) {
	f := newFixture(t)
	ctr := f.newContainer("cancel", "true")
	ctx, cancel := context.WithCancel(f.ctx)
	cancel()
	_, err := ctr.NewTask(ctx, "", true, newStdio().attach)
	assertClass(t, err, "Cancelled")
	f.assertNoFIFOs("cancel")
	f.assertNoProcess("cancel", "")
	f.deleteContainer(t, ctr, "cancel")
}

func TestNotFound(t *testing.T) {
	f := newFixture(t)
	_, err := f.client.LoadContainer(f.ctx, "missing")
	assertClass(t, err, "NotFound")
	if !strings.Contains(err.Error(), "no such container") {
		t.Errorf("message %q", err)
	}
	ctr := f.newContainer("notask", "true")
	_, err = ctr.Task(f.ctx)
	assertClass(t, err, "NotFound")
	_, err = ctr.AttachTask(f.ctx, newStdio().attach)
	assertClass(t, err, "NotFound")
	if err := ctr.Delete(f.ctx); err != nil {
		t.Fatal(err)
	}
	err = ctr.Delete(f.ctx)
	assertClass(t, err, "NotFound")
}

func TestDeleteContainerWithTask(t *testing.T) {
	f := newFixture(t)
	ctr, _ := f.startSleeper("busy")
	err := ctr.Delete(f.ctx)
	assertClass(t, err, "Conflict")
	if _, err := f.raw.ContainerService().Get(f.ctx, "busy"); err != nil {
		t.Fatalf("container deleted under its task: %v", err)
	}
}

func TestNewContainerUnknownRuntimeOptions(t *testing.T) {
	f := newFixture(t)
	// A value typeurl cannot marshal: the create fails before any RPC and
	// removes the bundle dir it made.
	_, err := f.client.NewContainer(f.ctx, "badopts", f.spec("badopts", "true"), "io.containerd.runc.v2", struct{ X chan int }{})
	if err == nil {
		t.Fatal("bad runtime options accepted")
	}
	if mobyClass(err) == "" {
		t.Errorf("unclassified: %v", err)
	}
	f.assertGone("badopts")
}

// A bundle label pointing outside the state dir is data, not a licence to
// remove that directory.
func TestDeleteBundleOutsideStateDir(t *testing.T) {
	f := newFixture(t)
	outside := t.TempDir()
	marker := filepath.Join(outside, "keep")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	spec, err := typeurl.MarshalAny(f.spec("out", "true"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.raw.ContainerService().Create(namespaces.WithNamespace(f.ctx, f.ns), containers.Container{
		ID:      "out",
		Labels:  map[string]string{"com.docker/engine.bundle.path": outside},
		Runtime: containers.RuntimeInfo{Name: "io.containerd.runc.v2"},
		Spec:    spec,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := f.client.LoadContainer(f.ctx, "out")
	if err != nil {
		t.Fatal(err)
	}
	if err := ctr.Delete(f.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("directory outside the state dir was removed: %v", err)
	}
	if _, err := f.raw.ContainerService().Get(f.ctx, "out"); !cerrdefs.IsNotFound(err) {
		t.Fatalf("container not deleted: %v", err)
	}
}

func TestNilCallbackAndResources(t *testing.T) {
	f := newFixture(t)
	ctr := f.newContainer("nil", "sleep", "100")
	_, err := ctr.NewTask(f.ctx, "", false, nil)
	assertClass(t, err, "InvalidParameter")
	_, task := f.startSleeper("c")
	assertClass(t, task.UpdateResources(f.ctx, nil), "InvalidParameter")
	_, err = task.Exec(f.ctx, "x", execSpec("true"), false, nil)
	assertClass(t, err, "InvalidParameter")
	_ = specs.Spec{}
}
