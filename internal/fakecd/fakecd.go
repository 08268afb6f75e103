// Package fakecd is a programmable, in-process fake of containerd's gRPC API
// for fast unit tests: a real containerd client talks to it over a unix
// socket, so connection loss and reconnects behave as they do against a real
// daemon, while the test decides what every process does and when.
//
// It serves the tasks, events, containers, leases, namespaces, version and
// health services. The task table is namespace-aware; a process is either the
// init of a container (its ID is the container ID) or an exec.
//
// Where it knowingly differs from containerd: a task needs no container
// record; the namespaces service knows every namespace; Checkpoint is
// unimplemented and Metrics answers nothing; Kill with any non-zero signal
// stops a process (128+signal), with All also its task's execs, while an
// init's exit alone leaves its execs running; a vanished process's pending
// Wait answers NotFound; an exec's delete publishes TaskDelete unless
// WithRuncShimEvents (the runc shim publishes none); a task's Delete answers
// at once unless SetDeleteLag.
//
// Method names used by SetHook and Calls are the short names for the tasks
// and events services ("Get", "Delete", "Subscribe", "Publish"), and
// "Service.Method" for the others ("Containers.Get", "Leases.Create",
// "Namespaces.Get", "Version.Version", "Health.Check").
//
// Knobs for what a real daemon does to a client, each modelled on containerd
// and its runc shim rather than on what is convenient:
//
//   - Outages and lost events: Stop, Kill and Restart (containerd down, as
//     on a clean shutdown or a SIGKILL, and back),
//     BreakStreams (a stream lost in transit), HoldEvents, ReleaseEvents and
//     DiscardEvents (events in containerd's pipeline), PauseSubscriptions,
//     ResumeSubscriptions and StreamGap (the gap between a client's stream
//     breaking and its new subscription, in which containerd publishes to
//     nobody).
//   - Pids and clocks: SetNextPid (the pid the next create or exec start
//     hands out: pid reuse, or a task pointed at a real process), ExitAt (an
//     exit stamped with a given time: the shim's wall clock stepped).
//   - Answer timing: SetDeleteLag (a task leaves Get and List, and its
//     TaskDelete is published, before its Delete answer comes), SetHook.
//   - Events as the runc shim publishes them: WithRuncShimEvents (no
//     TaskDelete for an exec's delete).
//   - Another client: CreateTask, StartProcess, ExecProcess and
//     DeleteProcess do what that client's RPC would, without an RPC; with
//     Exit, ExitAt, AddTask, AddExec and Vanish they make lifecycles a client
//     only hears of on the stream.
//   - Looking at containerd's state without an RPC: Process, Gone, Calls,
//     Subscribers.
package fakecd

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd"
	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	leasesapi "github.com/containerd/containerd/api/services/leases/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// DefaultNamespace is the namespace of the clients Client returns.
const DefaultNamespace = "test"

// Version is what the version service answers.
const Version = "v1.7.0-fake"

// firstPid is the first pid Create and exec Start hand out.
const firstPid = 1000

// Hook overrides one RPC. It runs before the default behaviour with the
// request; when handled is false the default behaviour follows, otherwise
// resp and err are the answer. A handled answer with a nil err must carry a
// response of the method's own type. Hooks run without the server's lock
// held, so they may call any Server method (even Stop); they should honour
// ctx, which ends when the client gives up or the server stops.
//
// For "Subscribe" resp is ignored: a handled call ends the stream with err.
type Hook func(ctx context.Context, req proto.Message) (resp proto.Message, handled bool, err error)

// Option configures a Server at Start.
type Option func(*Server)

// WithTaskPadding adds bytes bytes (in the Stdout path) to every process List
// answers, so a test can push a List past the client's receive limit with
// fewer tasks (16 MiB at about 26k tasks with 640 bytes each).
func WithTaskPadding(bytes int) Option {
	return func(s *Server) { s.padding = strings.Repeat("p", bytes) }
}

