package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// leakCycles is how many lifecycles TestLifecycleLeaks runs: LCD_LEAK_CYCLES
// overrides it (`make soak` runs 500).
func leakCycles() int {
	if n, err := strconv.Atoi(os.Getenv("LCD_LEAK_CYCLES")); err == nil && n > 0 {
		return n
	}
	return 30
}

func openFDs() int {
	entries, _ := os.ReadDir("/proc/self/fd")
	return len(entries)
}

func countFIFOsAndDirs(dir string) (fifos, dirs int) {
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || path == dir {
			return nil
		}
		if d.IsDir() {
			dirs++
		} else if d.Type()&os.ModeNamedPipe != 0 {
			fifos++
		}
		return nil
	})
	return fifos, dirs
}

// TestLifecycleLeaks runs create/start/exec/exit/delete many times: the
// goroutines, fds, FIFOs and bundle dirs must come back to the baseline.
func TestLifecycleLeaks(t *testing.T) {
	f := newFixture(t)
	cycle := func(i int) {
		id := fmt.Sprintf("leak%d", i)
		ctr := f.newContainer(id, "sleep", "100")
		io := newStdio()
		task, err := ctr.NewTask(f.ctx, "", true, io.attach)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.Start(f.ctx); err != nil {
			t.Fatal(err)
		}
		eio := newStdio()
		p, err := task.Exec(f.ctx, "e", execSpec("cat"), true, eio.attach)
		if err != nil {
			t.Fatal(err)
		}
		eio.stdin.Close()
		f.waitExit(id, "e")
		if _, err := p.Delete(f.ctx); err != nil {
			t.Fatal(err)
		}
		if err := task.ForceDelete(f.ctx); err != nil {
			t.Fatal(err)
		}
		if err := ctr.Delete(f.ctx); err != nil {
			t.Fatal(err)
		}
	}
	cycle(-1) // warm up: gRPC streams and pools settle
	baseG, baseFD := runtime.NumGoroutine(), openFDs()
	for i := 0; i < leakCycles(); i++ {
		cycle(i)
	}
	fifos, dirs := countFIFOsAndDirs(f.stateDir)
	if fifos != 0 || dirs != 0 {
		t.Errorf("%d FIFOs and %d dirs left in the state dir", fifos, dirs)
	}
	// Goroutines of closed IO end asynchronously: allow them a moment.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > baseG+2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > baseG+2 {
		buf := make([]byte, 1<<20)
		t.Errorf("goroutines %d -> %d\n%s", baseG, g, buf[:runtime.Stack(buf, true)])
	}
	if fd := openFDs(); fd > baseFD+2 {
		t.Errorf("open fds %d -> %d", baseFD, fd)
	}
}
