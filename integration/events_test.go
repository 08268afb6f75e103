package integration

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/typeurl/v2"

	"github.com/lcdkit/libcontainerd/types"
)

func eventTypes(evs []event) []types.EventType {
	out := make([]types.EventType, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

// runEventSequence drives one container through every event type.
func runEventSequence(t *testing.T, f *fixture, id string) {
	ctr := f.newContainer(id, "sh", "-c", "read x; exit 7")
	io := newStdio()
	task, err := ctr.NewTask(f.ctx, "", true, io.attach)
	if err != nil {
		t.Error(err)
		return
	}
	if err := task.Start(f.ctx); err != nil {
		t.Error(err)
		return
	}
	p, err := task.Exec(f.ctx, "e", execSpec("sh", "-c", "exit 5"), false, newStdio().attach)
	if err != nil {
		t.Error(err)
		return
	}
	f.backend.waitUntil(t, waitTimeout, id+" exec exit", func() bool { return len(f.backend.exits()[[2]string{id, "e"}]) == 1 })
	if _, err := p.Delete(f.ctx); err != nil {
		t.Error(err)
	}
	if err := task.Pause(f.ctx); err != nil {
		t.Error(err)
	}
	if err := task.Resume(f.ctx); err != nil {
		t.Error(err)
	}
	io.stdin.Close()
	f.backend.waitUntil(t, waitTimeout, id+" init exit", func() bool { return len(f.backend.exits()[[2]string{id, id}]) == 1 })
	if _, err := task.Delete(f.ctx); err != nil {
		t.Error(err)
	}
	if err := ctr.Delete(f.ctx); err != nil {
		t.Error(err)
	}
}

// Every event type reaches the backend with the right fields, in order per
// container, while several containers run at once.
func TestEventsDeliveredInOrder(t *testing.T) {
	f := newFixture(t)
	const n = 6
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(id string) {
			defer wg.Done()
			runEventSequence(t, f, id)
		}(fmt.Sprintf("ev%d", i))
	}
	wg.Wait()
	want := []types.EventType{types.EventCreate, types.EventStart, types.EventExecAdded, types.EventExecStarted,
		types.EventExit, types.EventPaused, types.EventResumed, types.EventExit}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("ev%d", i)
		evs := f.backend.forContainer(id)
		got := eventTypes(evs)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: events %v, want %v", id, got, want)
			continue
		}
		if evs[0].Info.Pid == 0 || evs[0].Info.ProcessID != id || evs[1].Info.Pid != evs[0].Info.Pid {
			t.Errorf("%s: create/start info %+v %+v", id, evs[0].Info, evs[1].Info)
		}
		if evs[2].Info.ProcessID != "e" || evs[3].Info.ProcessID != "e" || evs[3].Info.Pid == 0 {
			t.Errorf("%s: exec info %+v %+v", id, evs[2].Info, evs[3].Info)
		}
		if e := evs[4].Info; e.ProcessID != "e" || e.ExitCode != 5 || e.Pid != evs[3].Info.Pid || e.ExitedAt.IsZero() {
			t.Errorf("%s: exec exit %+v", id, e)
		}
		if e := evs[7].Info; e.ProcessID != id || e.ExitCode != 7 || e.Pid != evs[0].Info.Pid || e.ExitedAt.IsZero() {
			t.Errorf("%s: init exit %+v", id, e)
		}
	}
}

