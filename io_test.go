package libcontainerd

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cgroup1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestFIFONaming(t *testing.T) {
	cases := []struct {
		stdin, terminal          bool
		wantIn, wantOut, wantErr string
	}{
		{false, false, "", "/b/p-stdout", "/b/p-stderr"},
		{true, false, "/b/p-stdin", "/b/p-stdout", "/b/p-stderr"},
		{true, true, "/b/p-stdin", "/b/p-stdout", ""}, // a terminal merges stderr
		{false, true, "", "/b/p-stdout", ""},
	}
	for _, tc := range cases {
		f := newFIFOSet("/b", "p", tc.stdin, tc.terminal)
		if f.Stdin != tc.wantIn || f.Stdout != tc.wantOut || f.Stderr != tc.wantErr || f.Terminal != tc.terminal {
			t.Errorf("stdin=%v terminal=%v: got %+v", tc.stdin, tc.terminal, f.Config)
		}
	}
}

type fakePipe struct{ closed atomic.Int32 }

func (p *fakePipe) Write(b []byte) (int, error) { return len(b), nil }
func (p *fakePipe) Close() error                { p.closed.Add(1); return nil }

func TestStdinCloseBeforePublishRunsAtPublish(t *testing.T) {
	pipe := &fakePipe{}
	s := &stdinSync{pipe: pipe}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if pipe.closed.Load() != 1 {
		t.Fatal("writer not closed")
	}
	var calls atomic.Int32
	if err := s.publish(func() error { calls.Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 1 {
		t.Fatalf("CloseIO ran %d times, want 1", calls.Load())
	}
}

func TestStdinCloseAfterPublishRunsAtClose(t *testing.T) {
	s := &stdinSync{pipe: &fakePipe{}}
	var calls atomic.Int32
	_ = s.publish(func() error { calls.Add(1); return errors.New("boom") })
	if calls.Load() != 0 {
		t.Fatal("CloseIO ran before Close")
	}
	if err := s.Close(); err == nil || err.Error() != "boom" {
		t.Fatalf("Close = %v, want the CloseIO error", err)
	}
	if err := s.Close(); err == nil || calls.Load() != 1 {
		t.Fatalf("second Close: err %v, %d calls", err, calls.Load())
	}
}

func TestStdinCloseDroppedWhenCreateFailed(t *testing.T) {
	s := &stdinSync{pipe: &fakePipe{}}
	_ = s.Close()
	s.drop()
	var calls atomic.Int32
	// Nothing publishes after a drop; even if it did, no close is pending.
	_ = s.publish(func() error { calls.Add(1); return nil })
	if calls.Load() != 0 {
		t.Fatal("dropped close ran")
	}
}

// Close and publish racing from different goroutines: CloseIO runs exactly
// once either way.
func TestStdinCloseRacesPublish(t *testing.T) {
	for i := 0; i < 200; i++ {
		s := &stdinSync{pipe: &fakePipe{}}
		var calls atomic.Int32
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { defer wg.Done(); _ = s.Close() }()
		go func() { defer wg.Done(); _ = s.Close() }()
		go func() { defer wg.Done(); _ = s.publish(func() error { calls.Add(1); return nil }) }()
		wg.Wait()
		if calls.Load() != 1 {
			t.Fatalf("iteration %d: CloseIO ran %d times", i, calls.Load())
		}
	}
}

var _ io.WriteCloser = (*stdinSync)(nil)

func TestHostID(t *testing.T) {
	cases := []struct {
		name string
		maps []specs.LinuxIDMapping
		want uint32
	}{
		{"none", nil, 0},
		{"root mapped", []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}, 100000},
		{"second range", []specs.LinuxIDMapping{{ContainerID: 1, HostID: 5, Size: 10}, {ContainerID: 0, HostID: 7, Size: 1}}, 7},
		{"empty range never matches", []specs.LinuxIDMapping{{ContainerID: 0, HostID: 9, Size: 0}}, 0},
		{"overflow", []specs.LinuxIDMapping{{ContainerID: 0, HostID: ^uint32(0), Size: ^uint32(0)}}, ^uint32(0)},
	}
	for _, tc := range cases {
		if got := hostID(0, tc.maps); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if u, g := specUser(nil); u != 0 || g != 0 {
		t.Error("nil spec")
	}
	if u, g := specUser(&specs.Spec{}); u != 0 || g != 0 {
		t.Error("nil Linux")
	}
	userns := &specs.Spec{Linux: &specs.Linux{
		Namespaces:  []specs.LinuxNamespace{{Type: specs.UserNamespace}},
		UIDMappings: []specs.LinuxIDMapping{{HostID: 1000, Size: 1}},
		GIDMappings: []specs.LinuxIDMapping{{HostID: 2000, Size: 1}},
	}}
	if u, g := specUser(userns); u != 1000 || g != 2000 {
		t.Errorf("userns: %d %d", u, g)
	}
}

func TestWithin(t *testing.T) {
	for path, want := range map[string]bool{
		"/state/c":       true,
		"/state/c/d":     true,
		"/state":         false,
		"/state/../etc":  false,
		"/other":         false,
		"/statex/c":      false,
		"/state/./c/../": false,
	} {
		if got := within("/state", path); got != want {
			t.Errorf("within(/state, %q) = %v", path, got)
		}
	}
}

// Both cgroup generations decode; this host runs only one of them.
func TestDecodeMetrics(t *testing.T) {
	read := time.Unix(1700000000, 0).UTC()
	for _, m := range []interface{}{&cgroup1stats.Metrics{Pids: &cgroup1stats.PidsStat{Current: 3}}, &cgroup2stats.Metrics{Pids: &cgroup2stats.PidsStat{Current: 3}}} {
		a, err := typeurl.MarshalAny(m)
		if err != nil {
			t.Fatal(err)
		}
		st, err := decodeMetrics("c", &apitypes.Metric{ID: "c", Timestamp: timestamppb.New(read), Data: protoAny(a)})
		if err != nil {
			t.Fatal(err)
		}
		switch got := st.Metrics.(type) {
		case *cgroup1stats.Metrics:
			if _, ok := m.(*cgroup1stats.Metrics); !ok || got.Pids.Current != 3 {
				t.Errorf("v1 decoded as %#v", got)
			}
		case *cgroup2stats.Metrics:
			if _, ok := m.(*cgroup2stats.Metrics); !ok || got.Pids.Current != 3 {
				t.Errorf("v2 decoded as %#v", got)
			}
		default:
			t.Errorf("decoded %T", st.Metrics)
		}
		if !st.Read.Equal(read) {
			t.Errorf("read %v", st.Read)
		}
	}
	if _, err := decodeMetrics("c", &apitypes.Metric{Data: &anypb.Any{TypeUrl: "nope", Value: []byte{1}}}); err == nil {
		t.Error("undecodable metrics accepted")
	}
	if _, err := decodeMetrics("c", nil); err == nil {
		t.Error("nil metric accepted")
	}
}
