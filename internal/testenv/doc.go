// Package testenv runs the integration tests' real parts: a private
// containerd daemon per test binary (its own temp root, state and socket, CRI
// and the snapshotters that cannot work here disabled) and a busybox-static
// root filesystem, so tests need no image pull and no network.
//
// A test binary calls Main from TestMain. If the host cannot run the suite
// (not root, containerd/runc/busybox missing) Main fails loudly: an integration
// suite that skips is a failure, never a pass.
package testenv
