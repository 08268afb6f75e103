package libcontainerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/containerd"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	apitypes "github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/archive"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/leases"
	runcoptions "github.com/containerd/containerd/runtime/v2/runc/options"
	"github.com/containerd/log"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/lcdkit/libcontainerd/internal/errclass"
)

const (
	// checkpointLeaseExpiry bounds how long checkpoint content can outlive
	// a process that died before releasing its lease: containerd's garbage
	// collector removes expired leases and what only they held.
	checkpointLeaseExpiry = time.Hour
	// checkpointCleanupTimeout bounds removing what a checkpoint or restore
	// put in containerd. It runs on a fresh context, because the caller's
	// may be what failed.
	checkpointCleanupTimeout = 30 * time.Second
)

// isRuncRuntime reports whether containerd treats runtime as runc: its task
// service reads runc's checkpoint and restore paths only for runtimes named
// io.containerd.runc[.*] (its own checkRuntime, written here without that
// function's index panic on names such as "io.containerd").
func isRuncRuntime(runtime string) bool {
	return runtime == "io.containerd.runc" || strings.HasPrefix(runtime, "io.containerd.runc.")
}

// runsRunc reports whether the container's shim is runc's: by name, or by
// its runc options (a runc shim configured by binary path).
func (c *container) runsRunc() bool {
	return c.runcOptions != nil || isRuncRuntime(c.record.Runtime.Name)
}

// CreateCheckpoint checkpoints the task into checkpointDir, which must be
// missing (it is created) or an empty directory; with exit the task stops
// once checkpointed. What the checkpoint puts in containerd (the image, the
// criu image and its index) is removed afterwards, success or not. On
// failure checkpointDir is left empty, or removed if this call created it,
// and the task is as it was (a task the call paused is resumed).
// Recovery: retry.
func (t *task) CreateCheckpoint(ctx context.Context, checkpointDir string, exit bool) error {
	created, err := prepareCheckpointDir(checkpointDir)
	if err != nil {
		return err
	}
	if err := t.checkpointInto(t.ctx(ctx), checkpointDir, exit); err != nil {
		clearCheckpointDir(checkpointDir, created, t.ctr.client.logger)
		return err
	}
	return nil
}

func (t *task) checkpointInto(ctx context.Context, dir string, exit bool) error {
	cli := t.ctr.client.client
	ctx, release, err := t.ctr.client.checkpointLease(ctx)
	if err != nil {
		return err
	}
	defer release()
	ctr, err := cli.LoadContainer(ctx, t.ctr.id)
	if err != nil {
		return wrapErrorf(err, "checkpoint "+t.ctr.id)
	}
	ctask, err := ctr.Task(ctx, nil)
	if err != nil {
		return wrapErrorf(err, "checkpoint "+t.ctr.id)
	}
	// A name of our own: containerd's default has one-second resolution,
	// so a second checkpoint within the same second would fail to create
	// its image after criu had already run (and, with exit, stopped the
	// task).
	leaseID, _ := leases.FromContext(ctx)
	name := "libcontainerd-checkpoint/" + t.ctr.id + "/" + leaseID
	// The containerd client pauses a running task for the checkpoint and
	// resumes it in a defer, on the caller's context, dropping the error: a
	// lost Resume, a cancelled context or a lost answer to the Pause would
	// leave the task frozen. So the pause is ours (the client leaves a
	// paused task alone), and so is the resume, retried on a fresh context.
	p, err := t.ctr.client.getProcess(ctx, t.ctr.id, "")
	if err != nil {
		return wrapErrorf(err, "checkpoint "+t.ctr.id)
	}
	if p.Status == tasktypes.Status_RUNNING {
		defer t.resumeAfterCheckpoint(ctx)
		if _, err := t.tasks().Pause(ctx, &tasks.PauseTaskRequest{ContainerID: t.ctr.id}); err != nil {
			return wrapErrorf(err, "checkpoint "+t.ctr.id)
		}
	}
	deleteImage := func() {
		cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkpointCleanupTimeout)
		defer cancel()
		// Retried: the image is a garbage-collection root of its own, which
		// no lease expiry would ever remove.
		err := t.ctr.client.retryCleanup(cleanupCtx, func(ctx context.Context) error {
			return cli.ImageService().Delete(ctx, name)
		})
		if err != nil {
			t.ctr.client.logger.WithError(err).WithField("image", name).Warn("failed to delete checkpoint image")
		}
	}
	img, err := ctask.Checkpoint(ctx, containerd.WithCheckpointName(name), t.ctr.checkpointOptions(exit))
	if err != nil {
		if errclass.OutcomeUnknown(err) {
			// The image create, the client's last step, may have
			// happened with only its answer lost.
			deleteImage()
		}
		return wrapErrorf(err, "checkpoint "+t.ctr.id)
	}
	defer deleteImage()
	return unpackCheckpoint(ctx, cli.ContentStore(), img.Target(), dir)
}

