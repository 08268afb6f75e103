# libcontainerd: build, test and benchmark against a private containerd.
# `make test` is all a fresh Debian machine needs (as root).

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec

GO ?= go
GOTEST ?= $(GO) test
TESTFLAGS ?=
# The race detector runs at the floor (make test); test-newest checks the
# same behaviour at the ceiling without rebuilding everything with -race.
RACE ?= -race
BENCHFLAGS ?=
STATICCHECK_VERSION ?= v0.8.2

MODULE := github.com/lcdkit/libcontainerd
INTEGRATION_PKGS := $(MODULE)/integration
# Unit packages: everything that needs no containerd.
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e '/integration$$')

DEBIAN_PACKAGES := containerd runc busybox-static criu
# One binary per package: present means installed.
DEPS_BINARIES := containerd containerd-shim-runc-v2 runc busybox criu

.PHONY: all deps build demo test test-unit test-sim test-fuzz test-integration test-newest test-dropin daemons test-compat bench soak lint clean \
	dockerd test-moby test-moby-plugin \
	gen-v2 check-v2 test-v2 test-v2-unit test-v2-integration test-v2-newest

all: build

# Idempotent: apt runs only when a binary is missing.
deps:
	@missing=""; for b in $(DEPS_BINARIES); do command -v $$b >/dev/null 2>&1 || missing="$$missing $$b"; done; \
	if [ -n "$$missing" ]; then \
		echo "deps: missing$$missing: installing $(DEBIAN_PACKAGES)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends $(DEBIAN_PACKAGES); \
	fi
	$(GO) mod download

build:
	$(GO) build ./...
	$(GO) build -o bin/lcd ./cmd/lcd

# The main job: a private containerd, busybox containers, every event, a
# containerd SIGKILL with no exit lost; everything removed afterwards.
demo: deps build
	bin/lcd tour

test: deps test-unit test-sim test-fuzz test-integration test-v2
# make test runs the soak-like tests once, on the root module: the v2
# flavour is generated from the same source, and CI runs its soak-like
# tests on containerd v2.4.2 (test-compat). make test-v2 alone runs them.
test: SKIP_SOAK_V2 = 1

# The unit suites run the simulation too (TestSimulation: 5,000 schedules
# under -race, 100,000 without), from a fixed base seed like test-sim's, so
# that CI is reproducible; the newest-client runs take other ranges
# (SIM_UNIT_BASE) so that CI covers more schedules. make soak explores.
SIM_UNIT_BASE ?= 1000001
test-unit:
	LCD_SIM_BASE=$(SIM_UNIT_BASE) $(GOTEST) $(RACE) -count=1 $(TESTFLAGS) $(UNIT_PKGS)

# The exit ledger's simulation (internal/ledger): SIM_SCHEDULES seeded
# schedules of every source interleaved with containerd kills, freezes,
# clock steps, pid reuse and another client, invariants checked after each.
# Without -race (the ledger is single-threaded; test-unit runs a few
# thousand under it). make test runs a fixed range of seeds, so that it is
# reproducible; make soak explores new ones. A failure prints its seed and
# the command that replays it.
SIM_SCHEDULES ?= 100000
SIM_BASE ?= 1
test-sim:
	LCD_SIM_BASE=$(SIM_BASE) $(GOTEST) -count=1 -timeout 10m -run '^TestSimulation$$' ./internal/ledger -sim.schedules=$(SIM_SCHEDULES)

# A short real fuzzing run of each fuzz target (go test alone runs only
# their seed corpus). FUZZTIME=1m for a longer one.
FUZZTIME ?= 5s
test-fuzz:
	$(GOTEST) -run '^$$' -fuzz '^FuzzTranslate$$' -fuzztime $(FUZZTIME) .
	$(GOTEST) -run '^$$' -fuzz '^FuzzGenerate$$' -fuzztime $(FUZZTIME) ./shimopts/

# -json through testjson: fails when the integration suite ran no test or
# skipped one, and prints the usual go test output. The only tests allowed
# to skip are these, which need a working criu (they skip, with criu's
# reason, when `criu check` fails); testjson prints how many skipped.
CRIU_TESTS := TestCheckpointRestoreRoundTrip
# The soak-like integration tests (containerd killed or frozen for seconds,
# over and over): about 160 s of each suite run. CI runs them on the host's
# daemon (make test) and the newest daemon of each flavour, and skips them
# where only the client's version or an older daemon differs
# (.ci/run: SKIP_SOAK=1, COMPAT_SOAK_ON).
SOAK_TESTS := ^(TestChaosExitsAcrossContainerdRestarts|TestLifecyclesAcrossContainerdKill|TestExitsAcrossContainerdFreeze|TestChaosWithDeletingBackend)$$
# SKIP_SOAK=1 leaves them out of test-integration and test-v2-integration.
SOAK_SKIPFLAG = $(if $(SKIP_SOAK),-skip '$(SOAK_TESTS)')
V2_SOAK_SKIPFLAG = $(if $(SKIP_SOAK)$(SKIP_SOAK_V2),-skip '$(SOAK_TESTS)')

