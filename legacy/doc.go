// Package legacy is the ID-keyed client API of moby v20 to v23
// (libcontainerd/remote and libcontainerd/types of those releases), for a
// daemon written against it: Create, Start, Exec, SignalProcess, DeleteTask
// and the rest take a container ID (and a process ID) instead of handing out
// objects.
//
// It is built only on the root package's exported API: each call finds the
// container's handles (cached from Create, Start, Exec and Restore, or
// loaded), and forwards to them, so errors, stdio, event delivery and the
// exits recovered across containerd restarts are the root package's. What
// the release line added on top is here:
//
//   - EventInfo carries OOMKilled, sticky per container from its first OOM
//     event until the container is deleted;
//   - after the backend has handled an exec's exit, the exec's process is
//     deleted and its FIFOs removed;
//   - process IDs: InitProcessName names a container's init process.
//
// Where moby's code swallowed an error (DeleteTask and the restored
// process's Delete returned exit code 255 and nil), this package returns the
// same 255 and the current time together with the classified error, so a
// caller that logs and goes on behaves as before.
//
// Subpackages hold the neighbouring shapes: v24 the Container.Start of moby
// v24, v18 the Remote and the client moby's first plugin executor was
// written against.
package legacy
