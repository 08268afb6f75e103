package errclass

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The marker interfaces github.com/docker/docker/errdefs looks for.
type (
	mobyNotFound         interface{ NotFound() }
	mobyConflict         interface{ Conflict() }
	mobyInvalidParameter interface{ InvalidParameter() }
	mobyUnavailable      interface{ Unavailable() }
	mobySystem           interface{ System() }
	mobyUnknown          interface{ Unknown() }
	mobyNotImplemented   interface{ NotImplemented() }
	mobyForbidden        interface{ Forbidden() }
	mobyCancelled        interface{ Cancelled() }
	mobyDeadline         interface{ DeadlineExceeded() }
)

// class names one class by how each classifier sees it.
type class struct {
	name     string
	moby     func(error) bool // moby's marker check
	sentinel error            // what errors.Is must match
	cd       func(error) bool // containerd's IsX
}

func has[M any](err error) bool { _, ok := err.(M); return ok }

var (
	classNotFound  = class{"NotFound", has[mobyNotFound], cerrdefs.ErrNotFound, cerrdefs.IsNotFound}
	classConflict  = class{"Conflict", has[mobyConflict], cerrdefs.ErrConflict, cerrdefs.IsConflict}
	classInvalid   = class{"InvalidParameter", has[mobyInvalidParameter], cerrdefs.ErrInvalidArgument, cerrdefs.IsInvalidArgument}
	classUnavail   = class{"Unavailable", has[mobyUnavailable], cerrdefs.ErrUnavailable, cerrdefs.IsUnavailable}
	classSystem    = class{"System", has[mobySystem], cerrdefs.ErrInternal, cerrdefs.IsInternal}
	classUnknown   = class{"Unknown", has[mobyUnknown], cerrdefs.ErrUnknown, cerrdefs.IsUnknown}
	classNotImpl   = class{"NotImplemented", has[mobyNotImplemented], cerrdefs.ErrNotImplemented, cerrdefs.IsNotImplemented}
	classForbidden = class{"Forbidden", has[mobyForbidden], cerrdefs.ErrPermissionDenied, cerrdefs.IsPermissionDenied}
	classCancelled = class{"Cancelled", has[mobyCancelled], context.Canceled, cerrdefs.IsCanceled}
	classDeadline  = class{"Deadline", has[mobyDeadline], context.DeadlineExceeded, cerrdefs.IsDeadlineExceeded}
	allClasses     = []class{classNotFound, classConflict, classInvalid, classUnavail, classSystem, classUnknown, classNotImpl, classForbidden, classCancelled, classDeadline}
)

// assertClass checks err from both directions: it is in want for moby and for
// containerd, and in no other class for moby.
func assertClass(t *testing.T, err error, want class) {
	t.Helper()
	if !want.moby(err) {
		t.Errorf("%v: moby marker %s missing (type %T)", err, want.name, err)
	}
	if !errors.Is(err, want.sentinel) {
		t.Errorf("%v: errors.Is(err, %v) = false", err, want.sentinel)
	}
	if !want.cd(err) {
		t.Errorf("%v: containerd Is%s = false", err, want.name)
	}
	for _, other := range allClasses {
		if other.name != want.name && other.moby(err) {
			t.Errorf("%v: also has moby marker %s", err, other.name)
		}
	}
}

func TestConstructors(t *testing.T) {
	cases := []struct {
		ctor func(error) error
		want class
	}{
		{NotFound, classNotFound},
		{Conflict, classConflict},
		{InvalidParameter, classInvalid},
		{Unavailable, classUnavail},
		{System, classSystem},
		{Unknown, classUnknown},
		{NotImplemented, classNotImpl},
		{Forbidden, classForbidden},
		{Cancelled, classCancelled},
		{Deadline, classDeadline},
	}
	for _, tc := range cases {
		t.Run(tc.want.name, func(t *testing.T) {
			cause := errors.New("the original message")
			err := tc.ctor(cause)
			assertClass(t, err, tc.want)
			if err.Error() != "the original message" {
				t.Errorf("message changed: %q", err.Error())
			}
			if errors.Unwrap(err) != cause || !errors.Is(err, cause) {
				t.Errorf("cause not reachable")
			}
			if again := tc.ctor(err); again != err {
				t.Errorf("classifying twice stacked a wrapper")
			}
			if tc.ctor(nil) != nil {
				t.Errorf("nil error did not stay nil")
			}
		})
	}
}

