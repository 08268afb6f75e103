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
	cause error
	class *class
}

func (e classified) Error() string { return e.cause.Error() }

// Unwrap keeps the cause reachable for errors.Is/As and message matching.
func (e classified) Unwrap() error { return e.cause }

// Is lets errors.Is(err, errdefs.ErrX) agree with the moby marker, whichever
// errdefs the consumer's graph has (see class).
func (e classified) Is(target error) bool { return e.class.is(target) }

// class is what errors.Is against a sentinel must answer for one class.
// Which sentinels exist depends on the versions in the consumer's graph:
// containerd v1.7.12's own errdefs package has sentinels of its own; from
// v1.7.18 on it aliases github.com/containerd/errdefs, whose v0.1.0 has only
// seven (no ErrConflict, ErrInternal, ErrPermissionDenied) and whose v0.3.0
// makes each a typed value carrying the class's marker method. So a class
// matches its sentinels from both packages by identity, and any target that
// carries its marker method (v0.3.0's ErrConflict, ErrInternal, ... named by
// no code here, so this compiles at every floor).
type class struct {
	sentinels []error
	marked    func(error) bool // target itself carries the marker method
	// inChain reports whether err or anything in its chain carries the
	// marker method (errors.As, which also asks errdefs v1.0.0's
	// message-carrying errors, which hide their class behind an As method
	// rather than Unwrap: the v2 client's errors).
	inChain func(error) bool
}

func (c *class) is(target error) bool {
	for _, s := range c.sentinels {
		if target == s {
			return true
		}
	}
	return c.marked(target)
}

// matches reports whether err, or anything it wraps, belongs to the class.
func (c *class) matches(err error) bool {
	for _, s := range c.sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return c.inChain(err)
}

func newClass[M any](sentinels ...error) *class {
	c := &class{
		marked:  markedBy[M],
		inChain: func(err error) bool { var m M; return errors.As(err, &m) },
	}
	for _, s := range sentinels {
		if s != nil && !c.is(s) {
			c.sentinels = append(c.sentinels, s) // aliases appear once
		}
	}
	return c
}

// markedBy reports whether err itself (not its causes) has the marker M.
func markedBy[M any](err error) bool {
	_, ok := err.(M)
	return ok
}

var (
	classNotFound       = newClass[interface{ NotFound() }](cerrdefs.ErrNotFound, cdgrpc.ErrNotFound)
	classConflict       = newClass[interface{ Conflict() }]()
	classInvalid        = newClass[interface{ InvalidParameter() }](cerrdefs.ErrInvalidArgument, cdgrpc.ErrInvalidArgument)
	classUnavailable    = newClass[interface{ Unavailable() }](cerrdefs.ErrUnavailable, cdgrpc.ErrUnavailable)
	classSystem         = newClass[interface{ System() }]()
	classUnknown        = newClass[interface{ Unknown() }](cerrdefs.ErrUnknown, cdgrpc.ErrUnknown)
	classNotImplemented = newClass[interface{ NotImplemented() }](cerrdefs.ErrNotImplemented, cdgrpc.ErrNotImplemented)
	classForbidden      = newClass[interface{ Forbidden() }]()
	classCancelled      = newClass[interface{ Cancelled() }](context.Canceled)
	classDeadline       = newClass[interface{ DeadlineExceeded() }](context.DeadlineExceeded)

	// Not classes of ours, but what the containerd client reports: a
	// duplicate and a failed precondition become Conflict.
	classAlreadyExists      = newClass[interface{ AlreadyExists() }](cerrdefs.ErrAlreadyExists, cdgrpc.ErrAlreadyExists)
	classFailedPrecondition = newClass[interface{ FailedPrecondition() }](cerrdefs.ErrFailedPrecondition, cdgrpc.ErrFailedPrecondition)
)

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
	if err == nil || classNotFound.marked(err) {
		return err
	}
	return notFound{classified{err, classNotFound}}
}

// Conflict marks err as "the request conflicts with the current state" (an ID
// already in use, a task that must be stopped first). A nil err stays nil.
func Conflict(err error) error {
	if err == nil || classConflict.marked(err) {
		return err
	}
	return conflict{classified{err, classConflict}}
}

// InvalidParameter marks err as "the caller's input is wrong". A nil err stays nil.
func InvalidParameter(err error) error {
	if err == nil || classInvalid.marked(err) {
		return err
	}
	return invalidParameter{classified{err, classInvalid}}
}

