package shimopts

import "github.com/containerd/containerd/plugin"

// The runtimes the containerd v1.7 client still names; v2 dropped the
// constants with the runtimes (v2/shimopts/flavour_v2.go spells them out).
const (
	runtimeRuncV1  = plugin.RuntimeRuncV1
	runtimeLinuxV1 = plugin.RuntimeLinuxV1
)
