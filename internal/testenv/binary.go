package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BinDirEnv names the environment variable that selects the containerd the
// tests run: a directory holding containerd and containerd-shim-runc-v2
// (hack/build-daemons.sh makes them). Unset, the host's containerd on PATH
// runs. runc is the host's either way.
const BinDirEnv = "LCD_CONTAINERD_BIN"

// daemonBinaries are what BinDirEnv's directory must hold.
var daemonBinaries = []string{"containerd", "containerd-shim-runc-v2"}

// BinDir returns the directory BinDirEnv names, made absolute, or "" when
// the host's containerd is to run.
func BinDir() (string, error) {
	dir := os.Getenv(BinDirEnv)
	if dir == "" {
		return "", nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("%s=%q: %w", BinDirEnv, dir, err)
	}
	for _, b := range daemonBinaries {
		path := filepath.Join(abs, b)
		if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return "", fmt.Errorf("%s=%q has no executable %s (run `make daemons`)", BinDirEnv, dir, b)
		}
	}
	return abs, nil
}

// DaemonBinary returns the containerd executable to run: BinDirEnv's, or
// the one on PATH.
func DaemonBinary() (string, error) {
	dir, err := BinDir()
	if err != nil {
		return "", err
	}
	if dir != "" {
		return filepath.Join(dir, "containerd"), nil
	}
	return exec.LookPath("containerd")
}

// UseBinDir puts BinDirEnv's directory, if set, first on this process's
// PATH, so that everything a test starts runs that version: the harness's
// daemon, a daemon the supervisor or the demo CLI starts, and their shims.
// containerd looks a runtime's shim up on PATH before its own directory, so
// without this a built daemon would run the host's older shim, and the shim
// is where most of the behaviour that differs between versions lives.
func UseBinDir() error {
	dir, err := BinDir()
	if err != nil || dir == "" {
		return err
	}
	path := os.Getenv("PATH")
	if first, _, _ := strings.Cut(path, string(os.PathListSeparator)); first == dir {
		return nil
	}
	return os.Setenv("PATH", dir+string(os.PathListSeparator)+path)
}
