package libcontainerd

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	shimapi "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lcdkit/libcontainerd/internal/ledger"
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
// So while the event stream is down the client asks each watched process's
// shim itself, over the shim's own ttrpc task API, and reports what it
// hears to the ledger, which delivers it once containerd serves again; the
// reconciler covers whatever it could not reach.
//
// Which shim: containerd names a shim's socket after its own address, the
// namespace and the container ID (sha256 of address/namespace/id, in
// <state>/s: containerd's shim.SocketAddress, the same in 1.6, 1.7 and 2.x).
// The client dials only that socket, only if it is a socket owned by root
// (the user containerd and its shims run as) in a root-owned directory that
// no one else may write: nothing an unprivileged local user can make or
// replace. Where containerd's address is not known (a client that is not on
// a unix socket), the task's init process leads to its shim (its parent),
// which must run as root from a shim executable, and serve such a socket.

const (
	// shimDialTimeout bounds connecting to one shim's socket.
	shimDialTimeout = time.Second
	// shimDialers bounds the shims dialled at once.
	shimDialers = 16
	// shimPollInterval is how often a shim is asked about its execs (its
	// init is waited on, reported the moment it exits): their status stays
	// in the shim while the init lives, so this only bounds latency.
	shimPollInterval = time.Second
	// shimCallTimeout bounds one State call; the connection is closed
	// rather than the call cancelled, so no late answer lands on a stream
	// ttrpc has forgotten (it logs those at error level).
	shimCallTimeout = 5 * time.Second
	// The shim task API: 2.x shims serve v3 only (bootstrap.json says so),
	// older ones v2 only. The calls used are the same on both.
	shimTaskV2 = "containerd.task.v2.Task"
	shimTaskV3 = "containerd.task.v3.Task"
	// defaultShimSocketDir is where shims serve: containerd's default state
	// dir's "s" (shim.SocketAddress uses defaults.DefaultStateDir whatever
	// the configured state dir).
	defaultShimSocketDir = "/run/containerd/s"
)

// shimEndpoint is where a container's shim serves its task API.
type shimEndpoint struct {
	socket string
	pid    uint32 // the init process it was found through (0: by address)
}

// shimSockets remembers each container's shim endpoint, found while its
// init runs: once its processes are gone, the shim can no longer be found
// through them.
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
	if e, ok := s.byName[containerID]; ok && (pid == 0 || e.pid == 0 || e.pid == pid) {
		delete(s.byName, containerID)
	}
}

// noteShim records the shim endpoint of a container whose init process pid
// has just been created or started.
func (c *Client) noteShim(containerID string, pid uint32) {
	if e, ok := c.shims.get(containerID); ok && (e.pid == pid || e.pid == 0) {
		return // Start noted it; this is its TaskStart event
	}
	e, err := c.findShim(containerID, pid)
	if err != nil {
		c.logger.WithError(err).WithField("container", containerID).Debug("shim not found")
		return
	}
	c.shims.set(containerID, e)
}

// shimSocket is the socket containerd names for container id's shim.
func (c *Client) shimSocket(id string) string {
	address := c.daemonAddress()
	if address == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(filepath.Join(address, c.ns, id)))
	return filepath.Join(c.shimSocketDir, fmt.Sprintf("%x", sum))
}

// findShim finds the endpoint of container id's shim: the socket containerd
// names for it, or, found through its init process pid, the socket its
// parent serves. Either only if trusted (trustedShimSocket).
func (c *Client) findShim(id string, pid uint32) (shimEndpoint, error) {
	if socket := c.shimSocket(id); socket != "" {
		if err := c.trustedShimSocket(socket); err == nil {
			return shimEndpoint{socket: socket}, nil
		}
	}
	if pid == 0 {
		return shimEndpoint{}, errors.New("no shim socket named for the container, and no process to find it by")
	}
	socket, err := c.shimOfProcess(pid)
	if err != nil {
		return shimEndpoint{}, err
	}
	return shimEndpoint{socket: socket, pid: pid}, nil
}

