package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/lcdkit/libcontainerd/internal/errclass"
	toml "github.com/pelletier/go-toml"
	"golang.org/x/sys/unix"
)

const (
	configFileName = "containerd.toml"
	pidFileName    = "containerd.pid"
	socketFileName = "containerd.sock"
	logFileName    = "containerd.log"
	ttrpcSuffix    = ".ttrpc"
	daemonSubdir   = "daemon"

	// maxSocketPath is the longest socket path containerd accepts: it
	// refuses more than 104 bytes (the BSD limit) even though Linux allows
	// 107.
	maxSocketPath = 104
)

// setPaths derives every path from rootDir and stateDir, which must be
// non-empty; relative ones are made absolute.
func (r *remote) setPaths(rootDir, stateDir string) error {
	if rootDir == "" || stateDir == "" {
		return errclass.InvalidParameter(fmt.Errorf("supervisor: root dir %q and state dir %q must both be set", rootDir, stateDir))
	}
	var err error
	if r.rootDir, err = filepath.Abs(rootDir); err != nil {
		return errclass.InvalidParameter(fmt.Errorf("supervisor: root dir %q: %w", rootDir, err))
	}
	if r.stateDir, err = filepath.Abs(stateDir); err != nil {
		return errclass.InvalidParameter(fmt.Errorf("supervisor: state dir %q: %w", stateDir, err))
	}
	r.configFile = filepath.Join(r.stateDir, configFileName)
	r.pidFile = filepath.Join(r.stateDir, pidFileName)
	r.address = filepath.Join(r.stateDir, socketFileName)
	if n := len(r.address + ttrpcSuffix); n > maxSocketPath {
		return errclass.InvalidParameter(fmt.Errorf("supervisor: socket path %q is %d bytes, more than containerd's limit of %d: use a shorter state dir",
			r.address+ttrpcSuffix, n, maxSocketPath))
	}
	return nil
}

// makeDirs creates the root and state dirs (0711: containers with a
// remapped root must be able to traverse to bundles and snapshots below
// them; existing dirs keep their mode) and checks that both are writable
// directories.
func (r *remote) makeDirs() error {
	for _, d := range []struct{ what, path string }{{"root", r.rootDir}, {"state", r.stateDir}} {
		_, statErr := os.Stat(d.path)
		if err := os.MkdirAll(d.path, 0o711); err != nil {
			return dirError(d.what, d.path, err)
		}
		if errors.Is(statErr, os.ErrNotExist) {
			// Ours: make the mode independent of the umask.
			if err := os.Chmod(d.path, 0o711); err != nil {
				return dirError(d.what, d.path, err)
			}
		}
		if fi, err := os.Stat(d.path); err != nil {
			return dirError(d.what, d.path, err)
		} else if !fi.IsDir() {
			return dirError(d.what, d.path, syscall.ENOTDIR)
		}
		if err := unix.Access(d.path, unix.W_OK|unix.X_OK); err != nil {
			return dirError(d.what, d.path, &os.PathError{Op: "access", Path: d.path, Err: err})
		}
	}
	return nil
}

// dirError classifies a failure to use a directory: a path the caller chose
// badly (not a directory, no permission, read-only) is InvalidParameter,
// anything else System.
func dirError(what, path string, err error) error {
	err = fmt.Errorf("supervisor: cannot use %s dir %q: %w", what, path, err)
	for _, e := range []syscall.Errno{syscall.ENOTDIR, syscall.EEXIST, syscall.EACCES, syscall.EPERM,
		syscall.EROFS, syscall.ENAMETOOLONG, syscall.ENOENT, syscall.ELOOP} {
		if errors.Is(err, e) {
			return errclass.InvalidParameter(err)
		}
	}
	return errclass.System(err)
}

// config builds the version-2 config document.
func (r *remote) config() map[string]interface{} {
	cfg := map[string]interface{}{
		"version": int64(2),
		"root":    filepath.Join(r.rootDir, daemonSubdir),
		"state":   filepath.Join(r.stateDir, daemonSubdir),
		"grpc":    map[string]interface{}{"address": r.address},
		"ttrpc":   map[string]interface{}{"address": r.address + ttrpcSuffix},
	}
	if plugins := dedupe(r.disabledPlugins); len(plugins) > 0 {
		cfg["disabled_plugins"] = plugins
	}
	debug := map[string]interface{}{}
	if r.logLevel != "" {
		debug["level"] = r.logLevel
	}
	if r.logFormat != "" {
		debug["format"] = string(r.logFormat)
	}
	if len(debug) > 0 {
		cfg["debug"] = debug
	}
	for _, fn := range r.extraConfig {
		fn(cfg)
	}
	return cfg
}

// writeConfig writes the config file atomically (0600), so that a daemon
// being adopted never reads half a file.
func (r *remote) writeConfig() error {
	tree, err := toml.TreeFromMap(r.config())
	if err != nil {
		return errclass.InvalidParameter(fmt.Errorf("supervisor: encode containerd config: %w", err))
	}
	text, err := tree.ToTomlString()
	if err != nil {
		return errclass.InvalidParameter(fmt.Errorf("supervisor: encode containerd config: %w", err))
	}
	if err := writeFileAtomic(r.configFile, []byte(text), 0o600); err != nil {
		return dirError("state", r.stateDir, fmt.Errorf("write config: %w", err))
	}
	return nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
