package legacy

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/containerd/containerd"
	cerrdefs "github.com/containerd/errdefs"
	"go.uber.org/goleak"

	"github.com/lcdkit/libcontainerd/types"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNewClientRejectsNilContainerdClient(t *testing.T) {
	_, err := NewClient(context.Background(), nil, t.TempDir(), "ns", nil)
	if !errors.Is(err, cerrdefs.ErrInvalidArgument) {
		t.Fatalf("NewClient(nil client) = %v, want InvalidParameter", err)
	}
}

type recordingBackend struct{ events []EventInfo }

func (b *recordingBackend) ProcessEvent(_ string, _ EventType, ei EventInfo) error {
	b.events = append(b.events, ei)
	return nil
}

// newTestClient is a client without a root client: enough for the relay
// paths that make no RPC.
func newTestClient(b Backend) *client {
	c := &client{backend: b, containers: map[string]*entry{}, oom: map[string]bool{}, ready: make(chan struct{})}
	close(c.ready)
	return c
}

// OOMKilled is false before a container's first OOM and true on every event
// from it on; other containers are not affected.
func TestRelayOOMSticky(t *testing.T) {
	b := &recordingBackend{}
	r := relay{newTestClient(b)}
	send := func(id string, et EventType) {
		if err := r.ProcessEvent(id, et, types.EventInfo{ContainerID: id, ProcessID: id}); err != nil {
			t.Fatal(err)
		}
	}
	send("a", EventStart)
	send("a", EventOOM)
	send("a", EventExit)
	send("b", EventStart)
	send("a", EventCreate)
	want := []bool{false, true, true, false, true}
	for i, ei := range b.events {
		if ei.OOMKilled != want[i] {
			t.Errorf("event %d (%s): OOMKilled %v, want %v", i, ei.ContainerID, ei.OOMKilled, want[i])
		}
	}
}

type panickingBackend struct{}

func (panickingBackend) ProcessEvent(string, EventType, EventInfo) error { panic("backend bug") }

// An exec whose exit is handled while Exec is still starting it is marked,
// so that Exec cleans it up; even when the backend panics (the root package
// recovers the panic, and the exec must not be left behind).
func TestRelayMarksExecStillStarting(t *testing.T) {
	for _, b := range []Backend{&recordingBackend{}, panickingBackend{}} {
		c := newTestClient(b)
		x := &execEntry{}
		c.containers["c"] = &entry{execs: map[string]*execEntry{"e": x}}
		func() {
			defer func() { _ = recover() }()
			_ = relay{c}.ProcessEvent("c", EventExit, types.EventInfo{ContainerID: "c", ProcessID: "e", Pid: 7})
		}()
		c.cleanups.Wait()
		if x.exitedPid != 7 {
			t.Errorf("%T: exec still starting not marked exited (pid %d)", b, x.exitedPid)
		}
	}
}

// blockingProcess is an exec whose Delete blocks until released.
type blockingProcess struct {
	types.Process
	release chan struct{}
	deleted chan struct{}
}

func (p *blockingProcess) Pid() uint32 { return 7 }

func (p *blockingProcess) Delete(context.Context) (*containerd.ExitStatus, error) {
	<-p.release
	close(p.deleted)
	return nil, nil
}

// The clean-up after an exec's exit runs off the container's event queue:
// its RPCs (up to 45 s each) do not hold up that container's next events.
func TestRelayExecCleanupOffQueue(t *testing.T) {
	c := newTestClient(&recordingBackend{})
	p := &blockingProcess{release: make(chan struct{}), deleted: make(chan struct{})}
	c.containers["c"] = &entry{execs: map[string]*execEntry{"e": {proc: p}}}
	returned := make(chan struct{})
	go func() {
		_ = relay{c}.ProcessEvent("c", EventExit, types.EventInfo{ContainerID: "c", ProcessID: "e", Pid: 7})
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("the exit's handling waits for the exec's clean-up")
	}
	close(p.release)
	<-p.deleted
	c.cleanups.Wait()
}
