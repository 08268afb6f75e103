package errclass

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	cdefs "github.com/containerd/containerd/errdefs"
	cerrdefs "github.com/containerd/errdefs"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/lcdkit/libcontainerd/internal/testutil"
)

// Wrapped causes in errdefs v0.3.0's shape: typed values with a marker.
type (
	typedInternal  struct{}
	typedConflict  struct{}
	typedForbidden struct{}
)

func (typedInternal) Error() string  { return "internal" }
func (typedInternal) System()        {}
func (typedConflict) Error() string  { return "conflict" }
func (typedConflict) Conflict()      {}
func (typedForbidden) Error() string { return "permission denied" }
func (typedForbidden) Forbidden()    {}

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

// testClass names one class by how each classifier sees it.
type testClass struct {
	name string
	moby func(error) bool // moby's marker check
}

func has[M any](err error) bool { _, ok := err.(M); return ok }

var (
	wantNotFound  = testClass{"NotFound", has[mobyNotFound]}
	wantConflict  = testClass{"Conflict", has[mobyConflict]}
	wantInvalid   = testClass{"InvalidParameter", has[mobyInvalidParameter]}
	wantUnavail   = testClass{"Unavailable", has[mobyUnavailable]}
	wantSystem    = testClass{"System", has[mobySystem]}
	wantUnknown   = testClass{"Unknown", has[mobyUnknown]}
	wantNotImpl   = testClass{"NotImplemented", has[mobyNotImplemented]}
	wantForbidden = testClass{"Forbidden", has[mobyForbidden]}
	wantCancelled = testClass{"Cancelled", has[mobyCancelled]}
	wantDeadline  = testClass{"Deadline", has[mobyDeadline]}
	allClasses    = []testClass{wantNotFound, wantConflict, wantInvalid, wantUnavail, wantSystem, wantUnknown, wantNotImpl, wantForbidden, wantCancelled, wantDeadline}
)

// assertClass checks err from both directions: it is in want for moby and for
// containerd, and in no other class for moby.
func assertClass(t *testing.T, err error, want testClass) {
	t.Helper()
	if !want.moby(err) {
		t.Errorf("%v: moby marker %s missing (type %T)", err, want.name, err)
	}
	for _, target := range testutil.ErrdefsTargets(want.name) {
		if !errors.Is(err, target) {
			t.Errorf("%v: errors.Is(err, %T %v) = false", err, target, target)
		}
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
		want testClass
	}{
		{NotFound, wantNotFound},
		{Conflict, wantConflict},
		{InvalidParameter, wantInvalid},
		{Unavailable, wantUnavail},
		{System, wantSystem},
		{Unknown, wantUnknown},
		{NotImplemented, wantNotImpl},
		{Forbidden, wantForbidden},
		{Cancelled, wantCancelled},
		{Deadline, wantDeadline},
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
		want testClass
	}{
		{"errdefs not found", fmt.Errorf("container x: %w", cerrdefs.ErrNotFound), wantNotFound},
		{"grpc not found", status.Error(codes.NotFound, "task x"), wantNotFound},
		{"message container does not exist", errors.New("runc: container does not exist"), wantNotFound},
		{"message not found", errors.New("exec process not found"), wantNotFound},
		{"message no such container", errors.New("no such container: x"), wantNotFound},
		{"not found text beats precondition code", status.Error(codes.FailedPrecondition, "process not found"), wantNotFound},
		{"errdefs already exists", fmt.Errorf("container x: %w", cerrdefs.ErrAlreadyExists), wantConflict},
		{"grpc already exists", status.Error(codes.AlreadyExists, "x"), wantConflict},
		{"errdefs failed precondition", fmt.Errorf("task must be stopped: %w", cerrdefs.ErrFailedPrecondition), wantConflict},
		{"grpc failed precondition", status.Error(codes.FailedPrecondition, "running"), wantConflict},
		{"errdefs invalid", fmt.Errorf("bad: %w", cerrdefs.ErrInvalidArgument), wantInvalid},
		{"grpc invalid", status.Error(codes.InvalidArgument, "bad"), wantInvalid},
		{"grpc unavailable", status.Error(codes.Unavailable, "connection error: EOF"), wantUnavail},
		{"errdefs unavailable", fmt.Errorf("x: %w", cerrdefs.ErrUnavailable), wantUnavail},
		{"transport is closing", errors.New("rpc error: code = Unknown desc = transport is closing"), wantUnavail},
		{"grpc internal", status.Error(codes.Internal, "boom"), wantSystem},
		{"client errdefs not found (v1.7.12's own sentinel)", fmt.Errorf("x: %w", cdefs.ErrNotFound), wantNotFound},
		{"client errdefs already exists", fmt.Errorf("x: %w", cdefs.ErrAlreadyExists), wantConflict},
		{"client errdefs unavailable", fmt.Errorf("x: %w", cdefs.ErrUnavailable), wantUnavail},
		{"typed internal sentinel (errdefs v0.3.0 shape)", fmt.Errorf("x: %w", typedInternal{}), wantSystem},
		{"typed conflict sentinel", fmt.Errorf("x: %w", typedConflict{}), wantConflict},
		{"typed permission sentinel", fmt.Errorf("x: %w", typedForbidden{}), wantForbidden},
		{"grpc unimplemented", status.Error(codes.Unimplemented, "no"), wantNotImpl},
		{"grpc permission denied", status.Error(codes.PermissionDenied, "no"), wantForbidden},
		{"context canceled", fmt.Errorf("op: %w", context.Canceled), wantCancelled},
		{"grpc canceled", status.Error(codes.Canceled, "context canceled"), wantCancelled},
		{"context deadline", fmt.Errorf("op: %w", context.DeadlineExceeded), wantDeadline},
		{"grpc deadline", status.Error(codes.DeadlineExceeded, "slow"), wantDeadline},
		{"shim refuses to delete a running process", status.Error(codes.Unknown, "cannot delete a running process"), wantConflict},
		{"plain text", errors.New("OCI runtime exec failed: permission denied"), wantUnknown},
		{"grpc unknown", status.Error(codes.Unknown, "runc did something"), wantUnknown},
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

// Precondition answers every errdefs's failed-precondition sentinel (the
// client's own at v1.7.12, errdefs v0.1.0's, v0.3.0's typed marker) and is a
// Conflict to both classifiers.
func TestPrecondition(t *testing.T) {
	err := Precondition("cannot delete container x: it has a task")
	assertClass(t, err, wantConflict)
	for _, target := range []error{cdefs.ErrFailedPrecondition, cerrdefs.ErrFailedPrecondition, typedPrecondition{}} {
		if !errors.Is(err, target) {
			t.Errorf("errors.Is(%q, %T) = false", err, target)
		}
	}
	if errors.Is(err, cerrdefs.ErrNotFound) || errors.Is(err, cdefs.ErrAlreadyExists) {
		t.Errorf("%q matches a sentinel of another class", err)
	}
	if err.Error() != "cannot delete container x: it has a task" {
		t.Errorf("message changed: %q", err)
	}
}

type typedPrecondition struct{}

func (typedPrecondition) Error() string       { return "failed precondition" }
func (typedPrecondition) FailedPrecondition() {}
