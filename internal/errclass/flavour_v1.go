package errclass

import cdgrpc "github.com/containerd/containerd/errdefs"

// nativeError converts a gRPC status error the way the containerd v1.7
// client does. The v2 flavour (v2/internal/errclass/flavour_v2.go) uses
// errgrpc.ToNative, which the v2 client applies to everything it returns.
func nativeError(err error) error { return cdgrpc.FromGRPC(err) }
