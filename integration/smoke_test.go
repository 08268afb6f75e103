package integration

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
)

// TestSmokeRawClient proves the harness: a busybox container created with
// the raw containerd client runs `echo hello` and its stdout is read back.
func TestSmokeRawClient(t *testing.T) {
	ctx, _ := env.Context(t)
	cli, err := env.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	ctr, err := cli.NewContainer(ctx, "smoke",
		containerd.WithNewSpec(env.SpecOpts("echo", "hello")...),
		containerd.WithRuntime("io.containerd.runc.v2", env.RuncOptions()))
	if err != nil {
		t.Fatal(err)
	}
	defer ctr.Delete(ctx)

	var stdout bytes.Buffer
	task, err := ctr.NewTask(ctx, cio.NewCreator(cio.WithStreams(nil, &stdout, io.Discard)))
	if err != nil {
		t.Fatal(err)
	}
	defer task.Delete(ctx, containerd.WithProcessKill)
	exitC, err := task.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-exitC:
		if st.ExitCode() != 0 {
			t.Fatalf("exit code %d", st.ExitCode())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("container did not exit")
	}
	if _, err := task.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(stdout.String()); got != "hello" {
		t.Fatalf("stdout = %q, want hello", got)
	}
}
