package integration

import (
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"

	libcontainerd "github.com/lcdkit/libcontainerd"
	"github.com/lcdkit/libcontainerd/types"
)

// oomBackend signals every OOM event it gets.
type oomBackend struct{ got chan struct{} }

func (b oomBackend) ProcessEvent(string, types.EventType, types.EventInfo) error {
	b.got <- struct{}{}
	return nil
}

// BenchmarkEventLatency: containerd publish → Backend.ProcessEvent through
// the library, paired with a raw Subscribe reader in the same run.
func BenchmarkEventLatency(b *testing.B) {
	publish := func(f *fixture) {
		if err := f.raw.EventService().Publish(f.ctx, "/tasks/oom", &apievents.TaskOOM{ContainerID: "lat"}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("lib", func(b *testing.B) {
		f := newFixture(b)
		be := oomBackend{got: make(chan struct{}, 1)}
		c, err := libcontainerd.NewClient(f.ctx, f.raw, f.stateDir, f.ns, be)
		if err != nil {
			b.Fatal(err)
		}
		defer c.(*libcontainerd.Client).Close()
		publish(f) // the stream is live once the first event arrives
		<-be.got
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			publish(f)
			select {
			case <-be.got:
			case <-time.After(waitTimeout):
				b.Fatal("event not delivered")
			}
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/event")
	})
	b.Run("raw", func(b *testing.B) {
		f := newFixture(b)
		ch, errC := f.raw.EventService().Subscribe(f.ctx, "namespace=="+f.ns+",topic~=|^/tasks/|")
		recv := func() {
			select {
			case ev := <-ch:
				if _, err := typeurl.UnmarshalAny(ev.Event); err != nil {
					b.Fatal(err)
				}
			case err := <-errC:
				b.Fatal(err)
			case <-time.After(waitTimeout):
				b.Fatal("event not received")
			}
		}
		publish(f)
		recv()
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i++ {
			publish(f)
			recv()
		}
		b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/event")
	})
}