// Server is a fake containerd. Its zero value is not usable: call Start.
type Server struct {
	path    string
	health  *health.Server
	padding string

	// life serialises Stop and Restart.
	life sync.Mutex

	mu   sync.Mutex
	cond *sync.Cond // signalled when a subscription handler ends (Stop waits)
	gs   *grpc.Server
	// serveDone is closed when the current Serve returns.
	serveDone chan struct{}
	lis       *net.UnixListener // the current Serve's
	nextPid   uint32
	tasks     map[string]map[string]*task // namespace → container ID
	ctrs      map[string]map[string]*containersapi.Container
	leases    map[string]map[string]*leasesapi.Lease
	leaseRes  map[string][]*leasesapi.Resource // ns + "/" + lease ID
	nsLabels  map[string]map[string]string
	hooks     map[string]Hook
	calls     map[string]int
	subs      map[*subscriber]struct{}
	// active counts subscription handlers still running, broken or not.
	active int
	held   bool
	heldQ  []*eventsapi.Envelope
	// runcEvents: publish as containerd's runc shim (WithRuncShimEvents).
	runcEvents bool
	// deleteLag delays a task Delete's answer (SetDeleteLag).
	deleteLag time.Duration
	// subscribeGate, while non-nil, holds new subscriptions back
	// (PauseSubscriptions); closed to let them register.
	subscribeGate chan struct{}
}