// resumeAfterCheckpoint thaws the task checkpointInto paused. A task that is
// not paused (runc stopped it after a checkpoint with exit, or the pause
// never happened) refuses, which is fine.
func (t *task) resumeAfterCheckpoint(ctx context.Context) {
	cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), checkpointCleanupTimeout)
	defer cancel()
	err := t.ctr.client.retryCleanup(cleanupCtx, func(ctx context.Context) error {
		_, err := t.tasks().Resume(ctx, &tasks.ResumeTaskRequest{ContainerID: t.ctr.id})
		return wrapError(err)
	})
	logger := t.ctr.client.logger.WithError(err).WithField("container", t.ctr.id)
	switch {
	case errclass.OutcomeUnknown(err):
		logger.Warn("failed to resume the task after its checkpoint: it may still be paused")
	case err != nil:
		logger.Debug("resume after checkpoint refused: the task was not paused")
	}
}

// checkpointOptions asks runc to stop the task after checkpointing when
// exit is set. moby sets this only when it still has the runc options it
// created the container with, so the flag was lost after a daemon restart;
// a loaded container here has them too (LoadContainer recovers them), and a
// runc runtime without options gets the flag as well.
func (c *container) checkpointOptions(exit bool) containerd.CheckpointTaskOpts {
	return func(info *containerd.CheckpointTaskInfo) error {
		if c.runsRunc() {
			info.Options = &runcoptions.CheckpointOptions{Exit: exit}
		}
		return nil
	}
}

// unpackCheckpoint reads the checkpoint index at index from store, finds the
// criu image in it and unpacks that into dir. An index without a criu image
// is an error: moby returns nil there, leaving an empty checkpoint that
// fails only when someone restores it.
func unpackCheckpoint(ctx context.Context, store content.Store, index ocispec.Descriptor, dir string) error {
	blob, err := content.ReadBlob(ctx, store, index)
	if err != nil {
		return unpackError(fmt.Errorf("read checkpoint index %s: %w", index.Digest, err))
	}
	var idx ocispec.Index
	if err := json.Unmarshal(blob, &idx); err != nil {
		return errclass.System(fmt.Errorf("decode checkpoint index %s: %w", index.Digest, err))
	}
	var criu *ocispec.Descriptor
	for i := range idx.Manifests {
		if idx.Manifests[i].MediaType == images.MediaTypeContainerd1Checkpoint {
			criu = &idx.Manifests[i]
			break
		}
	}
	if criu == nil {
		return errclass.System(fmt.Errorf("invalid checkpoint: index %s has no %s", index.Digest, images.MediaTypeContainerd1Checkpoint))
	}
	ra, err := store.ReaderAt(ctx, *criu)
	if err != nil {
		return unpackError(fmt.Errorf("open checkpoint image %s: %w", criu.Digest, err))
	}
	defer ra.Close()
	if _, err := archive.Apply(ctx, dir, content.NewReader(ra)); err != nil {
		return unpackError(fmt.Errorf("unpack checkpoint image %s into %s: %w", criu.Digest, dir, err))
	}
	return nil
}

// unpackError classifies a failure to read or unpack the checkpoint: a lost
// connection or an ended context says so (a retry may work), anything else
// is a System error.
func unpackError(err error) error {
	if errclass.OutcomeUnknown(err) {
		return errclass.Classify(err)
	}
	return errclass.System(err)
}

// checkpointLease puts a fresh lease on ctx, so that everything containerd
// writes for this checkpoint or restore belongs to it and garbage collection
// takes it with the lease. release deletes the lease and waits for that
// collection, so the content store holds what it held before.
func (c *Client) checkpointLease(ctx context.Context) (context.Context, func(), error) {
	return c.newLease(ctx, "checkpoint lease", checkpointLeaseExpiry, true)
}

