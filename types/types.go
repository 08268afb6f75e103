// Package types holds the public contract of libcontainerd: the interfaces a
// daemon programs against and the data types that cross them. It has no
// containerd connections and no goroutines, so a daemon (and its tests, which
// mock these interfaces by embedding them) never imports the implementation.
//
// Identifiers, method sets and signatures match moby v25–v27's
// libcontainerd/types exactly. Method sets must not grow: extras live on
// concrete types or optional interfaces in the root package.
package types

import (
	"context"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// EventType names an event delivered to Backend.ProcessEvent.
type EventType string

// The events a Backend receives.
const (
	EventUnknown     EventType = "unknown"
	EventExit        EventType = "exit"
	EventOOM         EventType = "oom"
	EventCreate      EventType = "create"
	EventStart       EventType = "start"
	EventExecAdded   EventType = "exec-added"
	EventExecStarted EventType = "exec-started"
	EventPaused      EventType = "paused"
	EventResumed     EventType = "resumed"
)

// EventInfo carries the details of one event.
type EventInfo struct {
	ContainerID string
	ProcessID   string
	Pid         uint32
	ExitCode    uint32
	ExitedAt    time.Time
	Error       error
}

// Backend is what the daemon implements to receive events. Calls for one
// container are serialised, in the order containerd reported them.
type Backend interface {
	ProcessEvent(containerID string, event EventType, ei EventInfo) error
}

// Process is one process of a task: the init process or an exec.
type Process interface {
	// Pid is the host process id.
	Pid() uint32
	// Kill sends signal to the process.
	Kill(ctx context.Context, signal syscall.Signal) error
	// Resize changes the size of the process's terminal.
	Resize(ctx context.Context, width, height uint32) error
	// Delete removes the process and its IO, returning its exit status.
	Delete(context.Context) (*containerd.ExitStatus, error)
}

// Client gives access to containerd containers in one namespace.
type Client interface {
	// Version returns containerd's version.
	Version(ctx context.Context) (containerd.Version, error)
	// LoadContainer loads an existing container's metadata from containerd.
	LoadContainer(ctx context.Context, containerID string) (Container, error)
	// NewContainer creates a containerd container with its bundle directory.
	NewContainer(ctx context.Context, containerID string, spec *specs.Spec, shim string, runtimeOptions interface{}, opts ...containerd.NewContainerOpts) (Container, error)
}

// Container is a containerd container.
type Container interface {
	// NewTask creates (but does not start) the container's task, restoring
	// it from checkpointDir when that is non-empty.
	NewTask(ctx context.Context, checkpointDir string, withStdin bool, attachStdio StdioCallback) (Task, error)
	// Task returns the container's task without attaching to its IO.
	Task(ctx context.Context) (Task, error)
	// AttachTask returns the container's task and reattaches to its IO.
	// It returns a NotFound error when the container has no task. Callers
	// must make sure only one reader is attached to the task.
	AttachTask(ctx context.Context, attachStdio StdioCallback) (Task, error)
	// Delete removes the container and its bundle directory.
	Delete(context.Context) error
}

// Task is a container's task: its init process and everything run in it.
type Task interface {
	Process
	// Start starts a created task.
	Start(context.Context) error
	// Pause freezes every process of the task.
	Pause(context.Context) error
	// Resume thaws a paused task.
	Resume(context.Context) error
	// Stats returns the task's cgroup metrics.
	Stats(ctx context.Context) (*Stats, error)
	// Pids lists the processes running in the task.
	Pids(context.Context) ([]containerd.ProcessInfo, error)
	// Summary describes the processes running in the task.
	Summary(ctx context.Context) ([]Summary, error)
	// ForceDelete kills the task's processes and deletes the task.
	ForceDelete(context.Context) error
	// Status returns the task's state.
	Status(ctx context.Context) (containerd.Status, error)
	// Exec creates and starts a process inside the task.
	Exec(ctx context.Context, processID string, spec *specs.Process, withStdin bool, attachStdio StdioCallback) (Process, error)
	// UpdateResources changes the task's resource limits.
	UpdateResources(ctx context.Context, resources *Resources) error
	// CreateCheckpoint checkpoints the task into checkpointDir, stopping it
	// when exit is true.
	CreateCheckpoint(ctx context.Context, checkpointDir string, exit bool) error
}

// StdioCallback is called with a process's FIFOs to connect its stdio.
type StdioCallback func(io *cio.DirectIO) (cio.IO, error)
