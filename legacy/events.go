package legacy

import (
	"context"

	"github.com/containerd/log"

	"github.com/lcdkit/libcontainerd/internal/errclass"
	"github.com/lcdkit/libcontainerd/types"
)

// relay is the backend the root client delivers to (in order per
// container, on the root package's queue): it adds the sticky OOM flag,
// hands the event to the daemon's backend, and cleans up after an exec's
// exit once the backend has handled it (off the queue).
type relay struct{ c *client }

func (r relay) ProcessEvent(containerID string, et types.EventType, ei types.EventInfo) error {
	c := r.c
	c.mu.Lock()
	if et == types.EventOOM {
		c.oom[containerID] = true
	}
	oomKilled := c.oom[containerID]
	c.mu.Unlock()

	if et == types.EventExit && ei.ProcessID != "" && ei.ProcessID != containerID {
		// Deferred: the root package recovers a panicking backend, and
		// the exec must be cleaned up all the same. On its own goroutine:
		// its RPCs (bounded by cleanupTimeout) must not hold up this
		// container's later events, which wait behind this call.
		defer func() {
			c.cleanups.Add(1)
			go func() {
				defer c.cleanups.Done()
				c.cleanupExec(containerID, ei.ProcessID, ei.Pid)
			}()
		}()
	}
	if c.backend == nil {
		return nil
	}
	return c.backend.ProcessEvent(containerID, et, EventInfo{
		ContainerID: ei.ContainerID,
		ProcessID:   ei.ProcessID,
		Pid:         ei.Pid,
		ExitCode:    ei.ExitCode,
		ExitedAt:    ei.ExitedAt,
		OOMKilled:   oomKilled,
		Error:       ei.Error,
	})
}

// cleanupExec deletes an exec whose exit (of pid) the backend has handled,
// which also removes its FIFOs. An exec this client is still starting is
// left to Exec, which cleans up when it returns; an exec it never started (a
// previous run's) is loaded from containerd. The exit of an earlier exec
// under the same ID leaves the current one alone.
func (c *client) cleanupExec(containerID, execID string, pid uint32) {
	c.mu.Lock()
	var proc types.Process
	if e := c.containers[containerID]; e != nil {
		if x := e.execs[execID]; x != nil {
			switch {
			case x.proc == nil:
				x.exitedPid = pid
				c.mu.Unlock()
				return
			case pid != 0 && x.proc.Pid() != pid:
				c.mu.Unlock()
				return
			}
			proc = x.proc
			delete(e.execs, execID)
		}
	}
	c.mu.Unlock()
	if proc == nil {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		p, err := c.process(ctx, containerID, execID)
		if err != nil {
			if !errclass.IsNotFound(err) {
				c.logger.WithError(err).WithFields(log.Fields{"container": containerID, "exec": execID}).Warn("exit event: cannot load exec to delete it")
			}
			return
		}
		if pid != 0 && p.Pid() != 0 && p.Pid() != pid {
			// A later exec under the same ID (an Exec retried after one
			// that failed, between its two attempts): not this exit's.
			return
		}
		proc = p
	}
	c.deleteExec(containerID, execID, proc)
}

// deleteExec deletes an exited exec (and so its FIFOs).
func (c *client) deleteExec(containerID, execID string, p types.Process) {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	if _, err := p.Delete(ctx); err != nil && !errclass.IsNotFound(err) {
		c.logger.WithError(err).WithFields(log.Fields{"container": containerID, "exec": execID}).Warn("failed to delete exited exec")
	}
}
