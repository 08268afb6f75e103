package libcontainerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	runcoptions "github.com/containerd/containerd/runtime/v2/runc/options"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"

	"github.com/lcdkit/libcontainerd/internal/errclass"
	"github.com/lcdkit/libcontainerd/internal/ledger"
	libtypes "github.com/lcdkit/libcontainerd/types"
)

// What the container handle knows about its task, so Delete can skip the
// "is there a task?" RPC when it knows the answer.
const (
	taskUnknown int32 = iota // loaded container: ask containerd
	taskNone                 // created here, or its task deleted through us
	taskExists
)

// container is a containerd container. Its record, spec and runc options are
// cached when the handle is made, so NewTask and Exec need no refresh RPC.
type container struct {
	client      *Client
	id          string
	record      containers.Container
	spec        *specs.Spec
	bundle      string
	runcOptions *runcoptions.Options // nil unless the runtime is runc
	task        atomic.Int32
}

func (c *container) setTask(state int32) { c.task.Store(state) }

// NewTask creates the container's task (it does not start it); Pid is valid
// on return. stdio goes through FIFOs in the bundle directory. With a
// checkpointDir the task is restored from that checkpoint when it starts
// (runc restores at Start, so a directory that holds no checkpoint fails
// there, with runc's message; ForceDelete then leaves nothing behind). For
// runc the directory is read in place, so it must stay until Start returns.
//
// A failed call leaves no task, FIFO or pending stdin close: when the answer
// to the create is lost (Unavailable, or the context ended in flight), the
// task it may have made is removed again on a fresh context. Recovery:
// retry. Should containerd stay out of reach for that removal too, the
// container handle no longer assumes it has no task (Delete asks, and
// refuses while one exists): ReplaceContainer then removes both.
func (c *container) NewTask(ctx context.Context, checkpointDir string, withStdin bool, attachStdio libtypes.StdioCallback) (libtypes.Task, error) {
	if c.spec == nil || c.spec.Process == nil {
		return nil, invalidParameter("container spec has no process")
	}
	if attachStdio == nil {
		return nil, invalidParameter("nil stdio callback")
	}
	var restoreDir string
	if checkpointDir != "" {
		dir, err := checkRestoreDir(checkpointDir)
		if err != nil {
			return nil, err
		}
		restoreDir = dir
	}
	ctx = c.client.withNamespace(ctx)
	fifos := newFIFOSet(c.bundle, c.id, withStdin, c.spec.Process.Terminal)
	if err := c.client.clearStaleFIFOs(ctx, fifos, c.id, ""); err != nil {
		return nil, err
	}
	request := &tasks.CreateTaskRequest{ContainerID: c.id}
	if err := c.addRootfs(ctx, request); err != nil {
		return nil, err
	}
	// Restoring in place points runc at the directory itself: nothing goes
	// through the content store, and containerd makes no temp dir it would
	// leave behind (see uploadCheckpoint).
	inPlace := restoreDir != "" && c.restoresInPlace()
	if c.runcOptions != nil || inPlace {
		// Cloned: the cached options are shared by every task of this
		// container and must not carry one task's IO owner (or
		// checkpoint) into another.
		opts := &runcoptions.Options{}
		if c.runcOptions != nil {
			opts = proto.Clone(c.runcOptions).(*runcoptions.Options)
		}
		opts.IoUid, opts.IoGid = specUser(c.spec)
		if inPlace {
			opts.CriuImagePath = restoreDir
		}
		anyOpts, err := typeurl.MarshalAny(opts)
		if err != nil {
			return nil, errclass.System(err)
		}
		request.Options = protoAny(anyOpts)
	}
	if restoreDir != "" && !inPlace {
		desc, release, err := c.client.uploadCheckpoint(ctx, restoreDir)
		if err != nil {
			return nil, err
		}
		// containerd has unpacked it by the time the create returns.
		defer release()
		request.Checkpoint = desc
	}

	stdin := &stdinSync{}
	rio, err := c.client.newIO(fifos, stdin, attachStdio)
	if err != nil {
		return nil, wrapErrorf(err, "failed to create task for container")
	}
	cfg := rio.Config()
	request.Stdin, request.Stdout, request.Stderr, request.Terminal = cfg.Stdin, cfg.Stdout, cfg.Stderr, cfg.Terminal
	resp, err := c.client.client.TaskService().Create(ctx, request)
	if _, suspect := c.client.orphans.Load(c.id); suspect && errclass.IsAlreadyExists(err) && c.clearOrphanTask(ctx) {
		// Only after a create of ours whose outcome was unknown: another
		// client's create of this ID in progress also answers Get with
		// NotFound, and is not ours to clear.
		resp, err = c.client.client.TaskService().Create(ctx, request)
	}
	if err != nil {
		stdin.drop()
		closeIO(rio)
		if errclass.OutcomeUnknown(err) {
			// The task may exist after all (the answer was lost, not the
			// create). Remove it; until that is known to have worked,
			// Delete must ask rather than remove the container under a
			// live shim.
			c.setTask(taskUnknown)
			if c.removeFailedTask(fifos.Stdout) {
				c.setTask(taskNone)
			} else {
				// Delete finishes the job once containerd answers.
				c.client.orphans.Store(c.id, struct{}{})
			}
		}
		return nil, wrapErrorf(err, "failed to create task for container")
	}
	c.setTask(taskExists)
	// Found now, while its process exists (see shimwatch.go): a Start cut
	// off by a containerd kill leaves the shim the only witness of it.
	c.client.noteShim(c.id, resp.Pid)
	t := c.newTask(resp.Pid, rio)
	t.inc.Store(uint64(c.client.exits.id(func(l *ledger.Ledger) ledger.ID { return l.Created(ledger.InitKey(c.id), resp.Pid) })))
	// The shim opened the init's stdin at create, so a close the caller
	// asked for while we were creating can happen now.
	if err := stdin.publish(t.closeStdin); err != nil {
		c.client.logger.WithError(err).WithField("container", c.id).Warn("failed to close stdin")
	}
	return t, nil
}

