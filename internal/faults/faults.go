// Package faults injects failures into the containerd RPCs of one operation,
// for tests: a gRPC client interceptor (unary and stream) that, armed with
// (k, kind), makes the k-th RPC of an operation fail as a containerd restart
// or a caller's cancel would make it fail.
//
// An operation is whatever runs on the context Begin returns: every RPC made
// on it, or on a context derived from it (context.WithoutCancel included),
// is counted, in order. RPCs on other contexts (the event stream, clean-up on
// context.Background) are not: they are not the operation's, and counting
// them would make the numbering depend on timing. A test first runs the
// operation unarmed (k = 0) to learn its RPCs, then once per (k, kind), so an
// RPC added to an operation later is covered without touching the test.
//
// The kinds:
//   - Before: the call never reaches containerd; it returns Unavailable
//     "transport is closing", what a call gets when the socket closes.
//   - After: the call reaches containerd and takes effect; its reply is
//     dropped and Unavailable returned instead (the ambiguous case). For a
//     stream, containerd receives the first request and answers it; that
//     answer is dropped and the stream breaks.
//   - Cancel: the caller's context (the one Begin returned) is cancelled
//     while the call is in flight. The call has reached containerd, which
//     completes it; the caller gets the context's error (gRPC's Canceled).
//     A call on a context the cancel does not reach (WithoutCancel) simply
//     completes, as it would.
package faults

import (
	"context"
	"fmt"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Kind is how the armed RPC fails.
type Kind string

const (
	// Before: the call never reaches containerd.
	Before Kind = "before"
	// After: the call takes effect, its answer is lost.
	After Kind = "after"
	// Cancel: the caller's context is cancelled while the call is in
	// flight.
	Cancel Kind = "cancel"
)

// Kinds lists every kind, in the order tests enumerate them.
var Kinds = []Kind{Before, After, Cancel}

// ErrTransportClosing is the error Before and After return: what gRPC gives
// a call whose connection closed.
var ErrTransportClosing = status.Error(codes.Unavailable, "transport is closing")

// Op is one operation's record: the RPCs it made and, if armed, which one
// failed.
type Op struct {
	k      int
	kind   Kind
	cancel context.CancelFunc

	mu    sync.Mutex
	calls []string
	fired string // method the fault hit, "" until it does
}

type opKey struct{}

// Begin returns a context for one operation; k = 0 only counts its RPCs,
// k >= 1 makes the k-th fail as kind says. Call the returned Op's Done when
// the operation (and anything the test checks through that context) is over.
func Begin(parent context.Context, k int, kind Kind) (context.Context, *Op) {
	ctx, cancel := context.WithCancel(parent)
	op := &Op{k: k, kind: kind, cancel: cancel}
	return context.WithValue(ctx, opKey{}, op), op
}

// Detach returns ctx with its RPCs no longer counted as the operation's: for
// a test's own calls made inside an interceptor (a fake answering an RPC).
func Detach(ctx context.Context) context.Context {
	return context.WithValue(ctx, opKey{}, (*Op)(nil))
}

// Done releases the operation's context.
func (o *Op) Done() { o.cancel() }

// Calls returns the methods of the RPCs the operation made, in order.
func (o *Op) Calls() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.calls...)
}

// Fired returns the method the fault hit, or "" if the operation made fewer
// than k RPCs.
func (o *Op) Fired() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.fired
}

// String names the fault, for test logs.
func (o *Op) String() string {
	if o.k == 0 {
		return "unarmed"
	}
	return fmt.Sprintf("k=%d %s", o.k, o.kind)
}

// next counts an RPC and reports whether it is the armed one.
func (o *Op) next(method string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, method)
	if o.k != 0 && len(o.calls) == o.k {
		o.fired = method
		return true
	}
	return false
}

func opOf(ctx context.Context) *Op {
	op, _ := ctx.Value(opKey{}).(*Op)
	return op
}

// DialOptions installs the interceptors; put them first, so they see each
// call as the code under test made it.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(UnaryInterceptor),
		grpc.WithChainStreamInterceptor(StreamInterceptor),
	}
}

// UnaryInterceptor counts and fails unary RPCs.
func UnaryInterceptor(ctx context.Context, method string, req, reply interface{}, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	op := opOf(ctx)
	if op == nil || !op.next(method) {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	switch op.kind {
	case Before:
		return ErrTransportClosing
	case After:
		_ = invoker(ctx, method, req, reply, cc, opts...)
		return ErrTransportClosing
	default: // Cancel
		op.cancel()
		if ctx.Err() == nil {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		// containerd has the request: it completes whatever the caller's
		// cancel does; only the answer is lost.
		_ = invoker(context.WithoutCancel(ctx), method, req, reply, cc, opts...)
		return status.FromContextError(ctx.Err()).Err()
	}
}

// StreamInterceptor counts and fails streaming RPCs (content reads and
// writes).
func StreamInterceptor(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	op := opOf(ctx)
	if op == nil || !op.next(method) {
		return streamer(ctx, desc, cc, method, opts...)
	}
	if op.kind == Before {
		return nil, ErrTransportClosing
	}
	// The caller's cancel comes only once containerd has answered the
	// first request (in RecvMsg), so the stream can stay on its context.
	streamCtx, stop := context.WithCancel(ctx)
	s, err := streamer(streamCtx, desc, cc, method, opts...)
	if err != nil {
		stop()
		return nil, err
	}
	return &brokenStream{ClientStream: s, op: op, callerCtx: ctx, stop: stop}, nil
}

// brokenStream passes the stream through until its first reply, which it
// drops: from then on the stream is broken.
type brokenStream struct {
	grpc.ClientStream
	op        *Op
	callerCtx context.Context
	stop      context.CancelFunc

	mu     sync.Mutex
	broken error
}

func (s *brokenStream) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.broken
}

func (s *brokenStream) SendMsg(m interface{}) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.ClientStream.SendMsg(m)
}

func (s *brokenStream) RecvMsg(m interface{}) error {
	if err := s.err(); err != nil {
		return err
	}
	if err := s.ClientStream.RecvMsg(m); err != nil && err != io.EOF {
		s.stop()
		return err
	}
	// containerd has answered: drop the answer and break the stream.
	var broken error
	if s.op.kind == Cancel {
		s.op.cancel()
		broken = status.FromContextError(s.callerCtx.Err()).Err()
	} else {
		broken = ErrTransportClosing
	}
	s.mu.Lock()
	s.broken = broken
	s.mu.Unlock()
	s.stop()
	return broken
}