// A classified error still answers errors.As for the concrete cause.
func TestCauseReachableWithAs(t *testing.T) {
	type myErr struct{ error }
	err := Classify(fmt.Errorf("wrapped: %w", myErr{errors.New("x")}))
	var target myErr
	if !errors.As(err, &target) {
		t.Fatal("errors.As lost the cause")
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		name string
		err  error
		want class
	}{
		{"errdefs not found", fmt.Errorf("container x: %w", cerrdefs.ErrNotFound), classNotFound},
		{"grpc not found", status.Error(codes.NotFound, "task x"), classNotFound},
		{"message container does not exist", errors.New("runc: container does not exist"), classNotFound},
		{"message not found", errors.New("exec process not found"), classNotFound},
		{"message no such container", errors.New("no such container: x"), classNotFound},
		{"not found text beats precondition code", status.Error(codes.FailedPrecondition, "process not found"), classNotFound},
		{"errdefs already exists", fmt.Errorf("container x: %w", cerrdefs.ErrAlreadyExists), classConflict},
		{"grpc already exists", status.Error(codes.AlreadyExists, "x"), classConflict},
		{"errdefs failed precondition", fmt.Errorf("task must be stopped: %w", cerrdefs.ErrFailedPrecondition), classConflict},
		{"grpc failed precondition", status.Error(codes.FailedPrecondition, "running"), classConflict},
		{"errdefs invalid", fmt.Errorf("bad: %w", cerrdefs.ErrInvalidArgument), classInvalid},
		{"grpc invalid", status.Error(codes.InvalidArgument, "bad"), classInvalid},
		{"grpc unavailable", status.Error(codes.Unavailable, "connection error: EOF"), classUnavail},
		{"errdefs unavailable", fmt.Errorf("x: %w", cerrdefs.ErrUnavailable), classUnavail},
		{"transport is closing", errors.New("rpc error: code = Unknown desc = transport is closing"), classUnavail},
		{"grpc internal", status.Error(codes.Internal, "boom"), classSystem},
		{"errdefs internal", fmt.Errorf("x: %w", cerrdefs.ErrInternal), classSystem},
		{"grpc unimplemented", status.Error(codes.Unimplemented, "no"), classNotImpl},
		{"grpc permission denied", status.Error(codes.PermissionDenied, "no"), classForbidden},
		{"context canceled", fmt.Errorf("op: %w", context.Canceled), classCancelled},
		{"grpc canceled", status.Error(codes.Canceled, "context canceled"), classCancelled},
		{"context deadline", fmt.Errorf("op: %w", context.DeadlineExceeded), classDeadline},
		{"grpc deadline", status.Error(codes.DeadlineExceeded, "slow"), classDeadline},
		{"plain text", errors.New("OCI runtime exec failed: permission denied"), classUnknown},
		{"grpc unknown", status.Error(codes.Unknown, "runc did something"), classUnknown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Classify(tc.err)
			assertClass(t, err, tc.want)
			if st, ok := status.FromError(tc.err); ok && st.Code() != codes.OK {
				// gRPC errors read as the containerd client shows them.
				if !strings.Contains(err.Error(), st.Message()) || strings.Contains(err.Error(), "rpc error") {
					t.Errorf("gRPC message not converted: %q -> %q", tc.err, err)
				}
				if status.Code(err) != st.Code() {
					t.Errorf("status code lost: %v", status.Code(err))
				}
			} else if err.Error() != tc.err.Error() {
				t.Errorf("message changed: %q -> %q", tc.err, err)
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("original not reachable")
			}
		})
	}
}

func TestClassifyNilAndIdempotent(t *testing.T) {
	if Classify(nil) != nil {
		t.Fatal("Classify(nil) != nil")
	}
	once := Classify(errors.New("not found"))
	if Classify(once) != once {
		t.Fatal("classifying a classified error changed it")
	}
}
