package remote

import (
	"context"
	"testing"

	"github.com/containerd/containerd"
	"go.uber.org/goleak"

	"github.com/lcdkit/libcontainerd/types"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mobyNewClient is how moby's daemon/daemon_unix.go calls us: if this stops
// compiling, moby stops compiling.
var mobyNewClient = func(ctx context.Context, cli *containerd.Client, stateDir, ns string, b types.Backend) (types.Client, error) {
	return NewClient(ctx, cli, stateDir, ns, b)
}

// The forwarder keeps the root package's input checks (and starts no
// goroutine when it refuses).
func TestNewClientRefusesNilClient(t *testing.T) {
	c, err := mobyNewClient(context.Background(), nil, t.TempDir(), "moby", nil)
	if err == nil || c != nil {
		t.Fatalf("NewClient(nil containerd client) = %v, %v; want an error", c, err)
	}
	if _, ok := err.(interface{ InvalidParameter() }); !ok {
		t.Fatalf("error %q (%T) is not InvalidParameter", err, err)
	}
}