test-integration:
	$(GO) build -o bin/testjson ./internal/cmd/testjson
	$(GOTEST) $(RACE) -count=1 -json -timeout 20m $(SOAK_SKIPFLAG) $(TESTFLAGS) $(INTEGRATION_PKGS) \
		| bin/testjson $(addprefix -require ,$(INTEGRATION_PKGS)) $(addprefix -allow-skip criu=,$(CRIU_TESTS))

# The same suites with the dependencies at their newest v1.7 patch: go.mod
# holds the floors a consumer inherits, testdata/newest.mod the ceiling.
NEWEST_MODFILE := testdata/newest.mod
test-newest: deps
	GOFLAGS=-modfile=$(NEWEST_MODFILE) $(GO) mod download
	GOFLAGS=-modfile=$(NEWEST_MODFILE) $(MAKE) RACE= SIM_UNIT_BASE=100001 test-unit test-integration

# The containerd v2 flavour, module $(MODULE)/v2 in v2/: generated from the
# root sources by internal/cmd/genv2 (its table.go says what differs), plus
# the hand-written flavour_v2*.go files. Run gen-v2 after changing a root
# .go file and commit v2/ with it; check-v2 (and genv2's test, in test-unit)
# fails when v2/ is stale.
V2_MODULE := $(MODULE)/v2
V2_INTEGRATION_PKGS := $(V2_MODULE)/integration
V2_UNIT_PKGS = $(shell cd v2 && $(GO) list ./... | grep -v -e '/integration$$')
# Tests that cannot work on containerd 1.6.20 with the v2 client: none so far.
V2_SKIP_TESTS :=

gen-v2:
	$(GO) run ./internal/cmd/genv2

check-v2:
	$(GO) run ./internal/cmd/genv2 -check

test-v2: deps check-v2 test-v2-unit test-v2-integration

test-v2-unit:
	cd v2 && $(GO) mod download && LCD_SIM_BASE=$(SIM_UNIT_BASE) $(GOTEST) $(RACE) -count=1 $(TESTFLAGS) $(V2_UNIT_PKGS)

test-v2-integration:
	$(GO) build -o bin/testjson ./internal/cmd/testjson
	cd v2 && $(GOTEST) $(RACE) -count=1 -json -timeout 20m $(V2_SOAK_SKIPFLAG) $(TESTFLAGS) $(V2_INTEGRATION_PKGS) \
		| ../bin/testjson $(addprefix -require ,$(V2_INTEGRATION_PKGS)) $(addprefix -allow-skip criu=,$(CRIU_TESTS)) \
			$(addprefix -allow-skip containerd-1.6=,$(V2_SKIP_TESTS))

# The v2 suites at the newest containerd v2 patch (v2/testdata/newest.mod).
V2_NEWEST_MODFILE := testdata/newest.mod
test-v2-newest: deps
	cd v2 && GOFLAGS=-modfile=$(V2_NEWEST_MODFILE) $(GO) mod download
	GOFLAGS=-modfile=$(V2_NEWEST_MODFILE) $(MAKE) RACE= SIM_UNIT_BASE=200001 test-v2-unit test-v2-integration

# moby's own source on this library, inside moby's own dependency graph:
# dockerd builds, every package importing us vets, moby's unit tests pass.
# v25–v27 build on this module; v28.5.2 and moby v29 (github.com/moby/moby/v2
# v2.0.0-beta.24) on the containerd v2 flavour in v2/. (v28.0.0 cannot be
# built without its vendor/: the Go proxy no longer serves a module version
# its graph needs.)
DROPIN_VERSIONS ?= v25.0.8 v26.1.5 v27.5.1 v28.5.2 v2.0.0-beta.24
test-dropin:
	DROPIN_VERSIONS="$(DROPIN_VERSIONS)" hack/test-dropin.sh

# moby's dockerd on this library, wired as test-dropin wires it, into
# bin/dockerd-$(MOBY) (and moby's docker-proxy beside it); MOBY is one of
# DROPIN_VERSIONS (v29 = v2.0.0-beta.24). MOBY_ORIGINAL=1 builds moby's own
# dockerd from the same source instead, into bin/dockerd-$(MOBY)-moby.
# LIBCONTAINERD_DIR=/other/checkout builds on another checkout of the library.
MOBY ?=
dockerd:
	MOBY_ORIGINAL="$(MOBY_ORIGINAL)" hack/build-dockerd.sh "$(MOBY)"

