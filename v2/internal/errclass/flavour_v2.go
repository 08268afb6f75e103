package errclass

import "github.com/containerd/errdefs/pkg/errgrpc"

// nativeError converts a gRPC status error the way the containerd v2 client
// does for everything it returns, so an error from a raw service call or the
// event stream reads and classifies like one from the client. The v1 flavour
// (internal/errclass/flavour_v1.go) uses the v1.7 client's errdefs.FromGRPC.
func nativeError(err error) error { return errgrpc.ToNative(err) }
