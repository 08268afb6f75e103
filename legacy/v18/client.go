package v18

import (
	"context"
	"io"
	"syscall"

	"github.com/containerd/containerd"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/lcdkit/libcontainerd/legacy"
)

// client is a legacy client with v18's method shapes. The embedded
// legacy.Client supplies every method whose shape did not change.
type client struct {
	legacy.Client
}

// Restore is legacy Restore without the process (v18 had none).
func (c *client) Restore(ctx context.Context, id string, attachStdio StdioCallback) (bool, int, error) {
	alive, pid, _, err := c.Client.Restore(ctx, id, attachStdio)
	return alive, pid, err
}

// Create creates the container on the runc v2 shim; runtimeOptions are its
// options (*runcoptions.Options), or nil.
func (c *client) Create(ctx context.Context, id string, spec *specs.Spec, runtimeOptions interface{}) error {
	return c.Client.Create(ctx, id, spec, Runtime, runtimeOptions)
}

// SignalProcess sends signal, a signal number, to the init process or an
// exec.
func (c *client) SignalProcess(ctx context.Context, containerID, processID string, signal int) error {
	return c.Client.SignalProcess(ctx, containerID, processID, syscall.Signal(signal))
}

// Status returns the task's state; the values are containerd's.
func (c *client) Status(ctx context.Context, id string) (Status, error) {
	s, err := c.Client.Status(ctx, id)
	if err != nil {
		return StatusUnknown, err
	}
	return statusOf(s), nil
}

// statusOf maps containerd's process status to v18's, which spells the
// same states the same way.
func statusOf(s containerd.ProcessStatus) Status {
	switch st := Status(s); st {
	case StatusRunning, StatusCreated, StatusStopped, StatusPaused, StatusPausing:
		return st
	}
	return StatusUnknown
}

func (c *client) close() error {
	if closer, ok := c.Client.(io.Closer); ok {
		return closer.Close()
	}
	return nil
}

// relay passes legacy events on in v18's EventInfo.
type relay struct{ b Backend }

func (r relay) ProcessEvent(containerID string, et legacy.EventType, ei legacy.EventInfo) error {
	if r.b == nil {
		return nil
	}
	return r.b.ProcessEvent(containerID, et, EventInfo{
		ContainerID: ei.ContainerID,
		ProcessID:   ei.ProcessID,
		Pid:         ei.Pid,
		ExitCode:    ei.ExitCode,
		ExitedAt:    ei.ExitedAt,
		OOMKilled:   ei.OOMKilled,
	})
}

var _ Client = (*client)(nil)
