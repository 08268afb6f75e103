// Package v24 is the object API in the shape moby v24 was written against,
// for a v24 daemon that cannot move to the v25 types: there a container's
// task is created and started by one call, Container.Start, where v25 has
// Container.NewTask followed by Task.Start.
//
// Everything else is package types and the root package: Start is the only
// difference, and Container values from this package forward the rest.
package v24

import (
	"context"
	"io"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/internal/errclass"
	"github.com/lcdkit/libcontainerd/types"
)

// cleanupTimeout bounds the force-delete after a failed start, which runs
// on a fresh context: the caller's may be what failed.
const cleanupTimeout = 45 * time.Second

// Client is moby v24's libcontainerd client. The value NewClient returns is
// also an io.Closer (the root client's Close).
type Client interface {
	// Version returns containerd's version.
	Version(ctx context.Context) (containerd.Version, error)
	// LoadContainer loads an existing container.
	LoadContainer(ctx context.Context, containerID string) (Container, error)
	// NewContainer creates a container with its bundle directory.
	NewContainer(ctx context.Context, containerID string, spec *specs.Spec, shim string, runtimeOptions interface{}, opts ...containerd.NewContainerOpts) (Container, error)
}

// Container is moby v24's container: Start where v25 has NewTask.
type Container interface {
	// Start creates and starts the container's task, restored from
	// checkpointDir when that is not empty. If the start fails, the
	// created task is force-deleted and the start's error returned.
	Start(ctx context.Context, checkpointDir string, withStdin bool, attachStdio types.StdioCallback) (types.Task, error)
	// Task returns the container's task without attaching to its IO.
	Task(ctx context.Context) (types.Task, error)
	// AttachTask returns the container's task and reattaches to its IO;
	// NotFound when there is none.
	AttachTask(ctx context.Context, attachStdio types.StdioCallback) (types.Task, error)
	// Delete removes the container and its bundle directory.
	Delete(context.Context) error
}

// NewClient returns a v24-shaped client on the root package's client for
// namespace ns (see libcontainerd.NewClient).
func NewClient(ctx context.Context, cli *containerd.Client, stateDir, ns string, b types.Backend, opts ...libcontainerd.Option) (Client, error) {
	c, err := libcontainerd.NewClient(ctx, cli, stateDir, ns, b, opts...)
	if err != nil {
		return nil, err
	}
	return WrapClient(c), nil
}

// WrapClient gives a v25 client the v24 shape.
func WrapClient(c types.Client) Client { return client{c} }

// WrapContainer gives a v25 container the v24 shape.
func WrapContainer(c types.Container) Container { return container{c} }

type client struct{ types.Client }

func (c client) LoadContainer(ctx context.Context, id string) (Container, error) {
	ctr, err := c.Client.LoadContainer(ctx, id)
	if err != nil {
		return nil, err
	}
	return container{ctr}, nil
}

func (c client) NewContainer(ctx context.Context, id string, spec *specs.Spec, shim string, runtimeOptions interface{}, opts ...containerd.NewContainerOpts) (Container, error) {
	ctr, err := c.Client.NewContainer(ctx, id, spec, shim, runtimeOptions, opts...)
	if err != nil {
		return nil, err
	}
	return container{ctr}, nil
}

// Close closes the wrapped client if it can be closed.
func (c client) Close() error {
	if closer, ok := c.Client.(io.Closer); ok {
		return closer.Close()
	}
	return nil
}

type container struct{ types.Container }

func (c container) Start(ctx context.Context, checkpointDir string, withStdin bool, attachStdio types.StdioCallback) (types.Task, error) {
	return Start(ctx, c.Container, checkpointDir, withStdin, attachStdio)
}

// Start is Container.Start for any v25 container: NewTask, then Start, and
// a force-delete of the created task if the start fails (a created task
// cannot be deleted without killing it first).
func Start(ctx context.Context, ctr types.Container, checkpointDir string, withStdin bool, attachStdio types.StdioCallback) (types.Task, error) {
	t, err := ctr.NewTask(ctx, checkpointDir, withStdin, attachStdio)
	if err != nil {
		return nil, err
	}
	if err := t.Start(ctx); err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if derr := t.ForceDelete(cctx); derr != nil && !errclass.IsNotFound(derr) {
			log.G(ctx).WithError(derr).Error("failed to delete task after failed start")
		}
		return nil, err
	}
	return t, nil
}