# moby's own integration/container suite, whole, against bin/dockerd-$(MOBY)
# and moby's own dockerd from the same source, one after the other, each in
# namespaces of its own (docs/moby-suite.md); a table and the difference of
# the pass sets at the end. Long (about half an hour a dockerd on 2 cores):
# not in .ci/run. MOBY_TESTS="TestA TestB" runs only those.
test-moby:
	MOBY_COMMAND="make test-moby MOBY=$(MOBY)" hack/test-moby.sh "$(MOBY)"

# The same for moby's integration/plugin packages (authz, logging, volumes,
# graphdriver, common): the plugin executor is built on this library.
test-moby-plugin:
	MOBY_COMMAND="make test-moby-plugin MOBY=$(MOBY)" MOBY_PKGS=integration/plugin/... hack/test-moby.sh "$(MOBY)"

# The containerd daemons (and their runc shims) the suites also run against,
# built once from their Go modules into a cache outside the repo
# (${XDG_CACHE_HOME:-~/.cache}/libcontainerd/daemons/<version>); later runs
# reuse them.
# v2.3.7: the newest patch of the 2.3 line (containerd's LTS until April
# 2028), for the v2 flavour's suites.
DAEMON_VERSIONS ?= v1.7.35 v2.3.7 v2.4.2
daemons:
	DAEMON_VERSIONS="$(DAEMON_VERSIONS)" hack/build-daemons.sh

# The whole integration suite and the supervisor's tests against each daemon:
# the host's (Debian's 1.6.20), then each built one; a table at the end.
# The v2 flavour's suites also run on the 2.3 LTS line.
COMPAT_DAEMONS ?= host v1.7.35 v2.4.2
# The daemons the soak-like tests run on in test-compat ("all": every one).
COMPAT_SOAK_ON ?= all
V2_COMPAT_DAEMONS ?= host v1.7.35 v2.3.7 v2.4.2
test-compat: deps daemons
	COMPAT_DAEMONS="$(COMPAT_DAEMONS)" CRIU_TESTS="$(CRIU_TESTS)" SOAK_TESTS='$(SOAK_TESTS)' COMPAT_SOAK_ON="$(COMPAT_SOAK_ON)" hack/test-compat.sh
	COMPAT_FLAVOUR=v2 COMPAT_DAEMONS="$(V2_COMPAT_DAEMONS)" CRIU_TESTS="$(CRIU_TESTS)" SOAK_TESTS='$(SOAK_TESTS)' COMPAT_SOAK_ON="$(COMPAT_SOAK_ON)" \
		V2_SKIP_TESTS="$(V2_SKIP_TESTS)" hack/test-compat.sh

# Both flavours: the v2 rows are the same benchmarks on the containerd v2
# client, each beside the same work written against the raw v2 client.
bench: deps
	$(GOTEST) -run '^$$' -bench . -benchmem $(BENCHFLAGS) ./...
	cd v2 && $(GOTEST) -run '^$$' -bench . -benchmem $(BENCHFLAGS) ./...

# The long runs: the leak test at 500 lifecycles, the kill load test over 10
# seeds, the chaos test with its 17 s outage, a 90 s containerd freeze.
soak: deps
	LCD_SIM_BASE=$$(date +%s%N) $(GOTEST) -count=1 -timeout 120m -run '^TestSimulation$$' ./internal/ledger -sim.schedules=10000000
	LCD_LEAK_CYCLES=500 LCD_LOAD_SEEDS=20 LCD_CHAOS_LONG=1 LCD_FREEZE_S=90 $(GOTEST) -count=1 -timeout 90m \
		-run 'TestLifecycleLeaks|TestLifecyclesAcrossContainerdKill|TestChaosWithDeletingBackend|TestExitsAcrossContainerdFreeze' -v $(TESTFLAGS) ./integration/
	$(MAKE) daemons DAEMON_VERSIONS=v2.4.2
	LCD_CONTAINERD_BIN=$${XDG_CACHE_HOME:-$$HOME/.cache}/libcontainerd/daemons/v2.4.2 LCD_LOAD_SEEDS=10 $(GOTEST) -count=1 -timeout 60m \
		-run 'TestLifecyclesAcrossContainerdKill' -v $(TESTFLAGS) ./integration/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

clean:
	rm -rf bin
	$(GO) clean -testcache
