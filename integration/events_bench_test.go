package integration

import (
	"fmt"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/types"
)

// oomBackend passes on the container ID of every OOM event it gets.
type oomBackend struct{ got chan string }

func (b oomBackend) ProcessEvent(id string, _ types.EventType, _ types.EventInfo) error {
	b.got <- id
	return nil
}

// awaitID publishes an OOM event for id and waits (bounded) until recv
// reports it, skipping anything older. With retry, it publishes again every
// 100 ms: a new subscription misses what was published before it was live.
func awaitID(b *testing.B, f *fixture, id string, retry bool, recv func() (string, bool)) {
	publish := func() {
		if err := f.raw.EventService().Publish(f.ctx, "/tasks/oom", &apievents.TaskOOM{ContainerID: id}); err != nil {
			b.Fatal(err)
		}
	}
	publish()
	deadline := time.Now().Add(waitTimeout)
	for time.Now().Before(deadline) {
		got, ok := recv()
		if ok && got == id {
			return
		}
		if !ok && retry {
			publish()
		}
	}
	b.Fatalf("event for %s not received", id)
}

// BenchmarkEventLatency: containerd publish → Backend.ProcessEvent through
// the library, paired with a raw Subscribe reader in the same run.
func BenchmarkEventLatency(b *testing.B) {
	measure := func(b *testing.B, f *fixture, recv func() (string, bool)) {
		awaitID(b, f, "warm-up", true, recv)
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			awaitID(b, f, fmt.Sprint("e", i), false, recv)
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/event")
	}
	rawRecv := func(b *testing.B, f *fixture) func() (string, bool) {
		ch, errC := f.raw.EventService().Subscribe(f.ctx, "namespace=="+f.ns+",topic~=|^/tasks/|")
		return func() (string, bool) {
			select {
			case ev := <-ch:
				v, err := typeurl.UnmarshalAny(ev.Event)
				if err != nil {
					b.Fatal(err)
				}
				if oom, ok := v.(*apievents.TaskOOM); ok {
					return oom.ContainerID, true
				}
				return "", true
			case err := <-errC:
				b.Fatal(err)
			case <-time.After(100 * time.Millisecond):
			}
			return "", false
		}
	}
	// Whichever side runs first would otherwise also pay for a daemon that
	// has only just started (measured: 15-20% on the first of two
	// identical raw readers): both run on a warm one.
	b.Run("warm-up", func(b *testing.B) {
		f := newFixture(b)
		recv := rawRecv(b, f)
		awaitID(b, f, "warm-up", true, recv)
		for i := 0; i < 500; i++ {
			awaitID(b, f, fmt.Sprint("w", i), false, recv)
		}
		b.SkipNow()
	})
	b.Run("lib", func(b *testing.B) {
		f := newFixture(b)
		be := oomBackend{got: make(chan string, 1024)}
		c, err := libcontainerd.NewClient(f.ctx, f.raw, f.stateDir, f.ns, be)
		if err != nil {
			b.Fatal(err)
		}
		defer c.(*libcontainerd.Client).Close()
		measure(b, f, func() (string, bool) {
			select {
			case id := <-be.got:
				return id, true
			case <-time.After(100 * time.Millisecond):
				return "", false
			}
		})
	})
	b.Run("raw", func(b *testing.B) {
		f := newFixture(b)
		measure(b, f, rawRecv(b, f))
	})
}
