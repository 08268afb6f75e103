package faults

import (
	"context"
	"errors"
	"net"
	"reflect"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// server is a health service that records what reached it.
type server struct {
	healthpb.UnimplementedHealthServer
	mu       sync.Mutex
	received []string
}

func (s *server) record(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.received = append(s.received, what)
}

func (s *server) got() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.received...)
}

func (s *server) Check(_ context.Context, r *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	s.record("check " + r.Service)
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (s *server) Watch(r *healthpb.HealthCheckRequest, w healthpb.Health_WatchServer) error {
	s.record("watch " + r.Service)
	for i := 0; i < 2; i++ {
		if err := w.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
			return err
		}
	}
	return nil
}

func setup(t *testing.T) (healthpb.HealthClient, *server) {
	lis := bufconn.Listen(1 << 16)
	srv := &server{}
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, srv)
	go func() { _ = gs.Serve(lis) }()
	conn, err := grpc.Dial("bufnet", append(DialOptions(),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
	})
	return healthpb.NewHealthClient(conn), srv
}

func ctxTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// An unarmed operation counts its RPCs, and only its own.
func TestCountsOnlyTheOperation(t *testing.T) {
	c, srv := setup(t)
	ctx, op := Begin(ctxTimeout(t), 0, "")
	defer op.Done()
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "a"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Check(context.WithoutCancel(ctx), &healthpb.HealthCheckRequest{Service: "derived"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Check(Detach(ctx), &healthpb.HealthCheckRequest{Service: "detached"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Check(ctxTimeout(t), &healthpb.HealthCheckRequest{Service: "other"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Check"}
	if got := op.Calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
	if op.Fired() != "" {
		t.Errorf("unarmed op fired at %s", op.Fired())
	}
	if got := srv.got(); len(got) != 4 {
		t.Errorf("server got %v", got)
	}
}

// armedSecond runs two unary calls with the second armed and returns its error.
func armedSecond(t *testing.T, kind Kind) (context.Context, *server, error) {
	c, srv := setup(t)
	ctx, op := Begin(ctxTimeout(t), 2, kind)
	t.Cleanup(op.Done)
	if _, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "1"}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: "2"})
	if op.Fired() != "/grpc.health.v1.Health/Check" {
		t.Errorf("fired %q", op.Fired())
	}
	return ctx, srv, err
}

func TestBeforeNeverReachesTheServer(t *testing.T) {
	ctx, srv, err := armedSecond(t, Before)
	if status.Code(err) != codes.Unavailable || err.Error() != ErrTransportClosing.Error() {
		t.Errorf("err %v, want %v", err, ErrTransportClosing)
	}
	if got := srv.got(); !reflect.DeepEqual(got, []string{"check 1"}) {
		t.Errorf("server got %v", got)
	}
	if ctx.Err() != nil {
		t.Error("before cancelled the caller's context")
	}
}

func TestAfterReachesTheServerAndLosesTheAnswer(t *testing.T) {
	ctx, srv, err := armedSecond(t, After)
	if status.Code(err) != codes.Unavailable {
		t.Errorf("err %v, want Unavailable", err)
	}
	if got := srv.got(); !reflect.DeepEqual(got, []string{"check 1", "check 2"}) {
		t.Errorf("server got %v", got)
	}
	if ctx.Err() != nil {
		t.Error("after cancelled the caller's context")
	}
}

func TestCancelCancelsTheCallerInFlight(t *testing.T) {
	ctx, srv, err := armedSecond(t, Cancel)
	if status.Code(err) != codes.Canceled {
		t.Errorf("err %v, want Canceled", err)
	}
	if got := srv.got(); !reflect.DeepEqual(got, []string{"check 1", "check 2"}) {
		t.Errorf("server got %v", got)
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("caller's context: %v, want cancelled", ctx.Err())
	}
}

// A call the caller's cancel does not reach completes, as it would.
func TestCancelSparesAnUncancellableCall(t *testing.T) {
	c, srv := setup(t)
	ctx, op := Begin(ctxTimeout(t), 1, Cancel)
	defer op.Done()
	if _, err := c.Check(context.WithoutCancel(ctx), &healthpb.HealthCheckRequest{Service: "cleanup"}); err != nil {
		t.Errorf("err %v, want the call to complete", err)
	}
	if ctx.Err() == nil {
		t.Error("caller's context not cancelled")
	}
	if got := srv.got(); !reflect.DeepEqual(got, []string{"check cleanup"}) {
		t.Errorf("server got %v", got)
	}
}

func TestStreamKinds(t *testing.T) {
	for _, tc := range []struct {
		kind    Kind
		code    codes.Code
		reached bool
	}{
		{Before, codes.Unavailable, false},
		{After, codes.Unavailable, true},
		{Cancel, codes.Canceled, true},
	} {
		t.Run(string(tc.kind), func(t *testing.T) {
			c, srv := setup(t)
			ctx, op := Begin(ctxTimeout(t), 1, tc.kind)
			defer op.Done()
			w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{Service: "s"})
			if err == nil {
				_, err = w.Recv()
				// Broken for good: the second answer is lost too.
				if _, err2 := w.Recv(); status.Code(err2) != tc.code {
					t.Errorf("second Recv: %v, want %s", err2, tc.code)
				}
			}
			if status.Code(err) != tc.code {
				t.Errorf("err %v, want %s", err, tc.code)
			}
			deadline := time.Now().Add(5 * time.Second)
			for tc.reached && len(srv.got()) == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := len(srv.got()) == 1; got != tc.reached {
				t.Errorf("server got %v, want reached=%v", srv.got(), tc.reached)
			}
			if (tc.kind == Cancel) != (ctx.Err() != nil) {
				t.Errorf("caller's context: %v", ctx.Err())
			}
			if op.Fired() != "/grpc.health.v1.Health/Watch" {
				t.Errorf("fired %q", op.Fired())
			}
		})
	}
}
