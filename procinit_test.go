package libcontainerd

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
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
