package integration

import (
	"fmt"
	"github.com/lcdkit/libcontainerd/internal/testenv"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// freezeDuration is how long TestExitsAcrossContainerdFreeze keeps
// containerd stopped: LCD_FREEZE_S seconds (90 in `make soak`), 12 by
// default, already more than the shim's 5 s publish timeout, so the shim
// re-sends what it could not publish.
func freezeDuration(t *testing.T) time.Duration {
	if s := os.Getenv("LCD_FREEZE_S"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("LCD_FREEZE_S=%q", s)
		}
		return time.Duration(n) * time.Second
	}
	return 12 * time.Second
}

// TestExitsAcrossContainerdFreeze: containerd frozen (SIGSTOP) while
// containers and execs exit, then thawed. The shims' publishes time out
// during the freeze and are sent again; containerd then forwards the first
// attempt and the re-sends alike. Every process still gets exactly one exit
// with its code.
func TestExitsAcrossContainerdFreeze(t *testing.T) {
	testenv.LogGuard(t) // an outage must not make the library log errors
	f := newFixture(t)
	freeze := freezeDuration(t)
	type proc struct {
		container, process string
		code               uint32
	}
	var procs []proc
	handles := newChaosHandles()
	// Exits spread over the freeze, which starts at ~0.5 s.
	for i, s := range []float64{1.0, 2.0, 4.0, 6.0} {
		id := fmt.Sprintf("f%d", i)
		code := uint32(20 + i)
		f.startExiting(handles, id, s, code)
		procs = append(procs, proc{id, id, code})
	}
	hostCtr, host := f.startSleeper("fh")
	handles.keep("fh", hostCtr, host)
	for i, s := range []float64{1.5, 3.0} {
		execID := fmt.Sprintf("x%d", i)
		code := uint32(50 + i)
		f.execExiting(handles, "fh", host, execID, s, code)
		procs = append(procs, proc{"fh", execID, code})
	}

	time.Sleep(500 * time.Millisecond) // the scenario: freeze with everything running
	pid := env.PID()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	defer thaw()
	time.Sleep(freeze) // the scenario: containerd frozen this long
	thaw()
	t.Logf("containerd frozen for %s", freeze)

	f.backend.waitUntil(t, 60*time.Second, "every exit", func() bool {
		exits := f.backend.exits()
		for _, p := range procs {
			if len(exits[[2]string{p.container, p.process}]) == 0 {
				return false
			}
		}
		return true
	})
	// Long enough for the shims' last re-sends to arrive as copies.
	time.Sleep(shimRetryWindow)
	exits := f.backend.exits()
	for _, p := range procs {
		got := exits[[2]string{p.container, p.process}]
		if len(got) != 1 || got[0].ExitCode != p.code {
			t.Errorf("%s/%s: exits %+v, want exactly one with code %d", p.container, p.process, got, p.code)
		}
	}
	if got := exits[[2]string{"fh", "fh"}]; len(got) != 0 {
		t.Errorf("running container got exits %+v", got)
	}
}