// shimOfProcess finds the socket of the shim that runs process pid: its
// parent, which must run as root from a containerd-shim executable, serves a
// socket named in its bundle directory (its working directory):
// bootstrap.json from 2.0 on, a file named "address" before.
func (c *Client) shimOfProcess(pid uint32) (string, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "", err
	}
	ppid := procField(status, "PPid:")
	if len(ppid) != 1 {
		return "", fmt.Errorf("unexpected /proc/%d/status", pid)
	}
	parent := "/proc/" + ppid[0]
	pstatus, err := os.ReadFile(parent + "/status")
	if err != nil {
		return "", err
	}
	// Real, effective, saved and file-system uid: all root.
	for _, uid := range procField(pstatus, "Uid:") {
		if uid != "0" {
			return "", fmt.Errorf("parent %s of %d does not run as root: not a shim", ppid[0], pid)
		}
	}
	exe, err := os.Readlink(parent + "/exe")
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(filepath.Base(exe), "containerd-shim") {
		return "", fmt.Errorf("parent %s of %d runs %s: not a shim", ppid[0], pid, exe)
	}
	var address string
	if b, err := os.ReadFile(parent + "/cwd/bootstrap.json"); err == nil {
		var params struct {
			Address  string `json:"address"`
			Protocol string `json:"protocol"`
		}
		if err := json.Unmarshal(b, &params); err != nil {
			return "", fmt.Errorf("shim %s bootstrap.json: %w", ppid[0], err)
		}
		if params.Protocol != "" && params.Protocol != "ttrpc" {
			return "", fmt.Errorf("shim %s serves %s, not ttrpc", ppid[0], params.Protocol)
		}
		address = params.Address
	} else if b, err := os.ReadFile(parent + "/cwd/address"); err == nil {
		address = strings.TrimSpace(string(b))
	} else {
		return "", fmt.Errorf("shim %s: no bootstrap.json or address in its bundle: %w", ppid[0], err)
	}
	socket, ok := strings.CutPrefix(address, "unix://")
	if !ok {
		return "", fmt.Errorf("shim %s has address %q, not a unix socket", ppid[0], address)
	}
	if err := c.trustedShimSocket(socket); err != nil {
		return "", err
	}
	return socket, nil
}

// procField returns the whitespace-separated values of a /proc status line.
func procField(status []byte, name string) []string {
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, name); ok {
			return strings.Fields(v)
		}
	}
	return nil
}

// trustedShimSocket checks that socket is one a shim of containerd's
// serves: a socket (not a link) owned by root, directly in the shim socket
// directory, which root owns and no one else may write.
func (c *Client) trustedShimSocket(socket string) error {
	if filepath.Dir(filepath.Clean(socket)) != filepath.Clean(c.shimSocketDir) {
		return fmt.Errorf("%s is not in %s", socket, c.shimSocketDir)
	}
	dir, err := os.Lstat(c.shimSocketDir)
	if err != nil {
		return err
	}
	if !dir.IsDir() || ownerOf(dir) != 0 || dir.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is not a directory only root can write", c.shimSocketDir)
	}
	fi, err := os.Lstat(socket)
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket || ownerOf(fi) != 0 {
		return fmt.Errorf("%s is not a socket owned by root", socket)
	}
	return nil
}

