// Package dial holds how the tests, the supervisor and the demo reach
// containerd: gRPC dial options and a bounded "is it serving" probe.
package dial

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/containerd/containerd"

	"github.com/containerd/containerd/defaults"
	"github.com/containerd/containerd/pkg/dialer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// Options are containerd.New's own defaults with a fast reconnect
// backoff (the client's default waits up to 3 s between attempts, which makes
// a restarted daemon look down for longer than it is), plus extra.
func Options(extra ...grpc.DialOption) []grpc.DialOption {
	bc := backoff.DefaultConfig
	bc.BaseDelay = 50 * time.Millisecond
	bc.MaxDelay = 500 * time.Millisecond
	opts := []grpc.DialOption{
		grpc.WithBlock(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.FailOnNonTempDialError(true),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: time.Second}),
		grpc.WithContextDialer(dialer.ContextDialer),
		grpc.WithReturnConnectionError(),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(defaults.DefaultMaxRecvMsgSize),
			grpc.MaxCallSendMsgSize(defaults.DefaultMaxSendMsgSize)),
	}
	return append(opts, extra...)
}

// Serving connects to the containerd at address and checks that it serves,
// all within timeout. The caller closes the client it returns.
func Serving(ctx context.Context, address string, timeout time.Duration) (*containerd.Client, error) {
	if _, err := os.Stat(address); err != nil {
		return nil, err
	}
	cli, err := containerd.New(address, containerd.WithTimeout(timeout))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ok, err := cli.IsServing(ctx)
	if err == nil && !ok {
		err = errors.New("containerd is not serving")
	}
	if err != nil {
		cli.Close()
		return nil, err
	}
	return cli, nil
}
