module github.com/lcdkit/libcontainerd/v2

// The containerd v2 flavour, for engines built on
// github.com/containerd/containerd/v2: moby v28.x (libcontainerd/ at the
// root) and moby v29 (github.com/moby/moby/v2, daemon/internal/libcontainerd).
// The .go files are generated from the root module's by internal/cmd/genv2
// (make gen-v2), except the hand-written flavour_v2*.go files.
//
// Floors, not ceilings (SPEC §12, §13): each requirement is the lowest that
// every moby line on the v2 client already has: moby v28.0.0's vendor.mod
// (go 1.22.0, containerd/v2 v2.0.2, api v1.8.0, errdefs v1.0.0, errdefs/pkg
// v0.3.0, ttrpc v1.2.7, grpc v1.69.4, protobuf v1.35.2, cgroups/v3 v3.0.5,
// typeurl/v2 v2.2.3, runtime-spec v1.2.0, image-spec v1.1.0, x/sys v0.29.0),
// which v28.5.2 (containerd/v2 v2.1.4, api v1.9.0, grpc v1.72.2, go 1.24) and
// v29 v2.0.0-beta.24 (containerd/v2 v2.3.5, api v1.11.1, go 1.26.3) all
// exceed, so a consumer inherits nothing new. v28.0.0's and not v28.5.2's
// because the code works there: it builds, vets and passes the unit and
// integration suites at these versions (make test-v2 runs at them). moby
// v28.0.0's own drop-in build cannot be checked here: its graph needs
// github.com/tonistiigi/go-actions-cache@v0.0.0-20250219102945-1a5174abd055,
// which the Go proxy no longer serves (moby builds it from vendor/).
// testdata/newest.mod is the ceiling (containerd/v2 v2.4.2): make
// test-v2-newest.
go 1.22.0

require (
	github.com/containerd/cgroups/v3 v3.0.5
	github.com/containerd/containerd/api v1.8.0
	github.com/containerd/containerd/v2 v2.0.2
	github.com/containerd/errdefs v1.0.0
	github.com/containerd/errdefs/pkg v0.3.0
	github.com/containerd/log v0.1.0
	github.com/containerd/ttrpc v1.2.7
	github.com/containerd/typeurl/v2 v2.2.3
	github.com/opencontainers/image-spec v1.1.0
	github.com/opencontainers/runtime-spec v1.2.0
	github.com/pelletier/go-toml v1.9.5
	go.uber.org/goleak v1.3.0
	golang.org/x/sys v0.29.0
	google.golang.org/grpc v1.69.4
	google.golang.org/protobuf v1.35.2
)

require (
	github.com/AdaLogics/go-fuzz-headers v0.0.0-20240806141605-e8a1dd7889d6 // indirect
	github.com/AdamKorcz/go-118-fuzz-build v0.0.0-20231105174938-2b5cbb29f3e2 // indirect
	github.com/Microsoft/go-winio v0.6.2 // indirect
	github.com/Microsoft/hcsshim v0.12.9 // indirect
	github.com/containerd/continuity v0.4.5 // indirect
	github.com/containerd/fifo v1.1.0 // indirect
	github.com/containerd/platforms v1.0.0-rc.1 // indirect
	github.com/containerd/plugin v1.0.0 // indirect
	github.com/distribution/reference v0.6.0 // indirect
	github.com/felixge/httpsnoop v1.0.4 // indirect
	github.com/fsnotify/fsnotify v1.7.0 // indirect
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
	github.com/opencontainers/runtime-tools v0.9.1-0.20221107090550-2e043c6bd626 // indirect
	github.com/opencontainers/selinux v1.12.0 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/sirupsen/logrus v1.9.3 // indirect
	github.com/syndtr/gocapability v0.0.0-20200815063812-42c35b437635 // indirect
	go.opencensus.io v0.24.0 // indirect
	go.opentelemetry.io/auto/sdk v1.1.0 // indirect
	go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp v0.59.0 // indirect
	go.opentelemetry.io/otel v1.35.0 // indirect
	go.opentelemetry.io/otel/metric v1.35.0 // indirect
	go.opentelemetry.io/otel/trace v1.35.0 // indirect
	golang.org/x/mod v0.21.0 // indirect
	golang.org/x/net v0.34.0 // indirect
	golang.org/x/sync v0.11.0 // indirect
	golang.org/x/text v0.22.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20241021214115-324edc3d5d38 // indirect
	sigs.k8s.io/yaml v1.4.0 // indirect
	tags.cncf.io/container-device-interface v0.8.0 // indirect
	tags.cncf.io/container-device-interface/specs-go v0.8.0 // indirect
)
