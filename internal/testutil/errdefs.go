package testutil

import (
	"context"

	cdefs "github.com/containerd/containerd/errdefs"
	cerrdefs "github.com/containerd/errdefs"
)

// ErrdefsTargets returns every value errors.Is must match for an error of
// class (moby's class names: "NotFound", "Conflict", "InvalidParameter",
// "Unavailable", "System", "NotImplemented", "Forbidden", "Cancelled",
// "Deadline", "Unknown"), whatever errdefs a consumer's graph has:
// github.com/containerd/errdefs's sentinels that exist at its floor (v0.1.0),
// containerd's own errdefs package's (separate values at containerd v1.7.12,
// aliases later), and a typed sentinel carrying the class's marker method,
// the shape errdefs v0.3.0 gives every sentinel (ErrConflict, ErrInternal,
// ErrPermissionDenied exist only there).
func ErrdefsTargets(class string) []error {
	switch class {
	case "NotFound":
		return []error{cerrdefs.ErrNotFound, cdefs.ErrNotFound, markNotFound{}}
	case "Conflict":
		return []error{markConflict{}}
	case "InvalidParameter":
		return []error{cerrdefs.ErrInvalidArgument, cdefs.ErrInvalidArgument, markInvalid{}}
	case "Unavailable":
		return []error{cerrdefs.ErrUnavailable, cdefs.ErrUnavailable, markUnavailable{}}
	case "System":
		return []error{markSystem{}}
	case "NotImplemented":
		return []error{cerrdefs.ErrNotImplemented, cdefs.ErrNotImplemented, markNotImplemented{}}
	case "Forbidden":
		return []error{markForbidden{}}
	case "Cancelled":
		return []error{context.Canceled}
	case "Deadline":
		return []error{context.DeadlineExceeded}
	case "Unknown":
		return []error{cerrdefs.ErrUnknown, cdefs.ErrUnknown, markUnknown{}}
	}
	return nil
}

// Typed sentinels in errdefs v0.3.0's shape: a comparable value whose type
// carries the class's marker method.
type (
	markNotFound       struct{}
	markConflict       struct{}
	markInvalid        struct{}
	markUnavailable    struct{}
	markSystem         struct{}
	markNotImplemented struct{}
	markForbidden      struct{}
	markUnknown        struct{}
)

func (markNotFound) Error() string         { return "not found" }
func (markNotFound) NotFound()             {}
func (markConflict) Error() string         { return "conflict" }
func (markConflict) Conflict()             {}
func (markInvalid) Error() string          { return "invalid argument" }
func (markInvalid) InvalidParameter()      {}
func (markUnavailable) Error() string      { return "unavailable" }
func (markUnavailable) Unavailable()       {}
func (markSystem) Error() string           { return "internal" }
func (markSystem) System()                 {}
func (markNotImplemented) Error() string   { return "not implemented" }
func (markNotImplemented) NotImplemented() {}
func (markForbidden) Error() string        { return "permission denied" }
func (markForbidden) Forbidden()           {}
func (markUnknown) Error() string          { return "unknown" }
func (markUnknown) Unknown()               {}
