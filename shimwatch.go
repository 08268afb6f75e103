package libcontainerd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	shimapi "github.com/containerd/containerd/api/runtime/task/v3"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"

	"github.com/lcdkit/libcontainerd/types"
)

// Exits while containerd is down.
//
// A process that exits while containerd is down is reported by nobody:
// containerd publishes nothing for it when it comes back. Up to 1.6 its shim
// keeps the exit status, and reconcile reads it after the restart. From 1.7
// on (and in 2.x) a restarting containerd deletes every task whose processes
// are all gone before it serves anything ("cleaning leaked shim process",
// its fix for containerd #6860): the task and its exit status vanish, and
// reconcile could only say 255. Until that moment the status is in the shim.
// So while the event stream is down the client asks each tracked process's
// shim itself, over the shim's own ttrpc task API, and delivers the exits it
// hears of; reconcile covers whatever it could not reach.

const (
	// shimDialTimeout bounds connecting to one shim's socket.
	shimDialTimeout = time.Second
	// The shim task API: 2.x shims serve v3 only (bootstrap.json says so),
	// older ones v2 only. The Wait messages are the same on both.
	shimTaskV2 = "containerd.task.v2.Task"
	shimTaskV3 = "containerd.task.v3.Task"
)

// shimEndpoint is where a shim's task API is served.
type shimEndpoint struct {
	socket  string // unix socket path
	service string // ttrpc service name of its task API
	pid     uint32 // the init process it was found through
}

// shimSockets remembers each container's shim endpoint, looked up while the
// container runs: once its processes are gone, the shim can no longer be
// found through them.
type shimSockets struct {
	mu     sync.Mutex
	byName map[string]shimEndpoint // by container ID
}

func (s *shimSockets) get(containerID string) (shimEndpoint, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.byName[containerID]
	return e, ok
}

func (s *shimSockets) set(containerID string, e shimEndpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byName == nil {
		s.byName = map[string]shimEndpoint{}
	}
	s.byName[containerID] = e
}

// forget drops the endpoint of the task whose init was pid (0: whichever):
// a late TaskDelete of a container's previous task must leave the current
// one's.
func (s *shimSockets) forget(containerID string, pid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.byName[containerID]; ok && (pid == 0 || e.pid == pid) {
		delete(s.byName, containerID)
	}
}

// noteShim records the shim endpoint of a container whose init process pid
// has just started.
func (c *Client) noteShim(containerID string, pid uint32) {
	if e, ok := c.shims.get(containerID); ok && e.pid == pid {
		return // Start noted it; this is its TaskStart event
	}
	if e, err := findShim(c.ns, pid); err == nil {
		e.pid = pid
		c.shims.set(containerID, e)
	} else {
		c.logger.WithError(err).WithField("container", containerID).Debug("shim not found")
	}
}

