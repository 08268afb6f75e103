// Package libcontainerd is the layer a container engine daemon imports to
// drive containerd: a drop-in for the client that the Docker engine (moby)
// keeps in its libcontainerd folder.
//
// It comes as two modules from one source: github.com/lcdkit/libcontainerd
// is built on the containerd v1.7 Go client (github.com/containerd/containerd,
// for moby v25 to v27), and github.com/lcdkit/libcontainerd/v2 on the
// containerd v2 client (github.com/containerd/containerd/v2/client, for moby
// v28 and v29). The v2 module is generated from this one.
//
// NewClient wraps a containerd client and hands out the Container, Task and
// Process objects of package types. One event subscription per client turns
// containerd task events into types.EventType values and delivers them, in
// order per container, to the daemon's types.Backend. Process stdio goes
// through FIFOs in each container's bundle directory. Task.CreateCheckpoint
// writes a criu checkpoint to a directory, and Container.NewTask restores
// from one; neither leaves anything in containerd.
//
// # Exits
//
// Every process the client has seen running (started through it, reported
// running by an event, or by Task.Status on a handle it returned) gets
// exactly one types.EventExit, with its real exit code whenever any source
// knows it (the event stream, the answer to a delete or wait, the process's
// shim while containerd is down, or containerd asked afterwards), across
// containerd restarts, freezes, shim deaths and kills in the middle of a
// call. 255 is reported only for a process containerd confirmed gone with
// its code lost. A process that never ran gets no exit, and nothing reaches
// the backend after Close returns. Exits heard while containerd is down are
// held until it serves again, so that the daemon's Delete can act on them.
//
// Every error the package returns is classified so that moby's errdefs
// (marker methods) and containerd's errdefs (errors.Is) agree on it.
package libcontainerd
