package libcontainerd

import (
	"errors"
	"fmt"

	"github.com/lcdkit/libcontainerd/internal/errclass"
)

// wrapError classifies an error from the containerd client at the library's
// boundary (see internal/errclass for the mapping). nil stays nil.
func wrapError(err error) error { return errclass.Classify(err) }

// wrapErrorf classifies err with msg prefixed, the way moby words it. The
// gRPC status is converted first, so the message reads as the containerd
// client's would.
func wrapErrorf(err error, msg string) error {
	if err == nil {
		return nil
	}
	return errclass.Classify(fmt.Errorf("%s: %w", msg, errclass.FromGRPC(err)))
}

// messageError replaces an error's text while keeping it as the cause, so a
// caller matching containerd's class (errors.Is(err, ErrAlreadyExists)) still
// can after the message says what moby says.
type messageError struct {
	msg   string
	cause error
}

func (e *messageError) Error() string { return e.msg }
func (e *messageError) Unwrap() error { return e.cause }

// errIDInUse is moby's Conflict "id already in use" for a duplicate
// container or exec ID; cause is containerd's AlreadyExists error.
func errIDInUse(cause error) error {
	if cause == nil {
		cause = errors.New("id already in use")
	}
	return errclass.Conflict(&messageError{msg: "id already in use", cause: cause})
}

// errNoSuchContainer is moby's NotFound "no such container".
func errNoSuchContainer(cause error) error {
	return errclass.NotFound(&messageError{msg: "no such container", cause: cause})
}

// invalidParameter builds an InvalidParameter error with msg.
func invalidParameter(msg string) error { return errclass.InvalidParameter(errors.New(msg)) }
