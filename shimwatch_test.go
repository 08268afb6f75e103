package libcontainerd

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	shimapi "github.com/containerd/containerd/api/runtime/task/v3"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/ttrpc"

	"github.com/lcdkit/libcontainerd/internal/ledger"
)

// fakeShim serves the two calls the shim watch makes: State (running, with
// the pid asked about) and Wait (blocks until the call ends). It counts the
// connections made to it.
type fakeShim struct {
	socket string
	conns  atomic.Int32
	states atomic.Int32
	pids   map[string]uint32 // by exec ID ("" for the init)
}

func startFakeShim(t *testing.T, dir, name string, pids map[string]uint32) *fakeShim {
	t.Helper()
	s := &fakeShim{socket: filepath.Join(dir, name), pids: pids}
	l, err := net.Listen("unix", s.socket)
	if err != nil {
		t.Fatal(err)
	}
	server, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	server.RegisterService(shimTaskV3, &ttrpc.ServiceDesc{Methods: map[string]ttrpc.Method{
		"State": func(_ context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			var req shimapi.StateRequest
			if err := unmarshal(&req); err != nil {
				return nil, err
			}
			s.states.Add(1)
			return &shimapi.StateResponse{Pid: s.pids[req.ExecID], Status: tasktypes.Status_RUNNING}, nil
		},
		"Wait": func(ctx context.Context, unmarshal func(interface{}) error) (interface{}, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		},
	}})
	counting := &countingListener{Listener: l, n: &s.conns}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = server.Serve(context.Background(), counting)
	}()
	t.Cleanup(func() {
		_ = server.Close()
		<-done
	})
	return s
}

type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// Item 9: the shim watch is bounded: one connection per shim, no goroutine
// per process, and starting it never waits for the shims.
func TestShimWatchBounded(t *testing.T) {
	const containers, execs = 40, 3
	c := testClient(nil)
	// A root-owned directory only root writes, as containerd's shim socket
	// directory (the test runs as root, as the suite does).
	c.shimSocketDir = t.TempDir()
	var shims []*fakeShim
	for i := 0; i < containers; i++ {
		id := fmt.Sprintf("c%d", i)
		pids := map[string]uint32{"": uint32(1000 + i*10)}
		init := ledger.InitKey(id)
		c.exits.do(func(l *ledger.Ledger) { l.Adopt(init, pids[""], ledger.Ref{}) })
		for j := 0; j < execs; j++ {
			exec := fmt.Sprintf("e%d", j)
			pids[exec] = pids[""] + uint32(j) + 1
			key, pid := ledger.Key{Container: id, Process: exec}, pids[exec]
			c.exits.do(func(l *ledger.Ledger) { l.Adopt(key, pid, ledger.Ref{Key: init, Pid: pids[""]}) })
		}
		shim := startFakeShim(t, c.shimSocketDir, id, pids)
		shims = append(shims, shim)
		c.shims.set(id, shimEndpoint{socket: shim.socket, pid: pids[""]})
	}
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	began := time.Now()
	stop := c.watchShims(ctx)
	if d := time.Since(began); d > time.Second {
		t.Errorf("starting the watch took %s: it must not wait for shims", d)
	}
	// Every shim is asked about every process at least once. Counted per
	// shim: a shim reached early is asked again each poll (and once more
	// for its API), so a total can be reached while another shim still
	// waits for its dial.
	deadline := time.Now().Add(10 * time.Second)
	for {
		unasked := 0
		for _, s := range shims {
			if s.states.Load() < execs+1 {
				unasked++
			}
		}
		if unasked == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d shims not yet asked about each of their %d processes", unasked, containers, execs+1)
		}
		time.Sleep(10 * time.Millisecond) // counting calls: nothing to await
	}
	// Our goroutines: one per shim and its init's wait, plus ttrpc's two
	// per connection; the fake shims' servers add theirs (two per
	// connection, one per call in flight).
	if extra := runtime.NumGoroutine() - before; extra > containers*8 {
		t.Errorf("%d goroutines for %d shims of %d processes each", extra, containers, execs+1)
	}
	for i, s := range shims {
		if n := s.conns.Load(); n != 1 {
			t.Errorf("shim %d: %d connections", i, n)
		}
	}
	stop()
	waited := make(chan struct{})
	go func() { c.watches.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("watch goroutines still running after stop")
	}
}
