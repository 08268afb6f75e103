package main

// The rewrite table: everything that makes the containerd v2 flavour differ
// from the root sources, in one place. A rule that no longer matches is an
// error, so the table cannot silently rot when the root changes.

// importRule rewrites one import path. With prefix set, the path and
// everything below it move (the library's own packages); otherwise only the
// exact path does. name is the v1 package's name where the v2 package's
// differs: an import without an alias gets it as one, so the file keeps
// calling the package what it did (the v2 client lives in package "client";
// every root file calls it containerd).
type importRule struct {
	from, to string
	name     string
	prefix   bool
}

const (
	cd1 = "github.com/containerd/containerd"
	cd2 = "github.com/containerd/containerd/v2"
)

var importRules = []importRule{
	{from: "github.com/lcdkit/libcontainerd", to: "github.com/lcdkit/libcontainerd/v2", prefix: true},

	{from: cd1, to: cd2 + "/client", name: "containerd"},
	{from: cd1 + "/archive", to: cd2 + "/pkg/archive"},
	{from: cd1 + "/cio", to: cd2 + "/pkg/cio"},
	{from: cd1 + "/containers", to: cd2 + "/core/containers"},
	{from: cd1 + "/content", to: cd2 + "/core/content"},
	{from: cd1 + "/content/local", to: cd2 + "/plugins/content/local"},
	{from: cd1 + "/defaults", to: cd2 + "/defaults"},
	// The v1.7 client's errdefs had its own sentinels (aliases of
	// containerd/errdefs' from v1.7.18) and the gRPC conversion, which v2
	// keeps in errdefs/pkg/errgrpc (see internal/errclass/flavour_v2.go).
	{from: cd1 + "/errdefs", to: "github.com/containerd/errdefs"},
	{from: cd1 + "/events", to: cd2 + "/core/events"},
	{from: cd1 + "/filters", to: cd2 + "/pkg/filters"},
	{from: cd1 + "/identifiers", to: cd2 + "/pkg/identifiers"},
	{from: cd1 + "/images", to: cd2 + "/core/images"},
	{from: cd1 + "/leases", to: cd2 + "/core/leases"},
	{from: cd1 + "/namespaces", to: cd2 + "/pkg/namespaces"},
	{from: cd1 + "/oci", to: cd2 + "/pkg/oci"},
	{from: cd1 + "/pkg/dialer", to: cd2 + "/pkg/dialer"},
	{from: cd1 + "/plugin", to: cd2 + "/plugins", name: "plugin"},
	{from: cd1 + "/protobuf", to: cd2 + "/pkg/protobuf"},
	{from: cd1 + "/runtime", to: cd2 + "/core/runtime"},
	{from: cd1 + "/protobuf/proto", to: cd2 + "/pkg/protobuf/proto"},
	// The runtime options' v2 homes are in the containerd/api module, which
	// moby v28 imports; runc v1's options are gone.
	{from: cd1 + "/runtime/v2/runc/options", to: cd1 + "/api/types/runc/options"},
	{from: cd1 + "/pkg/runtimeoptions/v1", to: cd1 + "/api/types/runtimeoptions/v1", name: "runtimeoptions_v1"},
}

// symbolRule moves one package-level name: a file that uses fromPath's
// fromName uses toPath's toName instead (the import is added when the file
// lacks it; an import nothing uses any more goes). Paths are as a root file
// writes them: importRules then move them as usual. For APIs that v2
// renamed or moved on their own, wherever they are used.
type symbolRule struct {
	fromPath, fromName string
	toPath, toName     string
}

var symbolRules = []symbolRule{
	{cd1, "ClientOpt", cd1, "Opt"},
	{cd1 + "/errdefs", "FromGRPC", "github.com/containerd/errdefs/pkg/errgrpc", "ToNative"},
	{cd1 + "/errdefs", "ToGRPC", "github.com/containerd/errdefs/pkg/errgrpc", "ToGRPC"},
	{cd1 + "/protobuf", "FromAny", "github.com/containerd/typeurl/v2", "MarshalProto"},
}

