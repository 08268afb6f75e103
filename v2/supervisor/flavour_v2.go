package supervisor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// WithDetectLocalBinary runs the containerd binary found next to the running
// executable (a dockerd shipped with its own containerd) instead of the one
// on PATH; without one there, nothing changes. moby v28's cmd/dockerd passes
// it, so the v2 flavour has it with moby's meaning. A directory of that name
// is an error.
func WithDetectLocalBinary() DaemonOpt {
	return func(r *remote) error {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("look up the running binary: %w", err)
		}
		local := filepath.Join(filepath.Dir(self), defaultBinary)
		fi, err := os.Stat(local)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return nil
		case err != nil:
			return err
		case fi.IsDir():
			return fmt.Errorf("local containerd path %s is a directory", local)
		}
		r.binary = local
		return nil
	}
}
