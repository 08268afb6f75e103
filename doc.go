// Package libcontainerd is the layer a container engine daemon imports to
// drive containerd: a drop-in for the client that the Docker engine (moby)
// keeps in its libcontainerd folder, built on the containerd v1.7 Go client.
//
// NewClient wraps a *containerd.Client and hands out the Container, Task and
// Process objects of package types. One event subscription per client turns
// containerd task events into types.EventType values and delivers them, in
// order per container, to the daemon's types.Backend. Process stdio goes
// through FIFOs in each container's bundle directory. Task.CreateCheckpoint
// writes a criu checkpoint to a directory, and Container.NewTask restores
// from one; neither leaves anything in containerd.
//
// Every error the package returns is classified so that moby's errdefs
// (marker methods) and containerd's errdefs (errors.Is) agree on it.
package libcontainerd