// TestEventOOMDeliveredInContainerdOrder: whatever containerd publishes for an OOM-killed container (its OOM, when it publishes one)
// reaches the backend, and its OOM and exit arrive in the order containerd
// published them. The shim reports the two from separate goroutines (the
// cgroup's OOM notification and the reaper), so that order is containerd's
// to choose; ours is to keep it (a raw subscriber on the same stream is the
// reference).
func TestEventOOMDeliveredInContainerdOrder(t *testing.T) {
	f := newFixture(t)
	subCtx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	raw, rawErrs := f.raw.EventService().Subscribe(subCtx,
		`namespace==`+f.ns+`,topic=="/tasks/oom"`, `namespace==`+f.ns+`,topic=="/tasks/exit"`)

	opts := append(env.SpecOpts("sh", "-c", "x=a; while true; do x=$x$x; done"), oci.WithMemoryLimit(8<<20))
	spec := f.specWith("oom", opts...)
	ctr, err := f.client.NewContainer(f.ctx, "oom", spec, "io.containerd.runc.v2", env.RuncOptions())
	if err != nil {
		t.Fatal(err)
	}
	task, err := ctr.NewTask(f.ctx, "", false, newStdio().attach)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(f.ctx); err != nil {
		t.Fatal(err)
	}

	// Until the exit, and a little after it: the shim's OOM notification
	// and its reaper race, and under load containerd sometimes publishes
	// no OOM at all; what it published is what the backend must get.
	var want []types.EventType
	timeout := time.After(waitTimeout)
	var grace <-chan time.Time
collect:
	for {
		select {
		case ev := <-raw:
			switch ev.Topic {
			case "/tasks/oom":
				want = append(want, types.EventOOM)
			case "/tasks/exit":
				want = append(want, types.EventExit)
				grace = time.After(2 * time.Second)
			}
			if len(want) == 2 {
				break collect
			}
		case err := <-rawErrs:
			t.Fatalf("raw subscription: %v", err)
		case <-grace:
			t.Logf("containerd published %v: no OOM event this time", want)
			break collect
		case <-timeout:
			t.Fatalf("containerd published %v, want an exit", want)
		}
	}
	var got []types.EventType
	f.backend.waitUntil(t, waitTimeout, "the oom and the exit", func() bool {
		got = got[:0]
		for _, et := range eventTypes(f.backend.forContainer("oom")) {
			if et == types.EventOOM || et == types.EventExit {
				got = append(got, et)
			}
		}
		return len(got) >= len(want)
	})
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("backend got %v, containerd published %v", got, want)
	}
	if _, err := task.Delete(f.ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctr.Delete(f.ctx); err != nil {
		t.Fatal(err)
	}
}

// TestExitsWhenInitAndExecsDieTogether: a container's init is killed while
// execs run, so all of them die at once. Shims order those exits differently
// (from containerd 1.7.14 the init's exit is held back until its execs';
// 1.6.20 publishes them as they are reaped); whatever the daemon's order,
// the backend gets every exit exactly once, in the order containerd
// published them.
func TestExitsWhenInitAndExecsDieTogether(t *testing.T) {
	f := newFixture(t)
	subCtx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	raw, rawErrs := f.raw.EventService().Subscribe(subCtx, "namespace=="+f.ns+`,topic=="/tasks/exit"`)
	_, task := f.startSleeper("t")
	execs := []string{"e0", "e1", "e2"}
	for _, id := range execs {
		if _, err := task.Exec(f.ctx, id, execSpec("sleep", "1000"), false, newStdio().attach); err != nil {
			t.Fatal(err)
		}
	}
	if err := task.Kill(f.ctx, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var published []string
	timeout := time.After(waitTimeout)
	for len(published) < 1+len(execs) {
		select {
		case ev := <-raw:
			v, err := typeurl.UnmarshalAny(ev.Event)
			if err != nil {
				t.Fatal(err)
			}
			published = append(published, v.(*apievents.TaskExit).ID)
		case err := <-rawErrs:
			t.Fatalf("raw subscription: %v", err)
		case <-timeout:
			t.Fatalf("containerd published exits %v, want 4", published)
		}
	}
	cancel()
	t.Logf("containerd published the exits in the order %v", published)
	f.backend.waitUntil(t, waitTimeout, "every exit", func() bool {
		n := 0
		for _, e := range f.backend.forContainer("t") {
			if e.Type == types.EventExit {
				n++
			}
		}
		return n == len(published)
	})
	var delivered []string
	for _, e := range f.backend.forContainer("t") {
		if e.Type == types.EventExit {
			delivered = append(delivered, e.Info.ProcessID)
			if e.Info.ExitCode != 137 {
				t.Errorf("%s exited %d, want 137", e.Info.ProcessID, e.Info.ExitCode)
			}
		}
	}
	if fmt.Sprint(delivered) != fmt.Sprint(published) {
		t.Errorf("exits delivered in the order %v, containerd published %v", delivered, published)
	}
	st, err := task.Delete(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.ExitCode() != 137 {
		t.Errorf("Delete: exit %d, want 137", st.ExitCode())
	}
	// Every one exactly once: a duplicate would have to be among these.
	for k, evs := range f.backend.exits() {
		if len(evs) != 1 {
			t.Errorf("%v: %d exits", k, len(evs))
		}
	}
}
