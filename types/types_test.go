package types_test

import (
	"reflect"
	"sort"
	"testing"
	"time"

	cgroup1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.uber.org/goleak"

	"github.com/lcdkit/libcontainerd/types"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Daemons mock these interfaces by embedding them, so a method added here
// becomes a nil-pointer panic in their tests: the method sets are pinned.
func TestInterfaceMethodSetsArePinned(t *testing.T) {
	process := []string{"Delete", "Kill", "Pid", "Resize"}
	cases := []struct {
		iface interface{}
		want  []string
	}{
		{(*types.Backend)(nil), []string{"ProcessEvent"}},
		{(*types.Process)(nil), process},
		{(*types.Client)(nil), []string{"LoadContainer", "NewContainer", "Version"}},
		{(*types.Container)(nil), []string{"AttachTask", "Delete", "NewTask", "Task"}},
		{(*types.Task)(nil), append([]string{
			"CreateCheckpoint", "Exec", "ForceDelete", "Pause", "Pids", "Resume",
			"Start", "Stats", "Status", "Summary", "UpdateResources",
		}, process...)},
	}
	for _, tc := range cases {
		typ := reflect.TypeOf(tc.iface).Elem()
		t.Run(typ.Name(), func(t *testing.T) {
			var got []string
			for i := 0; i < typ.NumMethod(); i++ {
				got = append(got, typ.Method(i).Name)
			}
			want := append([]string(nil), tc.want...)
			sort.Strings(want)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("method set of %s changed:\n got  %v\n want %v", typ.Name(), got, want)
			}
		})
	}
}

func TestEventTypeValues(t *testing.T) {
	want := map[types.EventType]string{
		types.EventUnknown: "unknown", types.EventExit: "exit", types.EventOOM: "oom",
		types.EventCreate: "create", types.EventStart: "start",
		types.EventExecAdded: "exec-added", types.EventExecStarted: "exec-started",
		types.EventPaused: "paused", types.EventResumed: "resumed",
	}
	for et, s := range want {
		if string(et) != s {
			t.Errorf("%q != %q", et, s)
		}
	}
}

// Resources must stay an alias: moby passes *specs.LinuxResources straight in.
var _ *types.Resources = (*specs.LinuxResources)(nil)

// Both cgroup generations' metrics flow through InterfaceToStats unchanged.
var (
	_ = types.InterfaceToStats(time.Time{}, (*cgroup1stats.Metrics)(nil))
	_ = types.InterfaceToStats(time.Time{}, (*cgroup2stats.Metrics)(nil))
)

func TestInterfaceToStats(t *testing.T) {
	read := time.Unix(1700000000, 5)
	for _, m := range []interface{}{&cgroup1stats.Metrics{}, &cgroup2stats.Metrics{}} {
		s := types.InterfaceToStats(read, m)
		if s.Metrics != m || !s.Read.Equal(read) {
			t.Fatalf("InterfaceToStats(%T) = %+v", m, s)
		}
	}
}
