// Package remote is where moby's daemon finds its containerd client:
// daemon/daemon_unix.go (v25 to v27) imports libcontainerd/remote and calls
// remote.NewClient. It exists so that code compiles with nothing changed but
// the import prefix; the client itself is the root package's, of which this
// is a forwarder, not a second implementation.
package remote

import (
	"context"

	"github.com/containerd/containerd"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/types"
)

// NewClient returns the libcontainerd client for namespace ns, with bundle
// directories under stateDir and events reported to b: exactly
// libcontainerd.NewClient, under the name and signature moby's daemon calls.
func NewClient(ctx context.Context, cli *containerd.Client, stateDir, ns string, b types.Backend, opts ...libcontainerd.Option) (types.Client, error) {
	return libcontainerd.NewClient(ctx, cli, stateDir, ns, b, opts...)
}
