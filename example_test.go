package libcontainerd_test

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/types"
)

// monitor is the daemon's side: it receives every event, in order per
// container.
type monitor struct{ exited chan types.EventInfo }

func (m *monitor) ProcessEvent(containerID string, et types.EventType, ei types.EventInfo) error {
	if et == types.EventExit && ei.ProcessID == containerID {
		m.exited <- ei
	}
	return nil
}

// Run a container to completion: NewClient → NewContainer → NewTask → Start
// → (exit event) → Delete.
func Example() {
	ctx := context.Background()
	cli, err := containerd.New("/run/containerd/containerd.sock", containerd.WithDefaultRuntime("io.containerd.runc.v2"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cli.Close()

	m := &monitor{exited: make(chan types.EventInfo, 1)}
	client, err := libcontainerd.NewClient(ctx, cli, "/var/run/mydaemon/containerd", "mydaemon", m)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer client.(*libcontainerd.Client).Close()

	spec, err := oci.GenerateSpec(namespaces.WithNamespace(ctx, "mydaemon"), nil, &containers.Container{ID: "hello"},
		oci.WithRootFSPath("/srv/rootfs"), oci.WithProcessArgs("echo", "hello"))
	if err != nil {
		fmt.Println(err)
		return
	}
	ctr, err := client.NewContainer(ctx, "hello", spec, "io.containerd.runc.v2", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	// The callback gets the process's FIFOs; here stdout is copied to ours.
	attach := func(dio *cio.DirectIO) (cio.IO, error) {
		go io.Copy(os.Stdout, dio.Stdout)
		go io.Copy(io.Discard, dio.Stderr)
		return dio, nil
	}
	task, err := ctr.NewTask(ctx, "", false, attach)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := task.Start(ctx); err != nil {
		_ = task.ForceDelete(ctx)
		fmt.Println(err)
		return
	}
	ei := <-m.exited
	fmt.Println("exit code", ei.ExitCode)
	if _, err := task.Delete(ctx); err != nil {
		fmt.Println(err)
	}
	if err := ctr.Delete(ctx); err != nil {
		fmt.Println(err)
	}
}
