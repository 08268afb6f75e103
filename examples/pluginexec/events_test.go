package pluginexec

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/lcdkit/libcontainerd/types"
)

// The ordering cases of ProcessEvent, which the integration tests cannot
// force: an exit that arrives while Create is still deciding, one of
// another incarnation, one of an exec, one reported twice. The handles are
// stubs that count the clean-up calls; everything else would panic.
type stubTask struct {
	types.Task
	pid     uint32
	deletes int
}

func (s *stubTask) Pid() uint32                       { return s.pid }
func (s *stubTask) ForceDelete(context.Context) error { s.deletes++; return nil }

type stubContainer struct {
	types.Container
	deletes int
}

func (s *stubContainer) Delete(context.Context) error { s.deletes++; return nil }

type countingHandler struct {
	mu  sync.Mutex
	ids []string
}

func (h *countingHandler) HandleExitEvent(id string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids = append(h.ids, id)
	return nil
}

func (h *countingHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ids)
}

func newTestExecutor(h ExitHandler) *Executor {
	return &Executor{exitHandler: h, plugins: map[string]*plugin{}}
}

func exit(id string, pid uint32) types.EventInfo {
	return types.EventInfo{ContainerID: id, ProcessID: id, Pid: pid}
}

func TestExitReportedOnceAndCleansUp(t *testing.T) {
	h := &countingHandler{}
	e := newTestExecutor(h)
	tsk, ctr := &stubTask{pid: 10}, &stubContainer{}
	p := newPlugin("p", ctr, tsk, nil)
	e.register(p)
	p.settle(true)

	_ = e.ProcessEvent("p", types.EventExit, types.EventInfo{ContainerID: "p", ProcessID: "exec1", Pid: 11})
	_ = e.ProcessEvent("p", types.EventOOM, types.EventInfo{ContainerID: "p"})
	_ = e.ProcessEvent("p", types.EventExit, exit("p", 99))
	if h.count() != 0 {
		t.Fatalf("an exec exit, an OOM or another pid's exit was reported: %v", h.ids)
	}
	_ = e.ProcessEvent("p", types.EventExit, exit("p", 10))
	_ = e.ProcessEvent("p", types.EventExit, exit("p", 10))
	if h.count() != 1 {
		t.Fatalf("exit reported %d times, want once", h.count())
	}
	if tsk.deletes != 1 || ctr.deletes != 1 {
		t.Fatalf("task deleted %d times, container %d; want once each", tsk.deletes, ctr.deletes)
	}
	if e.lookup("p") != nil {
		t.Fatal("plugin still registered after its exit")
	}
}

// An exit that arrives while Create is between NewTask and the end of
// Start waits for the outcome: reported if the start succeeded, dropped if
// it failed (Create has cleaned up and returned the error).
func TestExitDuringCreateWaitsForOutcome(t *testing.T) {
	for _, started := range []bool{true, false} {
		h := &countingHandler{}
		e := newTestExecutor(h)
		p := newPlugin("p", &stubContainer{}, &stubTask{pid: 10}, nil)
		e.register(p)
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = e.ProcessEvent("p", types.EventExit, exit("p", 10))
		}()
		select {
		case <-done:
			t.Fatal("exit handled before Create decided")
		case <-time.After(50 * time.Millisecond): // proving a wait: nothing to await
		}
		if !started {
			e.forget(p)
		}
		p.settle(started)
		<-done
		want := 0
		if started {
			want = 1
		}
		if h.count() != want {
			t.Errorf("start ok=%v: exit reported %d times, want %d", started, h.count(), want)
		}
	}
}

func TestExitOfUnknownPluginIgnored(t *testing.T) {
	h := &countingHandler{}
	if err := newTestExecutor(h).ProcessEvent("x", types.EventExit, exit("x", 1)); err != nil {
		t.Fatal(err)
	}
	if h.count() != 0 {
		t.Fatal("exit of an unknown plugin reported")
	}
}