// prepareCheckpointDir checks, before any RPC, that dir can take a
// checkpoint: an empty directory (moby's daemon makes one), or nothing yet,
// in which case it is created and created is true.
func prepareCheckpointDir(dir string) (created bool, err error) {
	if dir == "" {
		return false, invalidParameter("empty checkpoint directory")
	}
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		// Private: a checkpoint holds the task's memory.
		if err := os.Mkdir(dir, 0o700); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return false, errclass.NotFound(fmt.Errorf("create checkpoint directory: %w", err))
			}
			return false, errclass.InvalidParameter(fmt.Errorf("create checkpoint directory: %w", err))
		}
		return true, nil
	}
	if err != nil {
		return false, errclass.InvalidParameter(fmt.Errorf("checkpoint directory: %w", err))
	}
	if !fi.IsDir() {
		return false, errclass.InvalidParameter(fmt.Errorf("checkpoint directory %s is not a directory", dir))
	}
	empty, err := isEmptyDir(dir)
	if err != nil {
		return false, errclass.InvalidParameter(fmt.Errorf("checkpoint directory: %w", err))
	}
	if !empty {
		return false, errclass.InvalidParameter(fmt.Errorf("checkpoint directory %s is not empty", dir))
	}
	return false, nil
}

// isEmptyDir reads one entry of dir, which also proves it is readable.
func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return len(names) == 0, err
}

// clearCheckpointDir undoes a failed checkpoint: the directory goes if this
// call created it, else it is emptied again, so no half-written checkpoint
// is ever left for a restore to trip over.
func clearCheckpointDir(dir string, created bool, logger *log.Entry) {
	logger = logger.WithField("checkpoint", dir)
	if created {
		if err := os.RemoveAll(dir); err != nil {
			logger.WithError(err).Warn("failed to remove the directory of a failed checkpoint")
		}
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		logger.WithError(err).Warn("failed to empty the directory of a failed checkpoint")
		return
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			logger.WithError(err).Warn("failed to empty the directory of a failed checkpoint")
		}
	}
}

// checkRestoreDir checks, before any RPC, that dir is a readable directory,
// and returns its absolute path (the shim resolves paths on its own).
// Whether it holds a checkpoint only runc can tell, at Start.
func checkRestoreDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", errclass.InvalidParameter(fmt.Errorf("checkpoint directory: %w", err))
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, os.ErrNotExist) {
		return "", errclass.NotFound(fmt.Errorf("checkpoint directory: %w", err))
	}
	if err != nil {
		return "", errclass.InvalidParameter(fmt.Errorf("checkpoint directory: %w", err))
	}
	if !fi.IsDir() {
		return "", errclass.InvalidParameter(fmt.Errorf("checkpoint directory %s is not a directory", dir))
	}
	if _, err := isEmptyDir(abs); err != nil {
		return "", errclass.InvalidParameter(fmt.Errorf("checkpoint directory: %w", err))
	}
	return abs, nil
}

// restoresInPlace reports whether runc can restore straight from the
// checkpoint directory (the runc options' CriuImagePath). containerd honours
// that path only for runtimes it names runc, and task options replace the
// container's, so it also needs the container's runc options to extend, or
// no options at all.
func (c *container) restoresInPlace() bool {
	return isRuncRuntime(c.record.Runtime.Name) && (c.runcOptions != nil || c.record.Runtime.Options == nil)
}

// uploadCheckpoint is the restore path for shims containerd does not name
// runc, moby's: the directory is tarred into the content store under a
// lease, for the task service to unpack. release removes it again; call it
// once the create has returned. containerd unpacks into a ctrd-checkpoint*
// directory in its own temp dir and never removes it (measured on 1.6.20;
// code reading of v1.7's services/tasks): only the in-place path avoids that.
func (c *Client) uploadCheckpoint(ctx context.Context, dir string) (*apitypes.Descriptor, func(), error) {
	ctx, release, err := c.checkpointLease(ctx)
	if err != nil {
		return nil, nil, err
	}
	tar := archive.Diff(ctx, "", dir)
	desc, err := writeCheckpointContent(ctx, c.client.ContentStore(), dir, tar)
	if cerr := tar.Close(); err == nil && cerr != nil {
		err = errclass.System(fmt.Errorf("tar checkpoint %s: %w", dir, cerr))
	}
	if err != nil {
		release()
		return nil, nil, err
	}
	return desc, release, nil
}

func writeCheckpointContent(ctx context.Context, store content.Ingester, ref string, r io.Reader) (*apitypes.Descriptor, error) {
	w, err := content.OpenWriter(ctx, store, content.WithRef("libcontainerd-restore-"+ref))
	if err != nil {
		return nil, wrapErrorf(err, "upload checkpoint")
	}
	defer w.Close()
	size, err := io.Copy(w, r)
	if err != nil {
		return nil, errclass.Classify(fmt.Errorf("upload checkpoint %s: %w", ref, err))
	}
	if err := w.Commit(ctx, size, ""); err != nil && !errclass.IsAlreadyExists(err) {
		return nil, wrapErrorf(err, "upload checkpoint")
	}
	return &apitypes.Descriptor{MediaType: images.MediaTypeContainerd1Checkpoint, Digest: w.Digest().String(), Size: size}, nil
}
