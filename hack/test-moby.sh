#!/usr/bin/env bash
# make test-moby: moby's own integration suite, whole, against moby's dockerd
# built on this library and against moby's own dockerd built from the same
# source, one after the other on this machine, and the difference of what
# each passes.
#
#   hack/test-moby.sh VERSION       VERSION: v27.5.1, v28.5.2, v29 (or any
#                                   line hack/moby.sh knows)
#
# Both dockerds (hack/build-dockerd.sh) and the test binaries (go test -c,
# from moby's unchanged tree) are built first. Each side then runs in
# namespaces of its own (hack/moby-suite-ns.sh): a private mount, network
# and pid namespace, a fresh data root and exec root, the containerd the
# dockerd starts itself, no network beyond its own bridge, the frozen images
# made offline from Debian's busybox-static, and every top-level test in a
# process of its own (a panic takes only itself down) with a timeout.
#
#   MOBY_PKGS        packages, moby-relative (default integration/container;
#                    make test-moby-plugin: integration/plugin/...)
#   MOBY_TESTS       only these top-level tests (names, space-separated)
#   MOBY_REPEAT      runs of each test (default 1; the table counts runs)
#   MOBY_SIDES       default "moby lcd": moby's dockerd first, then ours
#   MOBY_TIMEOUT     seconds per test (default 300)
#   MOBY_RECHECK     runs of each test one dockerd passed and the other did
#                    not, on both, afterwards (default 3; 0: none): a flaky
#                    test shows as such, a real difference stays one
#   MOBY_SKIP_BUILD  1: reuse the binaries already built
#   LIBCONTAINERD_DIR  the library checkout ours is built on (default: this one)
#
# Results: ~/.cache/libcontainerd/moby/VERSION/results/STAMP/ (a TSV per
# dockerd: package, test, pass|fail|skip|timeout|crash, seconds; each
# test's log; each dockerd's log; summary.txt with the table below), and
# .../results/latest pointing at it.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/moby.sh
. "$repo/hack/moby.sh"

version=$(moby_version "${1:-}")
moby_flavour "$version"
pkgs=${MOBY_PKGS:-integration/container}
sides=${MOBY_SIDES:-moby lcd}
timeout=${MOBY_TIMEOUT:-300}
log() { echo "[$(date +%T)] $*" >&2; }

[ "$(id -u)" = 0 ] || { echo "test-moby: needs root (dockerd)" >&2; exit 1; }
# What the environment needs beyond make deps: the docker CLI (the client
# only), iptables for the default bridge, tini-static as docker-init, and
# ping (TestStatsNetworkStats pings a container from the host), as in moby's
# dev image.
command -v docker >/dev/null || { echo "test-moby: the docker CLI is missing" >&2; exit 1; }
missing=""
command -v iptables >/dev/null || missing="$missing iptables"
command -v tini-static >/dev/null || missing="$missing tini"
command -v ping >/dev/null || missing="$missing iputils-ping"
command -v containerd >/dev/null || missing="$missing containerd"
command -v runc >/dev/null || missing="$missing runc"
command -v busybox >/dev/null || missing="$missing busybox-static"
if [ -n "$missing" ]; then
	log "installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

cache=$MOBY_CACHE/$version
src_moby=$cache/src-moby
if [ -z "${MOBY_SKIP_BUILD:-}" ]; then
	log "building moby $version's dockerd on libcontainerd ($lcd_dir) and moby's own"
	QUIET=1 "$repo/hack/build-dockerd.sh" "$version"
	QUIET=1 MOBY_ORIGINAL=1 "$repo/hack/build-dockerd.sh" "$version"
fi
# The test binaries need moby's unchanged tree even when nothing is rebuilt.
[ -f "$src_moby/go.mod" ] || moby_tree "$version" "$src_moby" moby
bin=${BIN:-$repo/bin}
declare -A dockerd=([lcd]=$bin/dockerd-$version [moby]=$bin/dockerd-$version-moby)
for side in $sides; do
	[ -x "${dockerd[$side]:-}" ] || { echo "test-moby: no dockerd for side '$side' (${dockerd[$side]:-lcd or moby})" >&2; exit 1; }
done

