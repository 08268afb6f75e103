package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/containerd/containerd/namespaces"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/types"
)

// eventLog is lcd's Backend: it prints each event (when out is set) and
// keeps the exits so commands can wait for them.
type eventLog struct {
	mu     sync.Mutex
	out    io.Writer
	prefix string
	exits  map[[2]string][]types.EventInfo
	seen   map[types.EventType]int
	notify chan struct{}
}

func newEventLog(out io.Writer, prefix string) *eventLog {
	return &eventLog{out: out, prefix: prefix, exits: map[[2]string][]types.EventInfo{}, seen: map[types.EventType]int{}, notify: make(chan struct{})}
}

// ProcessEvent implements types.Backend.
func (l *eventLog) ProcessEvent(containerID string, et types.EventType, ei types.EventInfo) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.out != nil {
		fmt.Fprintf(l.out, "%s%s\n", l.prefix, formatEvent(et, ei))
	}
	l.seen[et]++
	if et == types.EventExit {
		k := [2]string{ei.ContainerID, ei.ProcessID}
		l.exits[k] = append(l.exits[k], ei)
	}
	close(l.notify) // wake every waiter
	l.notify = make(chan struct{})
	return nil
}

func formatEvent(et types.EventType, ei types.EventInfo) string {
	s := fmt.Sprintf("event %-12s %s", et, ei.ContainerID)
	if ei.ProcessID != "" && ei.ProcessID != ei.ContainerID {
		s += "/" + ei.ProcessID
	}
	if ei.Pid != 0 {
		s += fmt.Sprintf(" pid=%d", ei.Pid)
	}
	if et == types.EventExit {
		s += fmt.Sprintf(" code=%d", ei.ExitCode)
	}
	return s
}

// waitExit waits (bounded) for the first exit of a process.
func (l *eventLog) waitExit(ctx context.Context, containerID, processID string, timeout time.Duration) (types.EventInfo, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		l.mu.Lock()
		got := l.exits[[2]string{containerID, processID}]
		notify := l.notify
		l.mu.Unlock()
		if len(got) > 0 {
			return got[0], nil
		}
		select {
		case <-notify:
		case <-deadline.C:
			return types.EventInfo{}, fmt.Errorf("no exit event for %s/%s after %s", containerID, processID, timeout)
		case <-ctx.Done():
			return types.EventInfo{}, ctx.Err()
		}
	}
}

func (l *eventLog) exitCount(containerID, processID string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.exits[[2]string{containerID, processID}])
}

func (l *eventLog) count(et types.EventType) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seen[et]
}

func eventsCmd(args []string) error {
	fs := newFlagSet("events", "[--address SOCK] [--namespace NS]",
		"Prints containerd's task events, translated as a daemon's Backend receives them, until interrupted.")
	address := fs.String("address", "/run/containerd/containerd.sock", "containerd socket")
	ns := fs.String("namespace", "lcd", "containerd namespace to watch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("not running as root")
	}
	return withHost(*address, func(ctx context.Context, h *host) error {
		nsCtx := namespaces.WithNamespace(ctx, *ns)
		if ok, err := h.cli.IsServing(nsCtx); !ok || err != nil {
			return fmt.Errorf("containerd at %s is not serving: %v", *address, err)
		}
		l := newEventLog(os.Stdout, "")
		client, err := libcontainerd.NewClient(ctx, h.cli, h.bundles(), *ns, l)
		if err != nil {
			return err
		}
		defer client.(*libcontainerd.Client).Close()
		fmt.Fprintf(os.Stderr, "watching namespace %q on %s (Ctrl-C to stop)\n", *ns, *address)
		<-ctx.Done()
		return nil
	})
}
