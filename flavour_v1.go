package libcontainerd

import (
	"github.com/containerd/containerd/protobuf"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// What differs between the containerd v1.7 client and v2 beyond import
// paths, on the v1 side; v2/flavour_v2.go is the other. genv2 leaves
// flavour_v1*.go files out of the v2 module.

// protoAny turns a marshalled value into the protobuf Any a raw request
// carries (v2's pkg/protobuf has no FromAny).
func protoAny(a typeurl.Any) *anypb.Any { return protobuf.FromAny(a) }