// keptPrefixes are import paths that are the same in both flavours: the
// containerd/api module holds the v1.7 client's api packages at the same
// paths.
var keptPrefixes = []string{
	cd1 + "/api/",
}

// skipped are the root paths (a directory ending in "/", or a file) that have
// no v2 counterpart. legacy is the ID-keyed API of daemons older than moby
// v28, none of which ran on the v2 client; genv2 and testjson are tools of
// the root module that the v2 tree uses from there.
var skipped = []string{
	"v2/",
	"legacy/",
	"integration/internal/v18executor/",
	"integration/legacy_test.go",
	"integration/legacy_v24_test.go",
	"internal/cmd/genv2/",
	"internal/cmd/testjson/",
}

// droppedImports are v1-only packages. A top-level declaration that uses one
// is left out of the v2 copy, as is every declaration that uses a left-out
// one (or one declared in a skipped file of the same package): the tests of
// the legacy API that live beside the others, for instance. Each generated
// file lists what it left out.
var droppedImports = []string{
	"github.com/lcdkit/libcontainerd/legacy",
	"github.com/lcdkit/libcontainerd/integration/internal/v18executor",
}

// prunedFuncs are functions that use the legacy API beside the rest: in v2
// they keep everything but their top-level statements that use a v1-only
// name (and the statements after them that use what those declared), instead
// of being left out whole. Keyed by root file and function name.
var prunedFuncs = map[string]string{
	"integration/faults_test.go TestFaultMatrix": "runs the legacy client's fault cases after the root package's; v2 runs the root package's",
}

// textRule replaces old with new in one root file before it is parsed, for
// a v2 difference that has no import of its own to hang on and sits in a file
// that cannot take a flavour split. Each must match (count times: 0 means at
// least once); a rule that stops matching fails the generation.
type textRule struct {
	name     string
	file     string
	old, new string
	count    int
	why      string
}

var textRules = []textRule{
	{
		name: "conn-is-any",
		file: "events.go",
		old:  "if conn := c.client.Conn(); conn != nil {",
		new:  "if conn, ok := c.client.Conn().(interface{ ResetConnectBackoff() }); ok {",
		why:  "the v2 client's Conn returns any (the *grpc.ClientConn, or nil once closed)",
	},
	{
		name: "baseline-after-connect",
		file: "integration/chaos_delete_test.go",
		old:  "base := takeBaseline()",
		new:  "base := flavourBaseline(t, f)",
		why: "the v2 client connects lazily: right after NewClient its connection and the event " +
			"stream have no goroutines yet, so a baseline taken then counts them as leaked " +
			"(v2/integration/flavour_v2_test.go takes it once both are up)",
	},
	{
		name: "typed-stream-errors",
		file: "internal/fakecd/fakecd_test.go",
		old:  "if status.Code(err) != code {",
		new:  "if status.Code(errdefs.ToGRPC(err)) != code {",
		why: "from containerd v2.4 the client's Subscribe hands back typed errors (errgrpc.ToNative), " +
			"not statuses: converted back before the code is read (the symbol rule for ToGRPC then applies)",
	},
	{
		name: "spec-without-legacy-fixture",
		file: "integration/remote_test.go",
		old:  "(&legacyFixture{t: t, ctx: ctx}).spec(",
		new:  "flavourSpec(t, ctx, ",
		why: "the remote tests build specs with the legacy fixture's helper; " +
			"v2/integration/flavour_v2_test.go has the same helper without the legacy client",
	},
	{
		name: "plugin-spec-without-legacy-fixture",
		file: "integration/pluginexec_test.go",
		old:  "(&legacyFixture{t: t, ctx: f.ctx}).spec(",
		new:  "flavourSpec(t, f.ctx, ",
		why:  "as spec-without-legacy-fixture, in the plugin executor's tests",
	},
}
