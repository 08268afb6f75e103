module github.com/lcdkit/libcontainerd/v2

// The containerd v2 flavour, for engines built on
// github.com/containerd/containerd/v2: moby v28.x (libcontainerd/ at the
// root) and moby v29 (github.com/moby/moby/v2, daemon/internal/libcontainerd).
// The .go files are generated from the root module's by internal/cmd/genv2
// (make gen-v2), except the hand-written flavour_v2*.go files.
//
// Floors, not ceilings (SPEC §12, §13): each requirement is the lowest that
// both moby v28.5.2 (its vendor.mod: go 1.24.0, containerd/v2 v2.1.4, api
// v1.9.0, errdefs v1.0.0, errdefs/pkg v0.3.0, ttrpc v1.2.7, grpc v1.72.2,
// protobuf v1.36.9, cgroups/v3 v3.0.5, typeurl/v2 v2.2.3, runtime-spec
// v1.2.1, image-spec v1.1.1, x/sys v0.33.0) and moby v29 v2.0.0-beta.24 (its
// go.mod: containerd/v2 v2.3.5, api v1.11.1, all the others at or above
// v28.5.2's) already have, so a consumer inherits nothing new. Not lower, to
// moby v28.0.0's containerd/v2 v2.0.2 / api v1.8.0 / go 1.22: the code has
// not been built or tested there, so v28.0.0 is not a claimed drop-in.
// testdata/newest.mod is the ceiling (containerd/v2 v2.4.2): make
// test-v2-newest.
go 1.24.0

require (
	github.com/containerd/cgroups/v3 v3.0.5
	github.com/containerd/containerd/api v1.9.0
	github.com/containerd/containerd/v2 v2.1.4
	github.com/containerd/errdefs v1.0.0
	github.com/containerd/errdefs/pkg v0.3.0
	github.com/containerd/log v0.1.0
	github.com/containerd/ttrpc v1.2.7
	github.com/containerd/typeurl/v2 v2.2.3
	github.com/opencontainers/image-spec v1.1.1
	github.com/opencontainers/runtime-spec v1.2.1
	github.com/pelletier/go-toml v1.9.5
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.33.0
	google.golang.org/grpc v1.72.2
	google.golang.org/protobuf v1.36.9
)

require (
	github.com/Microsoft/go-winio v0.6.2 // indirect
	github.com/Microsoft/hcsshim v0.13.0 // indirect
	github.com/containerd/continuity v0.4.5 // indirect
	github.com/containerd/fifo v1.1.0 // indirect
	github.com/containerd/platforms v1.0.0-rc.1 // indirect
	github.com/containerd/plugin v1.0.0 // indirect
	github.com/distribution/reference v0.6.0 // indirect
	github.com/felixge/httpsnoop v1.0.4 // indirect
	github.com/go-logr/logr v1.4.2 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/gogo/protobuf v1.3.2 // indirect
	github.com/golang/groupcache v0.0.0-20210331224755-41bb18bfe9da // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	github.com/klauspost/compress v1.18.0 // indirect
	github.com/moby/locker v1.0.1 // indirect
	github.com/moby/sys/mountinfo v0.7.2 // indirect
	github.com/moby/sys/sequential v0.6.0 // indirect
	github.com/moby/sys/signal v0.7.1 // indirect
	github.com/moby/sys/user v0.4.0 // indirect
	github.com/moby/sys/userns v0.1.0 // indirect
	github.com/opencontainers/go-digest v1.0.0 // indirect
	github.com/opencontainers/selinux v1.12.0 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/sirupsen/logrus v1.9.3 // indirect
	go.opencensus.io v0.24.0 // indirect
	go.opentelemetry.io/auto/sdk v1.1.0 // indirect
	go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp v0.60.0 // indirect
	go.opentelemetry.io/otel v1.35.0 // indirect
	go.opentelemetry.io/otel/metric v1.35.0 // indirect
	go.opentelemetry.io/otel/trace v1.35.0 // indirect
	golang.org/x/net v0.38.0 // indirect
	golang.org/x/sync v0.14.0 // indirect
	golang.org/x/text v0.23.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20250218202821-56aae31c358a // indirect
)
