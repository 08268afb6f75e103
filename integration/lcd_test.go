package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildLcd builds the demo CLI once per test.
func buildLcd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "lcd")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/lcd")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build lcd: %v\n%s", err, out)
	}
	return bin
}

// TestLcdTour runs the demo (its own private containerd, through the
// supervisor): every step must pass and nothing may be left behind.
func TestLcdTour(t *testing.T) {
	bin := buildLcd(t)
	state := filepath.Join(t.TempDir(), "s") // short: the socket path must fit
	out, err := exec.Command(bin, "tour", "--state", state).CombinedOutput()
	if err != nil {
		t.Fatalf("lcd tour: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "11 of 11 steps ok") || !strings.Contains(string(out), "delivered exactly once") {
		t.Fatalf("unexpected tour output:\n%s", out)
	}
	// The private containerd is gone: its pid file and socket too.
	for _, f := range []string{"state/containerd.pid", "state/containerd.sock"} {
		if _, err := os.Stat(filepath.Join(state, f)); !os.IsNotExist(err) {
			t.Errorf("%s left behind (err %v)", f, err)
		}
	}
}

// TestLcdRunExitStatus: lcd run against the harness's containerd exits with
// the container's status.
func TestLcdRunExitStatus(t *testing.T) {
	bin := buildLcd(t)
	run := func(args ...string) (string, int) {
		cmd := exec.Command(bin, append([]string{"run", "--address", env.Address, "--rootfs", env.Rootfs, "--"}, args...)...)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &exit):
			return string(out), exit.ExitCode()
		}
		t.Fatalf("lcd run: %v\n%s", err, out)
		return "", 0
	}
	if out, code := run("sh", "-c", "echo hi; exit 3"); code != 3 || !strings.Contains(out, "hi") {
		t.Fatalf("exit %d, output %q; want 3 and hi", code, out)
	}
	if _, code := run("/nonexistent"); code != 127 {
		t.Fatalf("missing binary: exit %d, want 127", code)
	}
}

// A wrong --address is one clear line and exit status 1: no panic, nothing
// left in the temp dir.
func TestLcdBadAddress(t *testing.T) {
	bin := buildLcd(t)
	for _, args := range [][]string{
		{"events", "--address", "/nonexistent.sock"},
		{"run", "--address", "/nonexistent.sock", "--", "true"},
		{"run", "--address", "/etc/hostname", "--", "true"},
	} {
		out, err := exec.Command(bin, args...).CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("lcd %v: %v, want exit status 1\n%s", args, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "lcd: ") {
			t.Errorf("lcd %v: want one \"lcd: ...\" line, got:\n%s", args, out)
		}
	}
}