// deleteOrphan sends the task Delete that clears an orphan shim of this
// container (answered NotFound either way), asks a shim containerd lost
// altogether to shut down (orphan.go), and reports whether containerd
// answered.
func (c *container) deleteOrphan(ctx context.Context) bool {
	_, err := c.client.client.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: c.id})
	if err != nil && !errclass.IsNotFound(err) {
		c.client.logger.WithError(err).WithField("container", c.id).Debug("clearing a possible orphan task: containerd did not answer")
		return false
	}
	c.client.orphans.Delete(c.id)
	c.client.shutdownOrphanShim(c.id)
	return true
}

// clearOrphanTask handles a create refused with AlreadyExists for a task
// containerd cannot find: on 1.6 a create cut off by a containerd kill can
// leave the ID taken by an orphan shim that neither Get nor List shows. A
// Delete of the task (answered NotFound) clears it; it reports whether a
// retry of the create is worth it.
func (c *container) clearOrphanTask(ctx context.Context) bool {
	if _, err := c.client.getProcess(ctx, c.id, ""); !errclass.IsNotFound(err) {
		return false // a real task, or no answer: the refusal stands
	}
	if !c.deleteOrphan(ctx) {
		return false
	}
	c.client.logger.WithField("container", c.id).Info("cleared an orphan task left by a create cut off earlier")
	return true
}

// removeFailedTask removes the task a NewTask whose answer was lost may have
// created, on a fresh bounded context, and reports whether the container is
// now known to have no task. Only a task that is still created and has this
// call's stdout FIFO is removed: anything else is not this call's.
func (c *container) removeFailedTask(stdout string) bool {
	ctx, cancel := context.WithTimeout(c.client.withNamespace(context.Background()), execCleanupTimeout)
	defer cancel()
	var p *taskProcess
	err := c.client.retryCleanup(ctx, func(ctx context.Context) error {
		var err error
		p, err = c.client.getProcess(ctx, c.id, "")
		return err
	})
	logger := c.client.logger.WithField("container", c.id)
	switch {
	case err != nil:
		logger.WithError(err).Warnf("cannot tell within %s whether a failed task create created the task; Container.Delete will ask again", execCleanupTimeout)
		return false
	case p == nil:
		// NotFound: the create never reached containerd, or (1.6) it
		// left an orphan shim that only a task Delete clears.
		return c.deleteOrphan(ctx)
	case p.Status != tasktypes.Status_CREATED || p.Stdout != stdout:
		logger.WithField("status", p.Status).Warn("a failed task create found a task that is not its own: left in place")
		return false
	}
	// Ours: held by the ledger while it is removed, so that the exit its
	// kill causes is not taken for one of a run.
	t := c.newTask(p.Pid, nil)
	t.inc.Store(uint64(c.client.exits.id(func(l *ledger.Ledger) ledger.ID { return l.Created(ledger.InitKey(c.id), p.Pid) })))
	if err := c.client.retryCleanup(ctx, t.ForceDelete); err != nil {
		logger.WithError(err).Warn("failed to delete the task of a failed task create")
		return false
	}
	return true
}

// addRootfs adds the snapshot mounts of a container that has a snapshot
// (moby's containerd-image-store path); a plain rootfs path needs none.
func (c *container) addRootfs(ctx context.Context, request *tasks.CreateTaskRequest) error {
	if c.record.SnapshotKey == "" {
		return nil
	}
	if c.record.Snapshotter == "" {
		return invalidParameter("container has a snapshot key but no snapshotter")
	}
	mounts, err := c.client.client.SnapshotService(c.record.Snapshotter).Mounts(ctx, c.record.SnapshotKey)
	if err != nil {
		return wrapErrorf(err, "get rootfs mounts")
	}
	for _, m := range mounts {
		request.Rootfs = append(request.Rootfs, &types.Mount{Type: m.Type, Source: m.Source, Target: m.Target, Options: m.Options})
	}
	return nil
}

