package legacy

import (
	"context"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/lcdkit/libcontainerd/types"
)

// EventType names an event; the values are those of package types.
type EventType = types.EventType

// The events a Backend receives.
const (
	EventUnknown     = types.EventUnknown
	EventExit        = types.EventExit
	EventOOM         = types.EventOOM
	EventCreate      = types.EventCreate
	EventStart       = types.EventStart
	EventExecAdded   = types.EventExecAdded
	EventExecStarted = types.EventExecStarted
	EventPaused      = types.EventPaused
	EventResumed     = types.EventResumed
)

// InitProcessName is the process ID of a container's init process in the
// calls that take one (SignalProcess, ResizeTerminal, CloseStdin). The
// container's own ID is accepted too: it is the ProcessID events carry for
// the init process.
const InitProcessName = "init"

// EventInfo carries the details of one event.
type EventInfo struct {
	ContainerID string
	ProcessID   string
	Pid         uint32
	ExitCode    uint32
	ExitedAt    time.Time
	// OOMKilled is set on every event of a container from its first OOM
	// event until the container is deleted.
	OOMKilled bool
	Error     error
}

// Backend is what the daemon implements to receive events; calls for one
// container are serialised, in the order containerd reported them.
type Backend interface {
	ProcessEvent(containerID string, event EventType, ei EventInfo) error
}

// Process is the init process Restore found.
type Process interface {
	// Delete deletes the process (a stopped task) and returns its exit
	// code and time; 255 and now if there was none, or on error.
	Delete(context.Context) (uint32, time.Time, error)
}

// StdioCallback is called with a process's FIFOs to connect its stdio.
type StdioCallback = types.StdioCallback

// Summary describes one process of a task; it carries nothing on Linux.
type Summary = types.Summary

// Stats holds a task's metrics as containerd reported them.
type Stats = types.Stats

// Resources are the limits UpdateResources sets. moby v20 to v23 declared a
// defined type over specs.LinuxResources; an alias accepts every use of
// that one (literals, field access, conversions) and *specs.LinuxResources
// unchanged.
type Resources = types.Resources

// Checkpoints describes a checkpoint; it carries nothing on Linux.
type Checkpoints = types.Checkpoints

// InterfaceToStats wraps decoded platform metrics read at read.
func InterfaceToStats(read time.Time, v interface{}) *Stats { return types.InterfaceToStats(read, v) }

// Client is moby v20 to v23's libcontainerd client: every call names its
// container (and process) by ID. The value NewClient returns is also an
// io.Closer (see NewClient).
type Client interface {
	// Version returns containerd's version.
	Version(ctx context.Context) (containerd.Version, error)
	// Restore finds a container after a daemon restart and reattaches to
	// its init process's stdio: alive unless its task is stopped or gone,
	// with the task's pid (0 without a task). p deletes a stopped task.
	Restore(ctx context.Context, containerID string, attachStdio StdioCallback) (alive bool, pid int, p Process, err error)
	// Create creates the container and its bundle directory.
	Create(ctx context.Context, containerID string, spec *specs.Spec, shim string, runtimeOptions interface{}, opts ...containerd.NewContainerOpts) error
	// Start creates and starts the container's task (restored from
	// checkpointDir if that is not empty); a task whose start fails is
	// force-deleted.
	Start(ctx context.Context, containerID, checkpointDir string, withStdin bool, attachStdio StdioCallback) (pid int, err error)
	// SignalProcess sends signal to the init process or an exec.
	SignalProcess(ctx context.Context, containerID, processID string, signal syscall.Signal) error
	// Exec creates and starts a process in the container's task.
	Exec(ctx context.Context, containerID, processID string, spec *specs.Process, withStdin bool, attachStdio StdioCallback) (int, error)
	// ResizeTerminal resizes a process's terminal.
	ResizeTerminal(ctx context.Context, containerID, processID string, width, height int) error
	// CloseStdin closes a process's stdin, so that it reads EOF.
	CloseStdin(ctx context.Context, containerID, processID string) error
	// Pause freezes the container's task.
	Pause(ctx context.Context, containerID string) error
	// Resume thaws the container's task.
	Resume(ctx context.Context, containerID string) error
	// Stats returns the task's cgroup metrics.
	Stats(ctx context.Context, containerID string) (*Stats, error)
	// ListPids lists the host pids of the task's processes.
	ListPids(ctx context.Context, containerID string) ([]uint32, error)
	// Summary describes the task's processes.
	Summary(ctx context.Context, containerID string) ([]Summary, error)
	// DeleteTask deletes a stopped task and returns its exit code and time.
	DeleteTask(ctx context.Context, containerID string) (uint32, time.Time, error)
	// Delete deletes the container and its bundle directory.
	Delete(ctx context.Context, containerID string) error
	// Status returns the state of the container's task.
	Status(ctx context.Context, containerID string) (containerd.ProcessStatus, error)
	// UpdateResources changes the task's resource limits.
	UpdateResources(ctx context.Context, containerID string, resources *Resources) error
	// CreateCheckpoint checkpoints the task into checkpointDir, stopping it
	// when exit is true.
	CreateCheckpoint(ctx context.Context, containerID, checkpointDir string, exit bool) error
}