// Start listens on a unix socket in a temporary directory and serves until
// t's cleanup, which stops it.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	dir := t.TempDir()
	// A unix socket path must fit in sun_path (108 bytes); long test names
	// make TempDir's too long.
	if len(dir) > 80 {
		d, err := os.MkdirTemp("", "fakecd")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	s := &Server{
		path:     filepath.Join(dir, "containerd.sock"),
		health:   health.NewServer(),
		nextPid:  firstPid,
		tasks:    map[string]map[string]*task{},
		ctrs:     map[string]map[string]*containersapi.Container{},
		leases:   map[string]map[string]*leasesapi.Lease{},
		leaseRes: map[string][]*leasesapi.Resource{},
		nsLabels: map[string]map[string]string{},
		hooks:    map[string]Hook{},
		calls:    map[string]int{},
		subs:     map[*subscriber]struct{}{},
	}
	s.cond = sync.NewCond(&s.mu)
	for _, o := range opts {
		o(s)
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	if err := s.serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Address is the socket path, as containerd.New takes it.
func (s *Server) Address() string { return s.path }

// Client returns a containerd client connected to s, with DefaultNamespace as
// its namespace and opts after that (so they may override it); t's cleanup
// closes it (before s stops, cleanups being LIFO).
func (s *Server) Client(t testing.TB, opts ...containerd.ClientOpt) *containerd.Client {
	t.Helper()
	all := append([]containerd.ClientOpt{
		containerd.WithDefaultNamespace(DefaultNamespace),
		containerd.WithTimeout(10 * time.Second),
	}, opts...)
	c, err := containerd.New(s.path, all...)
	if err != nil {
		t.Fatalf("fakecd: connect: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serve starts a gRPC server on the socket path.
func (s *Server) serve() error {
	// A socket file left behind would make Listen fail with EADDRINUSE.
	if err := os.Remove(s.path); err != nil && !os.IsNotExist(err) {
		return err
	}
	lis, err := net.Listen("unix", s.path)
	if err != nil {
		return fmt.Errorf("fakecd: listen: %w", err)
	}
	gs := grpc.NewServer(
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor))
	tasksapi.RegisterTasksServer(gs, &taskService{s: s})
	eventsapi.RegisterEventsServer(gs, &eventService{s: s})
	containersapi.RegisterContainersServer(gs, &containerService{s: s})
	leasesapi.RegisterLeasesServer(gs, &leaseService{s: s})
	namespacesapi.RegisterNamespacesServer(gs, &namespaceService{s: s})
	versionapi.RegisterVersionServer(gs, &versionService{})
	healthpb.RegisterHealthServer(gs, s.health)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	s.mu.Lock()
	s.gs, s.serveDone, s.lis = gs, done, lis.(*net.UnixListener)
	s.mu.Unlock()
	return nil
}

// Stop closes the listener and every connection, as a containerd that went
// down: open RPCs fail on the client side and Subscribe streams end. It
// returns once every subscription handler has ended. Stopping a stopped
// server does nothing. The socket file goes with the listener, as on a
// clean shutdown: containerd's dialer retries a missing socket until its
// connect timeout, so calls made meanwhile may wait for Restart (see Kill).
func (s *Server) Stop() { s.stop(true) }

// Kill is Stop as a SIGKILLed containerd goes down: its socket file stays
// behind, so a connection is refused at once (ECONNREFUSED) and a call made
// while it is down fails at once with Unavailable, as on a real daemon
// killed mid-flight.
func (s *Server) Kill() { s.stop(false) }

func (s *Server) stop(unlink bool) {
	s.life.Lock()
	defer s.life.Unlock()
	s.mu.Lock()
	gs, done, lis := s.gs, s.serveDone, s.lis
	s.gs, s.serveDone, s.lis = nil, nil, nil
	s.mu.Unlock()
	if gs == nil {
		return
	}
	lis.SetUnlinkOnClose(unlink)
	gs.Stop()
	<-done
	s.mu.Lock()
	for s.active > 0 {
		s.cond.Wait()
	}
	s.mu.Unlock()
}

// Restart serves again on the same socket path with the same task table,
// hooks, counters and held events. It panics if the socket cannot be bound;
// restarting a running server does nothing.
func (s *Server) Restart() {
	s.life.Lock()
	defer s.life.Unlock()
	s.mu.Lock()
	running := s.gs != nil
	s.mu.Unlock()
	if running {
		return
	}
	if err := s.serve(); err != nil {
		panic(err)
	}
}

// SetServing makes the health service answer SERVING (true) or NOT_SERVING.
func (s *Server) SetServing(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", st)
}

// SetHook installs h for method (see the package doc for names); a nil h
// removes the hook.
func (s *Server) SetHook(method string, h Hook) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h == nil {
		delete(s.hooks, method)
		return
	}
	s.hooks[method] = h
}

// Calls is how many times method has been called (hooked or not, answered
// or failed) since Start, across restarts.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// methodKey turns a full gRPC method name into the name hooks and counters
// use.
func methodKey(full string) string {
	svc, method := full, ""
	if i := strings.LastIndex(full, "/"); i >= 0 {
		svc, method = full[:i], full[i+1:]
	}
	if i := strings.LastIndex(svc, "."); i >= 0 {
		svc = svc[i+1:]
	}
	if svc == "Tasks" || svc == "Events" {
		return method
	}
	return svc + "." + method
}

// enter counts a call and returns its hook, if any.
func (s *Server) enter(key string) Hook {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[key]++
	return s.hooks[key]
}

func (s *Server) unaryInterceptor(ctx context.Context, req interface{}, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (interface{}, error) {
	if h := s.enter(methodKey(info.FullMethod)); h != nil {
		if m, ok := req.(proto.Message); ok {
			if resp, handled, err := h(ctx, m); handled {
				if err != nil {
					return nil, err
				}
				return resp, nil
			}
		}
	}
	return handler(ctx, req)
}

// streamInterceptor only counts: a stream's request is read by its handler,
// so Subscribe runs its hook itself.
func (s *Server) streamInterceptor(srv interface{}, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	s.mu.Lock()
	s.calls[methodKey(info.FullMethod)]++
	s.mu.Unlock()
	return handler(srv, ss)
}

// hook returns the hook for key without counting the call again.
func (s *Server) hook(key string) Hook {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hooks[key]
}

// versionService answers Version.
type versionService struct {
	versionapi.UnimplementedVersionServer
}

func (*versionService) Version(context.Context, *emptypb.Empty) (*versionapi.VersionResponse, error) {
	return &versionapi.VersionResponse{Version: Version, Revision: "fakecd"}, nil
}