// Task returns the container's task without attaching to its IO.
func (c *container) Task(ctx context.Context) (libtypes.Task, error) {
	p, err := c.client.getProcess(c.client.withNamespace(ctx), c.id, "")
	if err != nil {
		return nil, err
	}
	c.setTask(taskExists)
	t := c.newTask(p.Pid, nil)
	t.stoppedAtLoad = p.Status == tasktypes.Status_STOPPED
	return t, nil
}

// AttachTask returns the container's task with its existing FIFOs reopened
// through attachStdio. Its stdin gets the same close wrapper as NewTask's
// (moby's lacks it, so closing a reattached stdin never reached the shim).
func (c *container) AttachTask(ctx context.Context, attachStdio libtypes.StdioCallback) (libtypes.Task, error) {
	if attachStdio == nil {
		return nil, invalidParameter("nil stdio callback")
	}
	ctx = c.client.withNamespace(ctx)
	p, err := c.client.getProcess(ctx, c.id, "")
	if err != nil {
		return nil, err
	}
	c.setTask(taskExists)
	fifos := fifoSetFromPaths(p.Stdin, p.Stdout, p.Stderr, p.Terminal)
	stdin := &stdinSync{}
	rio, err := c.client.newIO(fifos, stdin, attachStdio)
	if err != nil {
		return nil, wrapErrorf(err, "error attaching to containerd task for container")
	}
	t := c.newTask(p.Pid, rio)
	t.stoppedAtLoad = p.Status == tasktypes.Status_STOPPED
	_ = stdin.publish(t.closeStdin) // nothing can have asked to close yet
	return t, nil
}

// Delete removes the container, then its bundle directory unless
// LIBCONTAINERD_NOCLEAN=1. Only a directory inside the client's state dir is
// ever removed: the label is data, and data can point anywhere.
//
// Recovery: retry. NotFound then means an earlier call deleted the container
// and lost the answer; the bundle dir is removed in that case too (and after
// an Unavailable or context error, whether or not containerd got the delete).
func (c *container) Delete(ctx context.Context) error {
	ctx = c.client.withNamespace(ctx)
	if c.task.Load() != taskNone {
		// containerd does not refuse to delete a container whose task
		// still runs; the containerd client checks, and so do we.
		if _, err := c.client.getProcess(ctx, c.id, ""); err == nil {
			return errclass.Precondition(fmt.Sprintf("cannot delete container %s: it has a task: failed precondition", c.id))
		} else if !errclass.IsNotFound(err) {
			return err
		}
		if _, suspect := c.client.orphans.Load(c.id); suspect && !c.deleteOrphan(ctx) {
			return errclass.Unavailable(fmt.Errorf("cannot delete container %s: a task create or delete cut off earlier may have left its shim, and containerd did not answer", c.id))
		}
	}
	deleteErr := wrapError(c.client.client.ContainerService().Delete(ctx, c.id))
	switch {
	case deleteErr == nil:
		c.setTask(taskNone)
		// containerd has no task for it: nothing of its is left to
		// report (the ledger keeps nothing per container).
		c.client.exits.do(func(l *ledger.Ledger) { l.ContainerGone(c.id) })
	case errclass.IsNotFound(deleteErr):
		// Gone already, maybe by an earlier Delete whose answer was lost:
		// the bundle dir is still ours to remove, and the error still
		// says the container was not there.
		c.setTask(taskNone)
	case errclass.OutcomeUnknown(deleteErr):
		// The container may be gone with only the answer lost. Its bundle
		// dir goes either way (no task uses it, we checked): left, a
		// container created again under this ID would inherit the old
		// one's FIFOs. A retried Delete finishes the job.
	default:
		return deleteErr
	}
	c.removeBundle()
	return deleteErr
}

// removeBundle removes the bundle dir of a deleted container, unless
// LIBCONTAINERD_NOCLEAN=1 or it lies outside the state dir.
func (c *container) removeBundle() {
	if os.Getenv("LIBCONTAINERD_NOCLEAN") == "1" || c.bundle == "" {
		return
	}
	logger := c.client.logger.WithFields(log.Fields{"container": c.id, "bundle": c.bundle})
	if !within(c.client.stateDir, c.bundle) {
		logger.Warn("bundle dir is outside the state dir: left in place")
		return
	}
	if err := os.RemoveAll(c.bundle); err != nil {
		logger.WithError(err).Error("failed to remove bundle dir")
	}
}

// within reports whether path is strictly inside dir.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, filepath.Clean(path))
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// closeIO releases an IO that no process will use: Cancel unblocks a FIFO
// open still waiting for the shim (which would hold an OS thread,
// containerd #13952), Close closes and removes the FIFOs.
func closeIO(rio cio.IO) {
	if rio == nil {
		return
	}
	rio.Cancel()
	_ = rio.Close()
}
