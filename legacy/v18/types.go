// Package v18 is the Remote that moby v18's plugin executor was written
// against, and the ID-keyed client it hands out, with v18's shapes: Create
// without a shim argument, SignalProcess with an int signal, Restore without
// a process, Status with its own Status type.
//
// A Remote is one containerd connection: to a daemon it starts itself
// through package supervisor (WithStartDaemon), or to an existing socket
// (WithRemoteAddr). NewClient hands out a client per namespace; Cleanup
// closes them all and stops a daemon the Remote started.
//
// That executor imported github.com/containerd/containerd/linux/runctypes
// for its runc options. The package is gone from containerd 1.7, with the
// v1 runtime it configured: clients from this package create containers on
// the runc v2 shim (io.containerd.runc.v2), whose options are
// github.com/containerd/containerd/runtime/v2/runc/options.Options
// (RuncOptions.RuntimeRoot is Options.Root there). An executor ported to
// this package changes that import and that type, nothing else it calls.
//
// The clients are package legacy's (moby v20 to v23) under v18's method
// shapes, built on the root package like everything else.
package v18

import (
	"context"
	"time"

	"github.com/containerd/containerd"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/lcdkit/libcontainerd/legacy"
)

// EventType names an event.
type EventType = legacy.EventType

// The events a Backend receives.
const (
	EventUnknown     = legacy.EventUnknown
	EventExit        = legacy.EventExit
	EventOOM         = legacy.EventOOM
	EventCreate      = legacy.EventCreate
	EventStart       = legacy.EventStart
	EventExecAdded   = legacy.EventExecAdded
	EventExecStarted = legacy.EventExecStarted
	EventPaused      = legacy.EventPaused
	EventResumed     = legacy.EventResumed
)

// InitProcessName is the process ID of a container's init process.
const InitProcessName = legacy.InitProcessName

// Status is the state of a container's task.
type Status string

// The states Client.Status reports.
const (
	// StatusRunning: the process is executing.
	StatusRunning Status = "running"
	// StatusCreated: created, its process not started yet.
	StatusCreated Status = "created"
	// StatusStopped: the process has exited.
	StatusStopped Status = "stopped"
	// StatusPaused: frozen.
	StatusPaused Status = "paused"
	// StatusPausing: being frozen.
	StatusPausing Status = "pausing"
	// StatusUnknown: the state could not be determined.
	StatusUnknown Status = "unknown"
)

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
	// UpdatePending is a Windows field; always false here.
	UpdatePending bool
}

// Backend is what the daemon implements to receive events; calls for one
// container are serialised, in the order containerd reported them.
type Backend interface {
	ProcessEvent(containerID string, event EventType, ei EventInfo) error
}

// StdioCallback is called with a process's FIFOs to connect its stdio.
type StdioCallback = legacy.StdioCallback

// Summary describes one process of a task; it carries nothing on Linux.
type Summary = legacy.Summary

// Stats holds a task's metrics as containerd reported them.
type Stats = legacy.Stats

// Resources are the limits UpdateResources sets.
type Resources = legacy.Resources

// Client is moby v18's libcontainerd client, one per namespace, handed out
// by Remote.NewClient. Containers are created on the runc v2 shim.
type Client interface {
	// Version returns containerd's version.
	Version(ctx context.Context) (containerd.Version, error)
	// Restore finds a container after a daemon restart and reattaches to
	// its init process's stdio: alive unless its task is stopped or gone.
	Restore(ctx context.Context, containerID string, attachStdio StdioCallback) (alive bool, pid int, err error)
	// Create creates the container and its bundle directory.
	Create(ctx context.Context, containerID string, spec *specs.Spec, runtimeOptions interface{}) error
	// Start creates and starts the container's task; a task whose start
	// fails is force-deleted.
	Start(ctx context.Context, containerID, checkpointDir string, withStdin bool, attachStdio StdioCallback) (pid int, err error)
	// SignalProcess sends signal to the init process or an exec.
	SignalProcess(ctx context.Context, containerID, processID string, signal int) error
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
	Status(ctx context.Context, containerID string) (Status, error)
	// UpdateResources changes the task's resource limits.
	UpdateResources(ctx context.Context, containerID string, resources *Resources) error
	// CreateCheckpoint checkpoints the task into checkpointDir, stopping it
	// when exit is true.
	CreateCheckpoint(ctx context.Context, containerID, checkpointDir string, exit bool) error
}

// Remote is one containerd connection handing out a client per namespace.
type Remote interface {
	// NewClient returns a client for namespace that reports events to
	// backend.
	NewClient(namespace string, backend Backend) (Client, error)
	// Cleanup closes every client, and stops a daemon the Remote started
	// (its pid file and sockets are removed).
	Cleanup()
}

// RemoteOption configures a Remote made by New.
type RemoteOption interface {
	Apply(Remote) error
}
