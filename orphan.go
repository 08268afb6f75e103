package libcontainerd

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	shimapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Orphan shims.
//
// A task create cut off by a containerd kill can leave a shim running that
// containerd does not know: on 1.6 a shim with no container that the
// restarted containerd loads (a task Delete clears it, see deleteOrphan; a
// task delete cut off after the shim deleted its container leaves the
// same, and is handled the same way); on
// 2.x a shim whose `start` child outlived containerd and came up after it
// restarted, whose bundle the new containerd deleted ("failed to load shim
// ... address: no such file"). Nothing in containerd can reach the second
// kind: every task call for the ID answers NotFound. So for a container
// whose create was cut off (and only then), once containerd says the task
// does not exist, the library asks such a shim itself to shut down, over
// the shim's own task API, as containerd would: the socket containerd names
// for that container, and only one a trusted shim serves (shimwatch.go). A
// shim shuts down only when it holds no task, so a live container is never
// touched.

// daemonAddress is the path of the containerd socket the client talks to
// ("" if unknown).
func (c *Client) daemonAddress() string {
	if c.client == nil {
		return ""
	}
	conn, ok := any(c.client.Conn()).(interface{ Target() string })
	if !ok {
		return ""
	}
	return strings.TrimPrefix(conn.Target(), "unix://")
}

// shutdownOrphanShim asks the shim containerd would have started for
// container id (the socket it names for it, if a trusted one serves there)
// to shut down: containerd has just said it has no task for id, after a
// create of this client's whose outcome was unknown. It reports whether it
// asked one.
func (c *Client) shutdownOrphanShim(id string) bool {
	socket := c.shimSocket(id)
	if socket == "" || c.trustedShimSocket(socket) != nil {
		return false
	}
	err := shutdownShim(socket, id)
	c.logger.WithError(err).WithField("container", id).
		Info("asked the shim of a task create or delete cut off earlier to shut down (it refuses if it holds a task)")
	return true
}

// shutdownShim asks the shim serving socket to shut down, as containerd
// does (the request names the task), over task API v3 (2.x) or v2. Its
// call is never cancelled: a timeout closes the connection instead.
func shutdownShim(socket, id string) error {
	conn, err := net.DialTimeout("unix", socket, shimDialTimeout)
	if err != nil {
		return err
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	t := time.AfterFunc(shimCallTimeout, func() { client.Close() })
	defer t.Stop()
	var firstErr error
	for _, service := range []string{shimTaskV3, shimTaskV2} {
		err := client.Call(context.Background(), service, "Shutdown", &shimapi.ShutdownRequest{ID: id, Now: true}, &emptypb.Empty{})
		if err == nil || errors.Is(err, ttrpc.ErrClosed) || strings.Contains(err.Error(), "closed") {
			return nil // it went away while answering
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}
