package libcontainerd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/protobuf"
	"github.com/containerd/log"
	"github.com/containerd/typeurl/v2"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/lcdkit/libcontainerd/internal/ledger"
	"github.com/lcdkit/libcontainerd/internal/testutil"
	"github.com/lcdkit/libcontainerd/types"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func envelope(t testing.TB, v interface{}) *events.Envelope {
	t.Helper()
	a, err := typeurl.MarshalAny(v)
	if err != nil {
		t.Fatal(err)
	}
	return &events.Envelope{Namespace: "ns", Topic: "/tasks/x", Event: protoAny(a)}
}

func TestTranslate(t *testing.T) {
	exitedAt := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	cases := []struct {
		name string
		in   interface{}
		et   types.EventType
		ei   types.EventInfo
	}{
		{"create", &apievents.TaskCreate{ContainerID: "c", Pid: 7}, types.EventCreate, types.EventInfo{ContainerID: "c", ProcessID: "c", Pid: 7}},
		{"start", &apievents.TaskStart{ContainerID: "c", Pid: 7}, types.EventStart, types.EventInfo{ContainerID: "c", ProcessID: "c", Pid: 7}},
		{"exit init", &apievents.TaskExit{ContainerID: "c", ID: "c", Pid: 7, ExitStatus: 3, ExitedAt: timestamppb.New(exitedAt)}, types.EventExit,
			types.EventInfo{ContainerID: "c", ProcessID: "c", Pid: 7, ExitCode: 3, ExitedAt: exitedAt}},
		{"exit exec", &apievents.TaskExit{ContainerID: "c", ID: "e", Pid: 8, ExitStatus: 1}, types.EventExit,
			types.EventInfo{ContainerID: "c", ProcessID: "e", Pid: 8, ExitCode: 1}},
		{"oom", &apievents.TaskOOM{ContainerID: "c"}, types.EventOOM, types.EventInfo{ContainerID: "c"}},
		{"exec added", &apievents.TaskExecAdded{ContainerID: "c", ExecID: "e"}, types.EventExecAdded, types.EventInfo{ContainerID: "c", ProcessID: "e"}},
		{"exec started", &apievents.TaskExecStarted{ContainerID: "c", ExecID: "e", Pid: 9}, types.EventExecStarted, types.EventInfo{ContainerID: "c", ProcessID: "e", Pid: 9}},
		{"paused", &apievents.TaskPaused{ContainerID: "c"}, types.EventPaused, types.EventInfo{ContainerID: "c"}},
		{"resumed", &apievents.TaskResumed{ContainerID: "c"}, types.EventResumed, types.EventInfo{ContainerID: "c"}},
		{"delete", &apievents.TaskDelete{ContainerID: "c"}, "", types.EventInfo{}},
		{"other", &apievents.ContainerCreate{ID: "c"}, "", types.EventInfo{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			et, ei, _, err := translate(envelope(t, tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if et != tc.et || ei != tc.ei {
				t.Fatalf("got %q %+v, want %q %+v", et, ei, tc.et, tc.ei)
			}
		})
	}
}

// A nil protobuf timestamp is "unknown": the zero time, not 1970.
func TestTranslateNilTimestampIsZeroTime(t *testing.T) {
	_, ei, _, err := translate(envelope(t, &apievents.TaskExit{ContainerID: "c", ID: "c"}))
	if err != nil || !ei.ExitedAt.IsZero() {
		t.Fatalf("ExitedAt = %v, %v", ei.ExitedAt, err)
	}
}

func TestTranslateMalformed(t *testing.T) {
	for name, ev := range map[string]*events.Envelope{
		"nil envelope": nil,
		"nil event":    {Topic: "/tasks/exit"},
		"unknown type": {Topic: "/tasks/exit", Event: &anypb.Any{TypeUrl: "nope/Nope", Value: []byte{1}}},
		"bad bytes":    {Topic: "/tasks/exit", Event: &anypb.Any{TypeUrl: "containerd.events.TaskExit", Value: []byte{0xff, 0xff}}},
	} {
		if _, _, _, err := translate(ev); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func FuzzTranslate(f *testing.F) {
	for _, v := range []interface{}{&apievents.TaskExit{ContainerID: "c", ID: "c", Pid: 1}, &apievents.TaskOOM{ContainerID: "c"}} {
		a, _ := typeurl.MarshalAny(v)
		f.Add(a.GetTypeUrl(), a.GetValue())
	}
	f.Fuzz(func(t *testing.T, typeURL string, value []byte) {
		_, _, _, _ = translate(&events.Envelope{Event: &anypb.Any{TypeUrl: typeURL, Value: value}})
	})
}

// recordingBackend sends every event it gets on a channel.
type recordingBackend chan types.EventInfo

func (b recordingBackend) ProcessEvent(_ string, et types.EventType, ei types.EventInfo) error {
	if et == types.EventExit {
		b <- ei
	}
	return nil
}

// containerd 2.x's shim can exit before its TaskExit reaches containerd:
// the TaskDelete event then carries the only record of the exit. It is
// delivered from there once, with the status the event gives, and a TaskExit
// that does come later is a duplicate.
func TestTaskDeleteDeliversMissingExit(t *testing.T) {
	b := make(recordingBackend, 4)
	c := testClient(b)
	at := time.Unix(1700000000, 0).UTC()
	want := types.EventInfo{ContainerID: "c", ProcessID: "c", Pid: 30, ExitCode: 137, ExitedAt: at}
	// This client's task (Status found it running), and its start.
	c.exits.do(func(l *ledger.Ledger) { l.Adopt(ledger.InitKey("c"), 30, ledger.Ref{}) })
	c.handleEnvelope(envelope(t, &apievents.TaskStart{ContainerID: "c", Pid: 30}))
	c.handleEnvelope(envelope(t, &apievents.TaskDelete{ContainerID: "c", Pid: 30, ExitStatus: 137, ExitedAt: protobuf.ToTimestamp(at)}))
	if got := drainExits(t, c, b); len(got) != 1 || got[0] != want {
		t.Fatalf("exits after TaskDelete: %+v, want exactly %+v", got, want)
	}
	c.handleEnvelope(envelope(t, &apievents.TaskExit{ContainerID: "c", ID: "c", Pid: 30, ExitStatus: 137, ExitedAt: protobuf.ToTimestamp(at)}))
	// Not seen running by this client (another client's task): nothing.
	c.handleEnvelope(envelope(t, &apievents.TaskDelete{ContainerID: "other", Pid: 31, ExitStatus: 1}))
	if got := drainExits(t, c, b); len(got) != 0 {
		t.Fatalf("exits delivered again: %+v", got)
	}
}

// drainExits waits for c's queue and returns the exits b got so far.
func drainExits(t *testing.T, c *Client, b recordingBackend) []types.EventInfo {
	t.Helper()
	ctx, cancel := contextWithTimeout(5 * time.Second)
	defer cancel()
	if err := c.queue.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	var got []types.EventInfo
	for {
		select {
		case ei := <-b:
			got = append(got, ei)
		default:
			return got
		}
	}
}

// blockingBackend blocks container "slow" until released, panics for
// "panic", errors for "err", and records everything else.
type blockingBackend struct {
	release chan struct{}
	gotC    chan string
}

func (b *blockingBackend) ProcessEvent(id string, et types.EventType, ei types.EventInfo) error {
	switch id {
	case "slow":
		<-b.release
	case "panic":
		panic("backend panic")
	case "err":
		return errors.New("backend error")
	}
	b.gotC <- id + ":" + string(et)
	return nil
}

func testClient(b types.Backend) *Client {
	c := &Client{backend: b, inHandlers: map[uint64]int{}, logger: log.L.WithField("test", true), shimSocketDir: defaultShimSocketDir}
	c.exits = newExitState(c)
	return c
}

// A backend that blocks, panics or errors holds up only its own container.
func TestDeliveryIsolation(t *testing.T) {
	b := &blockingBackend{release: make(chan struct{}), gotC: make(chan string, 16)}
	c := testClient(b)
	c.queueEvent(types.EventStart, types.EventInfo{ContainerID: "slow"})
	c.queueEvent(types.EventStart, types.EventInfo{ContainerID: "panic"})
	c.queueEvent(types.EventStart, types.EventInfo{ContainerID: "err"})
	c.queueEvent(types.EventStart, types.EventInfo{ContainerID: "panic"})
	c.queueEvent(types.EventStart, types.EventInfo{ContainerID: "ok"})
	exitedAt := protobuf.ToTimestamp(time.Unix(1700000000, 0))
	c.exits.do(func(l *ledger.Ledger) { l.Adopt(ledger.InitKey("ok"), 1, ledger.Ref{}) })
	c.handleEnvelope(envelope(t, &apievents.TaskExit{ContainerID: "ok", ID: "ok", Pid: 1, ExitedAt: exitedAt}))
	c.handleEnvelope(envelope(t, &apievents.TaskExit{ContainerID: "ok", ID: "ok", Pid: 1, ExitedAt: exitedAt}))
	for _, want := range []string{"ok:start", "ok:exit"} {
		select {
		case got := <-b.gotC:
			if got != want {
				t.Fatalf("got %s, want %s", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s not delivered while another container blocks", want)
		}
	}
	close(b.release)
	select {
	case got := <-b.gotC:
		if got != "slow:start" {
			t.Fatalf("got %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("blocked container's event lost")
	}
	ctx, cancel := contextWithTimeout(5 * time.Second)
	defer cancel()
	if err := c.queue.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-b.gotC:
		t.Fatalf("duplicate exit delivered: %s", got)
	default:
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

type countingBackend struct{ n atomic.Int64 }

func (b *countingBackend) ProcessEvent(string, types.EventType, types.EventInfo) error {
	b.n.Add(1)
	return nil
}

// BenchmarkDeliveryLoad: events for 1000 containers, round-robin, through
// translation-free emit → per-container queue → backend.
func BenchmarkDeliveryLoad(b *testing.B) {
	be := &countingBackend{}
	c := testClient(be)
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%d", i)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		c.queueEvent(types.EventStart, types.EventInfo{ContainerID: ids[i%len(ids)]})
	}
	ctx, cancel := contextWithTimeout(time.Minute)
	defer cancel()
	if err := c.queue.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// A handler that runs past the bound gets a warning naming its container,
// while it is still running.
func TestSlowHandlerWarning(t *testing.T) {
	old := slowHandler
	slowHandler = 20 * time.Millisecond
	defer func() { slowHandler = old }()

	var buf testutil.SyncBuffer
	oldOut := log.L.Logger.Out
	log.L.Logger.SetOutput(&buf)
	defer log.L.Logger.SetOutput(oldOut)
	b := &blockingBackend{release: make(chan struct{}), gotC: make(chan string, 4)}
	c := testClient(b)
	c.queueEvent(types.EventStart, types.EventInfo{ContainerID: "slow"})
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "still running") {
		if time.Now().After(deadline) {
			t.Fatalf("no slow-handler warning; log: %q", buf.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(buf.String(), "container=slow") {
		t.Errorf("warning does not name the container: %q", buf.String())
	}
	close(b.release)
	<-b.gotC
	ctx, cancel := contextWithTimeout(5 * time.Second)
	defer cancel()
	if err := c.queue.Wait(ctx); err != nil {
		t.Fatal(err)
	}
}
