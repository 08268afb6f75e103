package libcontainerd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// runtimeInit tells a created container's process (the runtime's init,
// "runc init", waiting to be started) from one that runs the container's
// program.
func TestRuntimeInit(t *testing.T) {
	dir := t.TempDir()
	// A stand-in with runc init's command line: cat blocks opening a FIFO
	// named "init", run as "runc".
	if err := syscall.Mkfifo(filepath.Join(dir, "init"), 0o600); err != nil {
		t.Fatal(err)
	}
	cat, err := exec.LookPath("cat")
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{Path: cat, Args: []string{"runc", "init"}, Dir: dir}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	// The child's command line is its own once its exec is done.
	want := "runc\x00init\x00"
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
		if string(b) == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the stand-in's command line is %q, want %q", b, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !runtimeInit(uint32(cmd.Process.Pid)) {
		t.Errorf("a process running as \"runc init\" is not taken for the runtime's init")
	}
	if runtimeInit(uint32(os.Getpid())) {
		t.Errorf("this test's own process is taken for a runtime's init")
	}
	if !runtimeInit(1 << 30) {
		t.Errorf("a process that is not there can be told apart: want it left as containerd says")
	}
}
