package libcontainerd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
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
// restarted containerd loads (a task Delete clears it, see deleteOrphan); on
// 2.x a shim whose `start` child outlived containerd and came up after it
// restarted, whose bundle the new containerd deleted ("failed to load shim
// ... address: no such file"). Nothing in containerd can reach the second
// kind: every task call for the ID answers NotFound. So for a container
// whose create was cut off (and only then), once containerd says the task
// does not exist, the library asks such a shim itself to shut down, over
// the shim's own task API, as containerd would. A shim shuts down only when
// it holds no task, so a live container is never touched.

// shimSocketRoot is where shims serve (containerd's default state dir).
const shimSocketRoot = "/run/containerd/s"

// daemonAddress is the path of the containerd socket the client talks to
// ("" if unknown).
func (c *Client) daemonAddress() string {
	conn, ok := any(c.client.Conn()).(interface{ Target() string })
	if !ok {
		return ""
	}
	return strings.TrimPrefix(conn.Target(), "unix://")
}

// shutdownOrphanShims shuts down every shim of this client's daemon and
// namespace that serves container id, which containerd has just said it has
// no task for. It reports how many it asked.
func (c *Client) shutdownOrphanShims(id string) int {
	address := c.daemonAddress()
	if address == "" {
		return 0
	}
	asked := 0
	for _, pid := range shimPids(address, c.ns, id) {
		// The shim's socket is named by containerd's address, the
		// namespace and the ID (containerd's shim.SocketAddress).
		sum := sha256.Sum256([]byte(filepath.Join(address, c.ns, id)))
		socket := filepath.Join(shimSocketRoot, fmt.Sprintf("%x", sum))
		err := shutdownShim(socket)
		c.logger.WithError(err).WithField("container", id).WithField("shim-pid", pid).
			Warn("asked an orphan shim, left by a task create cut off earlier, to shut down")
		asked++
	}
	return asked
}

// shutdownShim asks the shim serving socket to shut down, over task API v3
// (2.x) or v2.
func shutdownShim(socket string) error {
	conn, err := net.DialTimeout("unix", socket, shimDialTimeout)
	if err != nil {
		return err
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	var firstErr error
	for _, service := range []string{shimTaskV3, shimTaskV2} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := client.Call(ctx, service, "Shutdown", &shimapi.ShutdownRequest{Now: true}, &emptypb.Empty{})
		cancel()
		if err == nil || strings.Contains(err.Error(), "closed") {
			return nil // it went away while answering
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// shimPids lists the shims started for daemon address, namespace ns and
// container id, from their command lines.
func shimPids(address, ns, id string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := [][]byte{
		[]byte("\x00-namespace\x00" + ns + "\x00"),
		[]byte("\x00-id\x00" + id + "\x00"),
		[]byte("\x00-address\x00" + address + "\x00"),
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte("containerd-shim")) {
			continue
		}
		cmdline = append(cmdline, 0)
		match := true
		for _, w := range want {
			match = match && bytes.Contains(cmdline, w)
		}
		if match {
			pids = append(pids, pid)
		}
	}
	return pids
}