// findShim finds the endpoint of the shim that runs process pid in namespace
// ns: the shim is the process's parent (its subreaper) and runs in the task's
// bundle directory, which says where it serves: bootstrap.json from 2.0 on
// (address, protocol and task API version), a file named "address" before.
func findShim(ns string, pid uint32) (shimEndpoint, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return shimEndpoint{}, err
	}
	// The command name may contain spaces and parentheses: the fields
	// after it start past the last ')'; the parent is the second.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return shimEndpoint{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 2 {
		return shimEndpoint{}, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return shimEndpoint{}, err
	}
	// Only a shim of our namespace: anything else is not ours to dial.
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", ppid))
	if err != nil {
		return shimEndpoint{}, err
	}
	if !bytes.Contains(cmdline, []byte("containerd-shim")) || !bytes.Contains(cmdline, []byte("\x00-namespace\x00"+ns+"\x00")) {
		return shimEndpoint{}, fmt.Errorf("parent %d of %d is not a shim of namespace %s", ppid, pid, ns)
	}
	bundle := fmt.Sprintf("/proc/%d/cwd/", ppid)
	e := shimEndpoint{service: shimTaskV2}
	var address string
	if b, err := os.ReadFile(bundle + "bootstrap.json"); err == nil {
		var params struct {
			Version  int    `json:"version"`
			Address  string `json:"address"`
			Protocol string `json:"protocol"`
		}
		if err := json.Unmarshal(b, &params); err != nil {
			return shimEndpoint{}, fmt.Errorf("shim %d bootstrap.json: %w", ppid, err)
		}
		if params.Protocol != "" && params.Protocol != "ttrpc" {
			return shimEndpoint{}, fmt.Errorf("shim %d serves %s, not ttrpc", ppid, params.Protocol)
		}
		if params.Version >= 3 {
			e.service = shimTaskV3
		}
		address = params.Address
	} else if b, err := os.ReadFile(bundle + "address"); err == nil {
		address = strings.TrimSpace(string(b))
	} else {
		return shimEndpoint{}, fmt.Errorf("shim %d: no bootstrap.json or address in its bundle: %w", ppid, err)
	}
	socket, ok := strings.CutPrefix(address, "unix://")
	if !ok {
		return shimEndpoint{}, fmt.Errorf("shim %d has address %q, not a unix socket", ppid, address)
	}
	e.socket = socket
	return e, nil
}

// watchShims waits, on its shim, for every process this client has seen
// running and delivers each exit it hears of. stop ends the waits and
// returns once every one has, so that what they learned is delivered before
// reconcile looks.
func (c *Client) watchShims(ctx context.Context) (stop func()) {
	tracked := c.tracker.runningSnapshot()
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop = func() { cancel(); wg.Wait() }
	if len(tracked) == 0 {
		return stop
	}
	byContainer := map[string][]procKey{}
	for key := range tracked {
		byContainer[key.containerID] = append(byContainer[key.containerID], key)
	}
	for containerID, keys := range byContainer {
		shim, found := c.shims.get(containerID)
		if !found {
			// Not seen starting (a task adopted after a restart):
			// any live process of the container leads to its shim.
			for _, key := range keys {
				if e, err := findShim(c.ns, tracked[key]); err == nil {
					shim, found = e, true
					break
				}
			}
		}
		if !found {
			continue // reconcile will have to do
		}
		conn, err := net.DialTimeout("unix", shim.socket, shimDialTimeout)
		if err != nil {
			c.logger.WithError(err).WithField("container", containerID).Debug("cannot reach shim while containerd is down")
			continue
		}
		client := ttrpc.NewClient(conn)
		var procs sync.WaitGroup
		for _, key := range keys {
			key, pid := key, tracked[key]
			procs.Add(1)
			go func() {
				defer procs.Done()
				c.waitOnShim(ctx, client, shim.service, key, pid)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			procs.Wait()
			_ = client.Close()
		}()
	}
	return stop
}

// waitOnShim waits for one process on its shim and delivers its exit.
func (c *Client) waitOnShim(ctx context.Context, client *ttrpc.Client, service string, key procKey, pid uint32) {
	req := &shimapi.WaitRequest{ID: key.containerID}
	if key.processID != key.containerID {
		req.ExecID = key.processID
	}
	var resp shimapi.WaitResponse
	err := client.Call(ctx, service, "Wait", req, &resp)
	if err != nil {
		if ctx.Err() == nil {
			c.logger.WithError(err).WithFields(log.Fields{"container": key.containerID, "process": key.processID}).Debug("wait on shim")
		}
		return
	}
	c.logger.WithFields(log.Fields{"container": key.containerID, "process": key.processID, "exit-code": resp.ExitStatus}).
		Info("delivering an exit heard from the shim while containerd is down")
	c.emit(types.EventExit, types.EventInfo{
		ContainerID: key.containerID, ProcessID: key.processID, Pid: pid,
		ExitCode: resp.ExitStatus, ExitedAt: timeOf(resp.ExitedAt),
	})
}
