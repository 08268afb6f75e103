package libcontainerd

import (
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// What differs between the containerd v1.7 client and v2 beyond import
// paths, on the v2 side; flavour_v1.go in the root module is the other.
// This file is hand-written: genv2 does not touch flavour_v2*.go files.

// protoAny turns a marshalled value into the protobuf Any a raw request
// carries, as the v1.7 client's protobuf.FromAny did.
func protoAny(a typeurl.Any) *anypb.Any {
	if a == nil {
		return nil
	}
	if pb, ok := a.(*anypb.Any); ok {
		return pb
	}
	return &anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()}
}