// Unavailable marks err as "containerd cannot be reached now; try again".
// A nil err stays nil.
func Unavailable(err error) error {
	if err == nil || classUnavailable.marked(err) {
		return err
	}
	return unavailable{classified{err, classUnavailable}}
}

// System marks err as an internal failure. A nil err stays nil.
func System(err error) error {
	if err == nil || classSystem.marked(err) {
		return err
	}
	return system{classified{err, classSystem}}
}

// Unknown marks err as unclassifiable. A nil err stays nil.
func Unknown(err error) error {
	if err == nil || classUnknown.marked(err) {
		return err
	}
	return unknown{classified{err, classUnknown}}
}

// NotImplemented marks err as "the runtime does not support this". A nil err
// stays nil.
func NotImplemented(err error) error {
	if err == nil || classNotImplemented.marked(err) {
		return err
	}
	return notImplemented{classified{err, classNotImplemented}}
}

// Forbidden marks err as "permission denied". A nil err stays nil.
func Forbidden(err error) error {
	if err == nil || classForbidden.marked(err) {
		return err
	}
	return forbidden{classified{err, classForbidden}}
}

// Cancelled marks err as caused by a cancelled context. A nil err stays nil.
func Cancelled(err error) error {
	if err == nil || classCancelled.marked(err) {
		return err
	}
	return cancelled{classified{err, classCancelled}}
}

// Deadline marks err as caused by an expired deadline. A nil err stays nil.
func Deadline(err error) error {
	if err == nil || classDeadline.marked(err) {
		return err
	}
	return deadline{classified{err, classDeadline}}
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
	case classAlreadyExists.matches(err), classConflict.matches(err), classFailedPrecondition.matches(err):
		return Conflict(err)
	case classInvalid.matches(err):
		return InvalidParameter(err)
	case classUnavailable.matches(err):
		return Unavailable(err)
	case classNotImplemented.matches(err):
		return NotImplemented(err)
	case classForbidden.matches(err):
		return Forbidden(err)
	case classCancelled.matches(err):
		return Cancelled(err)
	case classDeadline.matches(err):
		return Deadline(err)
	case classSystem.matches(err):
		return System(err)
	}
	// In-flight calls fail this way when containerd's socket closes: a lost
	// connection, never a result (CONTAINERD-NOTES, "transport is closing").
	if strings.Contains(err.Error(), "transport is closing") {
		return Unavailable(err)
	}
	// The runc shim refuses to delete a live process only in text, with
	// code Unknown: a conflict with the process's state, which a caller
	// resolves by stopping it first.
	if strings.Contains(err.Error(), "cannot delete a running process") {
		return Conflict(err)
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
	return &rpcError{converted: nativeError(err), original: err}
}

type rpcError struct{ converted, original error }

func (e *rpcError) Error() string   { return e.converted.Error() }
func (e *rpcError) Unwrap() []error { return []error{e.converted, e.original} }

// notFoundMessages are the substrings moby maps to NotFound, because the
// runtime reports some missing objects only in text.
var notFoundMessages = []string{"container does not exist", "not found", "no such container"}

func isNotFound(err error) bool {
	if classNotFound.matches(err) {
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
func IsNotFound(err error) bool { return err != nil && classNotFound.matches(Classify(err)) }

// IsConflict reports whether err, once classified, is a Conflict.
func IsConflict(err error) bool { return err != nil && classConflict.matches(Classify(err)) }

// IsAlreadyExists reports whether err says the object already exists (a
// narrower question than IsConflict: a failed precondition is no duplicate).
func IsAlreadyExists(err error) bool { return err != nil && classAlreadyExists.matches(FromGRPC(err)) }

// Precondition is a Conflict saying the object is in the wrong state for the
// request. It matches every errdefs's failed-precondition sentinel, as the
// containerd client's own error would, whichever errdefs the graph has.
func Precondition(msg string) error {
	return Conflict(classMember{msg, classFailedPrecondition})
}

// classMember is an error of our own making that belongs to class.
type classMember struct {
	msg   string
	class *class
}

func (e classMember) Error() string        { return e.msg }
func (e classMember) Is(target error) bool { return e.class.is(target) }

// OutcomeUnknown reports whether err leaves open whether containerd carried
// out the call: the connection broke (Unavailable) or the caller's context
// ended while the call was in flight. The request may have reached
// containerd and taken effect, with only the answer lost.
func OutcomeUnknown(err error) bool {
	if err == nil {
		return false
	}
	err = Classify(err)
	return classUnavailable.matches(err) || classCancelled.matches(err) || classDeadline.matches(err)
}
