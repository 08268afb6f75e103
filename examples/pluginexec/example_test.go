package pluginexec_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"syscall"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/oci"
	runcoptions "github.com/containerd/containerd/runtime/v2/runc/options"

	"github.com/lcdkit/libcontainerd/examples/pluginexec"
)

// manager is the daemon's plugin manager: it hears about every plugin exit,
// once.
type manager struct{ exited chan string }

func (m manager) HandleExitEvent(id string) error {
	m.exited <- id
	return nil
}

// nopCloser keeps the executor from closing our stdout when the plugin's
// output ends.
type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// Wire an executor to containerd, run a plugin, restore it in a second
// executor as a restarted daemon would, and stop it.
func Example() {
	ctx := context.Background()
	const ns = "plugins.mydaemon"
	cli, err := containerd.New("/run/containerd/containerd.sock")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cli.Close()

	m := manager{exited: make(chan string, 1)}
	shimOpts := &runcoptions.Options{Root: "/run/mydaemon/runc"}
	executor, err := pluginexec.New(ctx, "/var/lib/mydaemon/plugins", cli, ns, m, "io.containerd.runc.v2", shimOpts)
	if err != nil {
		fmt.Println(err)
		return
	}

	spec, err := oci.GenerateSpec(namespaces.WithNamespace(ctx, ns), nil, &containers.Container{ID: "my-plugin"},
		oci.WithRootFSPath("/var/lib/mydaemon/plugins/rootfs"), oci.WithProcessArgs("/my-plugin", "--listen", "/run/plugin.sock"))
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := executor.Create("my-plugin", *spec, nopCloser{os.Stdout}, nopCloser{os.Stderr}); err != nil {
		fmt.Println(err)
		return
	}

	// The daemon restarts: a new executor on the same directories takes
	// the running plugin over.
	_ = executor.Close()
	executor, err = pluginexec.New(ctx, "/var/lib/mydaemon/plugins", cli, ns, m, "io.containerd.runc.v2", shimOpts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer executor.Close()
	if alive, err := executor.Restore("my-plugin", nopCloser{os.Stdout}, nopCloser{os.Stderr}); err != nil || !alive {
		fmt.Println("plugin not restored:", err)
		return
	}

	if err := executor.Signal("my-plugin", syscall.SIGTERM); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("exited:", <-m.exited) // its task and container are gone
}
