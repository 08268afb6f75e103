// Package supervisor runs the containerd daemon a container engine talks to,
// in the shape of moby's libcontainerd/supervisor: Start writes a config,
// starts (or adopts) containerd and keeps it running until the caller's
// context is cancelled.
//
// It goes further than moby's supervisor in three ways, because a daemon that
// is up but not answering is as bad as one that is gone:
//
//   - The daemon is health-checked with bounded IsServing calls; a run of
//     failures (a hung daemon) gets it killed and restarted, not only an exit.
//   - A daemon adopted from the pid file is watched too (through a pidfd), so
//     its death is noticed and a child of our own replaces it.
//   - Restarts back off (100 ms doubling to 5 s, reset after a healthy
//     period), so a daemon that cannot start does not spin.
//
// A child daemon is started with Pdeathsig from a goroutine that keeps its
// OS thread, so it dies with the supervising process even on kill -9.
//
// Files in the state directory:
//
//	containerd.toml       the generated version-2 config
//	containerd.pid        the pid of the daemon being supervised
//	containerd.sock       the gRPC socket (Daemon.Address)
//	containerd.sock.ttrpc the ttrpc socket
//	containerd.log        the daemon's stdout/stderr with WithLogFile (by default
//	                      they are the engine's own, as with moby's supervisor)
//	daemon/               containerd's own state directory
//
// containerd's root directory is <rootDir>/daemon.
package supervisor
