package errclass

import (
	"context"
	"errors"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The v2 client hands back errgrpc.ToNative's typed errors, not gRPC
// statuses: each must still land in the class moby's markers and
// cerrdefs.Is* (errdefs v1.0.0, what moby v29 classifies with) agree on.
func TestClassifyV2ClientErrors(t *testing.T) {
	cases := []struct {
		code   codes.Code
		marker func(error) bool
		is     func(error) bool
	}{
		{codes.NotFound, func(e error) bool { return markedBy[interface{ NotFound() }](e) }, cerrdefs.IsNotFound},
		{codes.AlreadyExists, func(e error) bool { return markedBy[interface{ Conflict() }](e) }, cerrdefs.IsAlreadyExists},
		{codes.FailedPrecondition, func(e error) bool { return markedBy[interface{ Conflict() }](e) }, cerrdefs.IsFailedPrecondition},
		{codes.InvalidArgument, func(e error) bool { return markedBy[interface{ InvalidParameter() }](e) }, cerrdefs.IsInvalidArgument},
		{codes.Unavailable, func(e error) bool { return markedBy[interface{ Unavailable() }](e) }, cerrdefs.IsUnavailable},
		{codes.Unimplemented, func(e error) bool { return markedBy[interface{ NotImplemented() }](e) }, cerrdefs.IsNotImplemented},
		{codes.PermissionDenied, func(e error) bool { return markedBy[interface{ Forbidden() }](e) }, cerrdefs.IsPermissionDenied},
		{codes.Internal, func(e error) bool { return markedBy[interface{ System() }](e) }, cerrdefs.IsInternal},
		{codes.Unknown, func(e error) bool { return markedBy[interface{ Unknown() }](e) }, cerrdefs.IsUnknown},
		{codes.Canceled, func(e error) bool { return markedBy[interface{ Cancelled() }](e) }, cerrdefs.IsCanceled},
		{codes.DeadlineExceeded, func(e error) bool { return markedBy[interface{ DeadlineExceeded() }](e) }, cerrdefs.IsDeadlineExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.code.String(), func(t *testing.T) {
			native := errgrpc.ToNative(status.Error(tc.code, "task c1: boom"))
			err := Classify(native)
			if !tc.marker(err) {
				t.Errorf("Classify(%v) = %T, without the class's marker method", native, err)
			}
			if !tc.is(err) {
				t.Errorf("cerrdefs.Is* does not match Classify(%v) (%T)", native, err)
			}
			if !errors.Is(err, native) || err.Error() != native.Error() {
				t.Errorf("the cause is lost: %q", err)
			}
		})
	}
	if err := Classify(errgrpc.ToNative(status.Error(codes.Canceled, "x"))); !errors.Is(err, context.Canceled) {
		t.Errorf("a cancelled call does not match context.Canceled: %v", err)
	}
}
