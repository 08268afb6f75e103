package libcontainerd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	shimapi "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
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
// shim itself, over the shim's own ttrpc task API, and reports the exits it
// hears of to the ledger, which delivers them once containerd serves again;
// the reconciler covers whatever it could not reach.

const (
	// shimDialTimeout bounds connecting to one shim's socket.
	shimDialTimeout = time.Second
	// shimDialers bounds the shims dialled at once.
	shimDialers = 16
	// shimPollInterval is how often a shim is asked about its execs (its
	// init is waited on, reported the moment it exits): their status stays
	// in the shim while the init lives, so this only bounds latency.
	shimPollInterval = time.Second
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

// watchShims starts watching, on its shim, every process whose exit is not
// known, and returns at once: the new subscription never waits for the
// watch. What it hears goes to the ledger, which delivers it once containerd
// serves again (so the daemon's Delete on that exit can act). A process the
// ledger learns of during the outage (a Start cut off by the kill reports
// itself a moment after the stream broke) is watched too. stop ends the
// watch without waiting; Close waits for its goroutines.
//
// Bounded: at most shimDialers dials at once, one connection per shim, one
// goroutine per shim (not per process).
func (c *Client) watchShims(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	c.watches.Add(1)
	go func() {
		defer c.watches.Done()
		dials := make(chan struct{}, shimDialers)
		watched := map[procKey]bool{}
		for {
			byContainer := map[string]map[procKey]uint32{}
			for key, pid := range c.ledger.tracked() {
				if watched[key] {
					continue
				}
				watched[key] = true
				if byContainer[key.containerID] == nil {
					byContainer[key.containerID] = map[procKey]uint32{}
				}
				byContainer[key.containerID][key] = pid
			}
			for containerID, procs := range byContainer {
				c.watches.Add(1)
				go func(containerID string, procs map[procKey]uint32) {
					defer c.watches.Done()
					c.watchShim(ctx, dials, containerID, procs)
				}(containerID, procs)
			}
			select {
			case <-ctx.Done():
				return
			case <-c.ledger.added:
			}
		}
	}()
	return cancel
}

// watchShim watches one container's processes on its shim: it waits on the
// init (the common exit, reported at once) and asks after each exec between
// waits, until all have exited or ctx ends.
func (c *Client) watchShim(ctx context.Context, dials chan struct{}, containerID string, procs map[procKey]uint32) {
	shim, found := c.shims.get(containerID)
	if !found {
		// Not seen starting (a task adopted after a restart): any live
		// process of the container leads to its shim.
		for _, pid := range procs {
			if e, err := findShim(c.ns, pid); err == nil {
				shim, found = e, true
				break
			}
		}
	}
	if !found {
		return // the reconciler will have to do
	}
	select {
	case dials <- struct{}{}:
	case <-ctx.Done():
		return
	}
	conn, err := net.DialTimeout("unix", shim.socket, shimDialTimeout)
	<-dials
	if err != nil {
		c.logger.WithError(err).WithField("container", containerID).Debug("cannot reach shim while containerd is down")
		return
	}
	client := ttrpc.NewClient(conn)
	defer client.Close()
	logger := c.logger.WithField("container", containerID)
	for len(procs) > 0 && ctx.Err() == nil {
		initKey := procKey{containerID, containerID}
		for key, pid := range procs {
			req := &shimapi.StateRequest{ID: containerID}
			if key != initKey {
				req.ExecID = key.processID
			}
			var resp shimapi.StateResponse
			if err := client.Call(ctx, shim.service, "State", req, &resp); err != nil {
				if ctx.Err() == nil {
					logger.WithError(err).WithField("process", key.processID).Debug("state from shim")
				}
				if errors.Is(err, ttrpc.ErrClosed) {
					return
				}
				continue
			}
			if resp.Pid != pid && resp.Pid != 0 || resp.Status == tasktypes.Status_STOPPED {
				c.shimExit(key, pid, resp.Pid == pid, resp.ExitStatus, timeOf(resp.ExitedAt))
				delete(procs, key)
			}
		}
		if pid, ok := procs[initKey]; ok {
			wctx, cancel := context.WithTimeout(ctx, shimPollInterval)
			var resp shimapi.WaitResponse
			err := client.Call(wctx, shim.service, "Wait", &shimapi.WaitRequest{ID: containerID}, &resp)
			cancel()
			if err == nil {
				c.shimExit(initKey, pid, true, resp.ExitStatus, timeOf(resp.ExitedAt))
				delete(procs, initKey)
			}
			continue
		}
		timer := time.NewTimer(shimPollInterval)
		select {
		case <-ctx.Done():
		case <-timer.C:
		}
		timer.Stop()
	}
}

// shimExit reports what the shim said of a process: its exit (real), or
// that it is gone (another pid under the key).
func (c *Client) shimExit(key procKey, pid uint32, same bool, code uint32, exitedAt time.Time) {
	if !same {
		return // the reconciler confirms a vanished one
	}
	c.logger.WithFields(log.Fields{"container": key.containerID, "process": key.processID, "exit-code": code}).
		Info("an exit heard from the shim while containerd is down")
	c.ledger.report(key, pid, exitNews{code: code, at: exitedAt, source: fromShim}, false, false)
}
