// Package errclass classifies errors so that both of the classifiers a daemon
// may use agree on them: moby's (marker methods such as NotFound(), read by
// github.com/docker/docker/errdefs) and containerd's (errors.Is against the
// github.com/containerd/errdefs sentinels). A classified error keeps the
// original message and unwraps to its cause.
package errclass

import (
	"context"
	"errors"
	"strings"

	cdgrpc "github.com/containerd/containerd/errdefs"
	cerrdefs "github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// classified carries what every class shares; each class is then its own
// small type, because moby's classifier looks for a marker method and a type
// has only the methods it declares.
type classified struct {
	cause    error
	sentinel error // the containerd errdefs sentinel this class answers to
}

func (e classified) Error() string { return e.cause.Error() }

// Unwrap keeps the cause reachable for errors.Is/As and message matching.
func (e classified) Unwrap() error { return e.cause }

// Is lets errors.Is(err, cerrdefs.ErrX) agree with the moby marker.
func (e classified) Is(target error) bool { return target == e.sentinel }

type notFound struct{ classified }
type conflict struct{ classified }
type invalidParameter struct{ classified }
type unavailable struct{ classified }
type system struct{ classified }
type unknown struct{ classified }
type notImplemented struct{ classified }
type forbidden struct{ classified }
type cancelled struct{ classified }
type deadline struct{ classified }

// The marker methods moby's errdefs (and containerd's IsX helpers) look for.
func (notFound) NotFound()                 {}
func (conflict) Conflict()                 {}
func (invalidParameter) InvalidParameter() {}
func (unavailable) Unavailable()           {}
func (system) System()                     {}
func (unknown) Unknown()                   {}
func (notImplemented) NotImplemented()     {}
func (forbidden) Forbidden()               {}
func (cancelled) Cancelled()               {}
func (deadline) DeadlineExceeded()         {}

// NotFound marks err as "the object does not exist". A nil err stays nil.
func NotFound(err error) error {
	if err == nil || isMarked[interface{ NotFound() }](err) {
		return err
	}
	return notFound{classified{err, cerrdefs.ErrNotFound}}
}

// Conflict marks err as "the request conflicts with the current state" (an ID
// already in use, a task that must be stopped first). A nil err stays nil.
func Conflict(err error) error {
	if err == nil || isMarked[interface{ Conflict() }](err) {
		return err
	}
	return conflict{classified{err, cerrdefs.ErrConflict}}
}

// InvalidParameter marks err as "the caller's input is wrong". A nil err stays nil.
func InvalidParameter(err error) error {
	if err == nil || isMarked[interface{ InvalidParameter() }](err) {
		return err
	}
	return invalidParameter{classified{err, cerrdefs.ErrInvalidArgument}}
}

// Unavailable marks err as "containerd cannot be reached now; try again".
// A nil err stays nil.
func Unavailable(err error) error {
	if err == nil || isMarked[interface{ Unavailable() }](err) {
		return err
	}
	return unavailable{classified{err, cerrdefs.ErrUnavailable}}
}

// System marks err as an internal failure. A nil err stays nil.
func System(err error) error {
	if err == nil || isMarked[interface{ System() }](err) {
		return err
	}
	return system{classified{err, cerrdefs.ErrInternal}}
}

// Unknown marks err as unclassifiable. A nil err stays nil.
func Unknown(err error) error {
	if err == nil || isMarked[interface{ Unknown() }](err) {
		return err
	}
	return unknown{classified{err, cerrdefs.ErrUnknown}}
}

// NotImplemented marks err as "the runtime does not support this". A nil err
// stays nil.
func NotImplemented(err error) error {
	if err == nil || isMarked[interface{ NotImplemented() }](err) {
		return err
	}
	return notImplemented{classified{err, cerrdefs.ErrNotImplemented}}
}

// Forbidden marks err as "permission denied". A nil err stays nil.
func Forbidden(err error) error {
	if err == nil || isMarked[interface{ Forbidden() }](err) {
		return err
	}
	return forbidden{classified{err, cerrdefs.ErrPermissionDenied}}
}

// Cancelled marks err as caused by a cancelled context. A nil err stays nil.
func Cancelled(err error) error {
	if err == nil || isMarked[interface{ Cancelled() }](err) {
		return err
	}
	return cancelled{classified{err, context.Canceled}}
}

// Deadline marks err as caused by an expired deadline. A nil err stays nil.
func Deadline(err error) error {
	if err == nil || isMarked[interface{ DeadlineExceeded() }](err) {
		return err
	}
	return deadline{classified{err, context.DeadlineExceeded}}
}

// isMarked reports whether err itself (not its causes) already carries the
// marker M, so that classifying twice does not stack wrappers.
func isMarked[M any](err error) bool {
	_, ok := err.(M)
	return ok
}

// alreadyClassified reports whether err is one of ours already.
func alreadyClassified(err error) bool {
	switch err.(type) {
	case notFound, conflict, invalidParameter, unavailable, system, unknown,
		notImplemented, forbidden, cancelled, deadline:
		return true
	}
	return false
}

// Classify gives an error from the containerd client (a containerd errdefs
// error, a raw gRPC status, a context error or plain text) one class that both
// moby's and containerd's classifiers agree on. A nil err stays nil, and an
// error that is already classified is returned unchanged.
//
// NotFound is decided first, by class or by message, as moby does: daemons
// rely on "not found" text being NotFound whatever code carried it.
func Classify(err error) error {
	if err == nil || alreadyClassified(err) {
		return err
	}
	err = FromGRPC(err)
	if isNotFound(err) {
		return NotFound(err)
	}
	switch {
	case errors.Is(err, context.Canceled):
		return Cancelled(err)
	case errors.Is(err, context.DeadlineExceeded):
		return Deadline(err)
	}
	if s, ok := status.FromError(err); ok {
		if c := fromCode(s.Code()); c != nil {
			return c(err)
		}
	}
	switch {
	case cerrdefs.IsAlreadyExists(err), cerrdefs.IsConflict(err), cerrdefs.IsFailedPrecondition(err):
		return Conflict(err)
	case cerrdefs.IsInvalidArgument(err):
		return InvalidParameter(err)
	case cerrdefs.IsUnavailable(err):
		return Unavailable(err)
	case cerrdefs.IsNotImplemented(err):
		return NotImplemented(err)
	case cerrdefs.IsPermissionDenied(err):
		return Forbidden(err)
	case cerrdefs.IsCanceled(err):
		return Cancelled(err)
	case cerrdefs.IsDeadlineExceeded(err):
		return Deadline(err)
	case cerrdefs.IsInternal(err):
		return System(err)
	}
	// In-flight calls fail this way when containerd's socket closes: a lost
	// connection, never a result (CONTAINERD-NOTES, "transport is closing").
	if strings.Contains(err.Error(), "transport is closing") {
		return Unavailable(err)
	}
	return Unknown(err)
}

// FromGRPC gives a raw gRPC status error (from the raw TaskService and
// ContainerService calls, or the event stream) the message and errdefs class
// the containerd client would have given it, so callers matching text see
// what moby's callers see; the status itself stays reachable (status.Code,
// errors.Is). Any other error is returned unchanged.
func FromGRPC(err error) error {
	if _, ok := err.(interface{ GRPCStatus() *status.Status }); !ok {
		return err
	}
	return &rpcError{converted: cdgrpc.FromGRPC(err), original: err}
}

type rpcError struct{ converted, original error }

func (e *rpcError) Error() string   { return e.converted.Error() }
func (e *rpcError) Unwrap() []error { return []error{e.converted, e.original} }

// notFoundMessages are the substrings moby maps to NotFound, because the
// runtime reports some missing objects only in text.
var notFoundMessages = []string{"container does not exist", "not found", "no such container"}

func isNotFound(err error) bool {
	if cerrdefs.IsNotFound(err) {
		return true
	}
	if s, ok := status.FromError(err); ok && s.Code() == codes.NotFound {
		return true
	}
	msg := err.Error()
	for _, s := range notFoundMessages {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// fromCode maps a gRPC status code to a class; nil means "look further".
func fromCode(c codes.Code) func(error) error {
	switch c {
	case codes.Canceled:
		return Cancelled
	case codes.DeadlineExceeded:
		return Deadline
	case codes.NotFound:
		return NotFound
	case codes.AlreadyExists, codes.FailedPrecondition, codes.Aborted:
		return Conflict
	case codes.InvalidArgument, codes.OutOfRange:
		return InvalidParameter
	case codes.Unavailable:
		return Unavailable
	case codes.Unimplemented:
		return NotImplemented
	case codes.PermissionDenied, codes.Unauthenticated:
		return Forbidden
	case codes.Internal, codes.DataLoss, codes.ResourceExhausted:
		return System
	}
	return nil
}

// IsNotFound reports whether err, once classified, is NotFound.
func IsNotFound(err error) bool { return err != nil && cerrdefs.IsNotFound(Classify(err)) }

// IsConflict reports whether err, once classified, is a Conflict.
func IsConflict(err error) bool { return err != nil && cerrdefs.IsConflict(Classify(err)) }

// IsAlreadyExists reports whether err says the object already exists (a
// narrower question than IsConflict: a failed precondition is no duplicate).
func IsAlreadyExists(err error) bool { return err != nil && cerrdefs.IsAlreadyExists(FromGRPC(err)) }
