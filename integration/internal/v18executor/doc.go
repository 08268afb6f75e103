// Package containerd is moby v18's plugin executor
// (plugin/executor/containerd, Apache-2.0, by the Moby authors) ported to
// libcontainerd's legacy/v18 Remote: the integration tests run it to show
// that code written against that Remote works on this library.
//
// executor.go is moby's file with these differences and no others:
//
//   - imports: github.com/docker/docker/libcontainerd is
//     github.com/lcdkit/libcontainerd/legacy/v18 (under the same name,
//     libcontainerd); github.com/containerd/containerd/linux/runctypes,
//     gone from containerd 1.7, is runtime/v2/runc/options;
//     github.com/docker/docker/errdefs is github.com/containerd/errdefs (it
//     has the same IsNotFound); github.com/sirupsen/logrus is not imported,
//     logrus.go gives the name to containerd/log's logger instead (this
//     module does not require logrus itself);
//   - the runc options: runctypes.RuncOptions{RuntimeRoot: …} is
//     runcoptions.Options{Root: …}, the runc v2 shim's type.
package containerd