# The test binaries, from moby's unchanged tree (the suite does not import
# the library); each runs in its package's directory, so the sources and
# testdata it reads are where it looks.
suite_pkgs="" suite_gopaths=""
dirs=$(cd "$src_moby" && go list -tags "$MOBY_BUILD_TAGS" -f '{{if or .TestGoFiles .XTestGoFiles}}{{.Dir}}{{end}}' $(printf './%s ' $pkgs))
[ -n "$dirs" ] || { echo "test-moby: no test package in $pkgs" >&2; exit 1; }
for dir in $dirs; do
	rel=${dir#"$src_moby"/}
	testbin=$cache/tests/${rel//\//-}.test
	mkdir -p "$cache/tests"
	if [ -z "${MOBY_SKIP_BUILD:-}" ] || [ ! -x "$testbin" ]; then
		log "building $rel's test binary"
		(cd "$src_moby" && go test -c -tags "$MOBY_BUILD_TAGS" -o "$testbin" "./$rel")
	fi
	suite_pkgs="$suite_pkgs $dir=$testbin"
	# Plugin tests build their plugins' binaries with GO111MODULE=off into
	# $GOPATH/bin unless there already: build them here, in module mode.
	plugin_cmds=$(cd "$src_moby" && find "$rel" -path '*/cmd/*' -name main.go -printf '%h\n' 2>/dev/null | sort -u)
	if [ -n "$plugin_cmds" ] || [[ $rel == integration/plugin* ]]; then
		gopath=$cache/gopath/${rel//\//-}
		mkdir -p "$gopath/bin"
		for cmd in $plugin_cmds; do
			(cd "$src_moby" && CGO_ENABLED=0 go build -o "$gopath/bin/$(basename "$cmd")" "./$cmd")
		done
		basic=$(cd "$src_moby" && find . -path '*/testutil/fixtures/plugin/basic' -type d | head -1)
		[ -z "$basic" ] || (cd "$src_moby" && CGO_ENABLED=0 go build -o "$gopath/bin/docker-basic-plugin" "$basic")
		suite_gopaths="$suite_gopaths $dir=$gopath"
	fi
done

# The registry the plugin tests push to and pull from (moby's CI copies
# distribution's; v27 calls it registry-v2), built once from its Go module.
registry_version=${MOBY_REGISTRY_VERSION:-v3.0.0}
tools=$MOBY_CACHE/tools/registry-$registry_version
if [ ! -x "$tools/registry" ]; then
	log "building distribution's registry $registry_version"
	GOBIN=$tools go install "github.com/distribution/distribution/v3/cmd/registry@$registry_version"
fi
ln -sfn registry "$tools/registry-v2"

# TestMain's frozen images, from the source.
images=$(find "$src_moby" -path '*testutil/environment/protect.go' -exec awk '/^var frozenImages/ {on = 1} on {print} on && /}/ {exit}' {} \; |
	grep -o '"[^"]*"' | tr -d '"' | tr '\n' ' ')
[ -n "$images" ] || { echo "test-moby: no frozenImages list in moby's testutil/environment" >&2; exit 1; }

# What differs between lines, as moby's CI sets it
# (hack/make/.integration-daemon-start): v29 runs on the containerd image
# store's native snapshotter and lets clients down to API 1.24 in; v25's
# lets them down to 1.12 in (its tests of API 1.19 and 1.23 need it).
driver=vfs suite_env=""
case $version in
v25.*)
	suite_env="DOCKER_MIN_API_VERSION=1.12"
	;;
v2.*)
	driver=native
	suite_env="DOCKER_MIN_API_VERSION=1.24"
	;;
esac

stamp=$(date -u +%Y%m%dT%H%M%SZ)
results=$cache/results/$stamp
mkdir -p "$results"
ln -sfn "$stamp" "$cache/results/latest"
{
	echo "moby $version, ${pkgs}, $(date -u '+%Y-%m-%d %H:%M UTC'), on $(nproc) cores"
	echo "libcontainerd: $lcd_dir ($(lcd_commit))"
	echo "command: ${MOBY_COMMAND:-hack/test-moby.sh $*}"
	echo "frozen images: $images"
	for side in $sides; do echo "$side: ${dockerd[$side]}: $("${dockerd[$side]}" --version)"; done
} >"$results/run.txt"

# run_side SIDE DIR TESTS REPEAT: one dockerd's run, in namespaces of its own.
run_side() {
	local side=$1 out=$2/$1 tests=$3 repeat=$4 state t0 rc
	state=$(mktemp -d /var/tmp/lcd-moby-XXXXXX)
	mkdir -p "$out"
	log "$side: running under ${dockerd[$side]} (state $state, results $out)"
	t0=$(date +%s)
	set +e
	SUITE_DOCKERD=${dockerd[$side]} SUITE_PROXY=$bin/docker-proxy-$version \
		SUITE_STATE=$state SUITE_RESULTS=$out SUITE_SIDE=$side \
		SUITE_PKGS=$suite_pkgs SUITE_GOPATHS=$suite_gopaths SUITE_TESTS=$tests SUITE_REPEAT=$repeat \
		SUITE_TIMEOUT=$timeout SUITE_FLAGS=$runflags SUITE_DRIVER=$driver SUITE_ENV=$suite_env \
		SUITE_IMAGES=$images SUITE_GOCACHE=$(go env GOCACHE) SUITE_PATH=$tools \
		unshare --mount --net --pid --fork --mount-proc --propagation private \
		"$(command -v tini-static)" -- "$repo/hack/moby-suite-ns.sh"
	rc=$?
	set -e
	echo $(($(date +%s) - t0)) >"$out/seconds"
	# Nothing is mounted here any more: the namespace took its mounts along.
	rm -rf --one-file-system "$state"
	[ $rc -eq 0 ] || log "$side: the run ended with status $rc (see $out)"
}

for side in $sides; do
	run_side "$side" "$results" "${MOBY_TESTS:-}" "${MOBY_REPEAT:-1}"
done
# The tests one side passed and the other did not, again on both sides.
recheck=${MOBY_RECHECK:-3}
differ=$("$repo/hack/moby-suite-table.sh" -names "$results")
if [ -n "$differ" ] && [ "$recheck" -gt 0 ]; then
	log "rechecking $recheck times on each side: $differ"
	for side in $sides; do
		run_side "$side" "$results/recheck" "$differ" "$recheck"
	done
fi

"$repo/hack/moby-suite-table.sh" "$results" | tee "$results/summary.txt"
