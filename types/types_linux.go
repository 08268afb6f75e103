package types

import (
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Summary describes one process of a task; it carries nothing on Linux.
type Summary struct{}

// Stats holds a task's metrics as containerd reported them.
type Stats struct {
	Read time.Time
	// Metrics is either a *github.com/containerd/cgroups/v3/cgroup1/stats.Metrics
	// or a *github.com/containerd/cgroups/v3/cgroup2/stats.Metrics.
	Metrics interface{}
}

// InterfaceToStats wraps decoded platform metrics read at read.
func InterfaceToStats(read time.Time, v interface{}) *Stats {
	return &Stats{Read: read, Metrics: v}
}

// Resources is the set of resource limits a task can be updated with. It is
// an alias, as in moby, so callers pass a *specs.LinuxResources unchanged.
type Resources = specs.LinuxResources

// Checkpoints describes a checkpoint; it carries nothing on Linux.
type Checkpoints struct{}
