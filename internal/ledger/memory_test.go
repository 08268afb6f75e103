package ledger

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// foreignLifecycle feeds the ledger what the stream and the reconciler say
// of one container run by another client, as containerd's runc shim
// publishes it (no TaskDelete for an exec's delete): create, start, an exec
// that runs and exits, the init's exit, the task's delete. gone says
// whether containerd still has the processes when the ledger asks (the
// other client deletes at once: it does not).
func foreignLifecycle(l *Ledger, id string, pid uint32, gone bool) {
	init, exec := InitKey(id), Key{Container: id, Process: "e"}
	at := time.Unix(1_700_000_000, int64(pid))
	answer := func(gone bool) {
		for _, ck := range l.TakeChecks() {
			r := Report{Status: Gone}
			if !gone {
				switch ck.Key {
				case init:
					r = Report{Status: Stopped, Pid: pid, Code: 0, At: at}
				case exec:
					r = Report{Status: Stopped, Pid: pid + 1, Code: 1, At: at}
				}
			}
			l.CheckAnswer(ck.Token, r)
		}
		if seq := l.NeedBarrier(); seq != 0 {
			l.Echo(seq)
		}
		l.Ready()
	}
	l.StreamStart(init, pid)
	l.StreamExecAdded(exec)
	l.StreamStart(exec, pid+1)
	l.StreamExit(exec, pid+1, 1, at)
	l.StreamExit(init, pid, 0, at)
	answer(gone)
	l.StreamDelete(init, pid, 0, at)
	answer(true) // deleted: containerd has none of them any more
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// Memory is the processes alive or awaiting delivery or delete: after any
// number of another client's lifecycles, deleted, nothing is left.
func TestMemoryReturnsToZero(t *testing.T) {
	n := 200_000
	if testing.Short() || raceEnabled {
		n = 20_000
	}
	l := New()
	l.StreamLive()
	l.Echo(l.NextBarrier())
	for i := 0; i < n; i++ {
		foreignLifecycle(l, fmt.Sprintf("c%d", i%5000), uint32(300+2*(i%16000)), i%2 == 0)
		if got := l.Size(); got != 0 {
			t.Fatalf("after lifecycle %d the ledger holds %d entries", i, got)
		}
	}
	if len(l.ctrs) != 0 || len(l.waiting) != 0 || len(l.lingering) != 0 || len(l.confirms) != 0 || len(l.wanted) != 0 {
		t.Fatalf("left: %d containers, %d waiting, %d lingering, %d confirms, %d wanted",
			len(l.ctrs), len(l.waiting), len(l.lingering), len(l.confirms), len(l.wanted))
	}
}

// BenchmarkForeignLifecycles runs b.N lifecycles (1M with -benchtime=1000000x)
// of containers another client creates and deletes, runc-like, and reports
// the ledger's heap growth: it returns to its baseline.
func BenchmarkForeignLifecycles(b *testing.B) {
	l := New()
	l.StreamLive()
	l.Echo(l.NextBarrier())
	base := heapInUse()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		foreignLifecycle(l, fmt.Sprintf("c%d", i), uint32(300+2*(i%16000)), i%2 == 0)
	}
	b.StopTimer()
	grown := float64(int64(heapInUse())-int64(base)) / (1 << 20)
	b.ReportMetric(grown, "heap-MB")
	b.ReportMetric(float64(l.Size()), "entries")
	if l.Size() != 0 {
		b.Fatalf("the ledger holds %d entries after %d lifecycles", l.Size(), b.N)
	}
}
