package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd"
	tasks "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/cio"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// countedRPCs is the number of RPCs made since before, without the
// long-lived Waits (waiting for an exit is not part of the operation).
func (f *fixture) countedRPCs(before map[string]int) int {
	n := 0
	for method, calls := range f.rpcs.snapshot() {
		if strings.HasSuffix(method, "/Wait") {
			continue
		}
		n += calls - before[method]
	}
	return n
}

func (f *fixture) report(b *testing.B, start time.Time, before map[string]int) {
	b.ReportMetric(float64(time.Since(start).Microseconds())/1000/float64(b.N), "ms/op")
	b.ReportMetric(float64(f.countedRPCs(before))/float64(b.N), "rpcs/op")
}

// BenchmarkLifecycle: NewContainer → NewTask → Start → exit → task Delete →
// container Delete, through the library and written directly against the
// containerd client, in the same run.
func BenchmarkLifecycle(b *testing.B) {
	b.Run("lib", func(b *testing.B) {
		f := newFixture(b)
		before, start := f.rpcs.snapshot(), time.Now()
		for i := 0; i < b.N; i++ {
			id := fmt.Sprintf("lib%d", i)
			ctr := f.newContainer(id, "true")
			task, err := ctr.NewTask(f.ctx, "", false, newStdio().attach)
			if err != nil {
				b.Fatal(err)
			}
			if err := task.Start(f.ctx); err != nil {
				b.Fatal(err)
			}
			f.waitExit(id, "")
			if _, err := task.Delete(f.ctx); err != nil {
				b.Fatal(err)
			}
			if err := ctr.Delete(f.ctx); err != nil {
				b.Fatal(err)
			}
		}
		f.report(b, start, before)
	})
	b.Run("raw", func(b *testing.B) {
		f := newFixture(b)
		before, start := f.rpcs.snapshot(), time.Now()
		for i := 0; i < b.N; i++ {
			id := fmt.Sprintf("raw%d", i)
			ctr, err := f.raw.NewContainer(f.ctx, id,
				containerd.WithSpec(f.spec(id, "true")),
				containerd.WithRuntime("io.containerd.runc.v2", env.RuncOptions()))
			if err != nil {
				b.Fatal(err)
			}
			task, err := ctr.NewTask(f.ctx, cio.NewCreator(cio.WithFIFODir(b.TempDir())))
			if err != nil {
				b.Fatal(err)
			}
			exitC, err := task.Wait(f.ctx)
			if err != nil {
				b.Fatal(err)
			}
			if err := task.Start(f.ctx); err != nil {
				b.Fatal(err)
			}
			<-exitC
			if _, err := task.Delete(f.ctx); err != nil {
				b.Fatal(err)
			}
			if err := ctr.Delete(f.ctx); err != nil {
				b.Fatal(err)
			}
		}
		f.report(b, start, before)
	})
}

// BenchmarkExec: Exec (create + start) → exit → Delete in a running task,
// through the library and directly against the containerd client.
func BenchmarkExec(b *testing.B) {
	spec := func() *specs.Process { return execSpec("true") }
	b.Run("lib", func(b *testing.B) {
		f := newFixture(b)
		_, task := f.startSleeper("c")
		before, start := f.rpcs.snapshot(), time.Now()
		for i := 0; i < b.N; i++ {
			id := fmt.Sprintf("e%d", i)
			p, err := task.Exec(f.ctx, id, spec(), false, newStdio().attach)
			if err != nil {
				b.Fatal(err)
			}
			f.waitExit("c", id)
			if _, err := p.Delete(f.ctx); err != nil {
				b.Fatal(err)
			}
		}
		f.report(b, start, before)
	})
	b.Run("raw", func(b *testing.B) {
		f := newFixture(b)
		_, libTask := f.startSleeper("c")
		ctr, err := f.raw.LoadContainer(f.ctx, "c")
		if err != nil {
			b.Fatal(err)
		}
		task, err := ctr.Task(f.ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		_ = libTask
		fifoDir := b.TempDir()
		before, start := f.rpcs.snapshot(), time.Now()
		for i := 0; i < b.N; i++ {
			id := fmt.Sprintf("e%d", i)
			p, err := task.Exec(f.ctx, id, spec(), cio.NewCreator(cio.WithFIFODir(fifoDir)))
			if err != nil {
				b.Fatal(err)
			}
			if err := p.Start(f.ctx); err != nil {
				b.Fatal(err)
			}
			if _, err := f.raw.TaskService().Wait(f.ctx, &tasks.WaitRequest{ContainerID: "c", ExecID: id}); err != nil {
				b.Fatal(err)
			}
			if _, err := p.Delete(f.ctx); err != nil {
				b.Fatal(err)
			}
		}
		f.report(b, start, before)
	})
}
