package shimopts

// containerd 2.0 removed runc v1 and the v1 Linux runtime with their
// constants. A daemon configured with either still gets what it got on the
// v1.7 client: runc options for runc v1 (which a 2.x daemon then refuses by
// name), a clear error for the v1 Linux runtime. The root module takes these
// from containerd's plugin package (shimopts/flavour_v1.go).
const (
	runtimeRuncV1  = "io.containerd.runc.v1"
	runtimeLinuxV1 = "io.containerd.runtime.v1.linux"
)