func ownerOf(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

// watchShims watches, on their shims, the processes the ledger wants
// watched, and returns at once: the new subscription never waits for the
// watch. A process the ledger learns of during the outage (a Start cut off
// by the kill reports itself a moment after the stream broke) is watched
// too. stop ends the watch without waiting; Close waits for its goroutines.
//
// Bounded: at most shimDialers dials at once, one connection per shim, one
// goroutine per shim (not per process).
func (c *Client) watchShims(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	c.watches.Add(1)
	go func() {
		defer c.watches.Done()
		dials := make(chan struct{}, shimDialers)
		watched := map[ledger.Watch]bool{}
		for {
			var list []ledger.Watch
			c.exits.mu.Lock()
			list = c.exits.l.Watched()
			c.exits.mu.Unlock()
			byContainer := map[string][]ledger.Watch{}
			for _, w := range list {
				if !watched[w] {
					watched[w] = true
					byContainer[w.Key.Container] = append(byContainer[w.Key.Container], w)
				}
			}
			for containerID, procs := range byContainer {
				c.watches.Add(1)
				go func(containerID string, procs []ledger.Watch) {
					defer c.watches.Done()
					c.watchShim(ctx, dials, containerID, procs)
				}(containerID, procs)
			}
			select {
			case <-ctx.Done():
				return
			case <-c.exits.watch:
			}
		}
	}()
	return cancel
}

// watchShim watches one container's processes on its shim: it waits on the
// init (the common exit, reported at once) and asks after each exec between
// polls, until all have ended or ctx ends. Its calls are never cancelled:
// the connection is closed instead.
func (c *Client) watchShim(ctx context.Context, dials chan struct{}, containerID string, procs []ledger.Watch) {
	shim, found := c.shims.get(containerID)
	if !found {
		// Not seen starting (a task adopted after a restart): its shim's
		// socket, or any live process of the container, leads to it.
		for _, w := range procs {
			if e, err := c.findShim(containerID, w.Pid); err == nil {
				shim, found = e, true
				break
			}
		}
	}
	if !found {
		return // the reconciler will have to do
	}
	if err := c.trustedShimSocket(shim.socket); err != nil {
		c.logger.WithError(err).WithField("container", containerID).Debug("shim socket not trusted: not watched")
		return
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
	// A call's context never ends: ending the watch closes the
	// connection, which ends every call without a late answer.
	callCtx := context.WithoutCancel(ctx)
	stopClose := context.AfterFunc(ctx, func() { client.Close() })
	defer stopClose()
	logger := c.logger.WithField("container", containerID)
	// Which task API it serves: v3 (2.x) or v2; asked with the first
	// State, before anything runs concurrently.
	service := shimTaskV3
	probe := &shimapi.StateRequest{ID: containerID, ExecID: execIDOf(containerID, procs[0].Key.Process)}
	var first shimapi.StateResponse
	err = c.timedShimCall(client, func() error { return client.Call(callCtx, service, "State", probe, &first) })
	if status.Code(err) == codes.Unimplemented {
		service = shimTaskV2
	}
	call := func(method string, req, resp any) error { return client.Call(callCtx, service, method, req, resp) }
	pending := map[ledger.Key]uint32{}
	for _, w := range procs {
		pending[w.Key] = w.Pid
	}
	initKey := ledger.InitKey(containerID)
	waiting := false
	initDone := make(chan *shimapi.WaitResponse, 1)
	for len(pending) > 0 && ctx.Err() == nil {
		for key, pid := range pending {
			if key == initKey && waiting {
				continue
			}
			req := &shimapi.StateRequest{ID: containerID, ExecID: execIDOf(containerID, key.Process)}
			var resp shimapi.StateResponse
			if err := c.timedShimCall(client, func() error { return call("State", req, &resp) }); err != nil {
				if ctx.Err() == nil {
					logger.WithError(err).WithField("process", key.Process).Debug("state from shim")
				}
				if errors.Is(err, ttrpc.ErrClosed) {
					return
				}
				continue
			}
			if c.shimReport(key, pid, &resp) {
				delete(pending, key)
			}
		}
		if _, ok := pending[initKey]; ok && !waiting {
			// The init is waited on: its exit is reported the moment it
			// happens.
			waiting = true
			c.watches.Add(1)
			go func() {
				defer c.watches.Done()
				var resp shimapi.WaitResponse
				if err := call("Wait", &shimapi.WaitRequest{ID: containerID}, &resp); err == nil {
					initDone <- &resp
					return
				}
				initDone <- nil
			}()
		}
		timer := time.NewTimer(shimPollInterval)
		select {
		case <-ctx.Done():
		case resp := <-initDone:
			waiting = false
			if pid, ok := pending[initKey]; ok && resp != nil {
				c.shimReport(initKey, pid, &shimapi.StateResponse{Pid: pid, Status: tasktypes.Status_STOPPED, ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt})
				delete(pending, initKey)
			}
		case <-timer.C:
		}
		timer.Stop()
	}
}

// timedShimCall runs one call, closing the shim's connection if it takes
// longer than shimCallTimeout (a frozen shim) rather than cancelling it.
func (c *Client) timedShimCall(client *ttrpc.Client, call func() error) error {
	t := time.AfterFunc(shimCallTimeout, func() { client.Close() })
	defer t.Stop()
	return call()
}

// shimReport tells the ledger what the shim said of a process, and reports
// whether the watch is done with it (it ended, or another runs under its
// key).
func (c *Client) shimReport(key ledger.Key, pid uint32, resp *shimapi.StateResponse) bool {
	r := ledger.Report{Pid: resp.Pid}
	switch resp.Status {
	case tasktypes.Status_CREATED:
		r.Status = ledger.Created
	case tasktypes.Status_STOPPED:
		r.Status, r.Code, r.At = ledger.Stopped, resp.ExitStatus, timeOf(resp.ExitedAt)
	case tasktypes.Status_RUNNING, tasktypes.Status_PAUSED, tasktypes.Status_PAUSING:
		r.Status = ledger.Running
	default:
		return false
	}
	if r.Status == ledger.Stopped {
		c.logger.WithField("container", key.Container).WithField("process", key.Process).WithField("exit-code", r.Code).
			Debug("an exit heard from the shim while containerd is down")
	}
	c.exits.do(func(l *ledger.Ledger) {
		l.ShimReport(key, pid, r)
		c.logger.WithField("key", key.String()).WithField("report", fmt.Sprintf("%+v", r)).WithField("ledger", l.Describe(key)).Debug("shim watch: the shim answered")
	})
	return r.Status == ledger.Stopped || pid != 0 && resp.Pid != 0 && resp.Pid != pid
}
