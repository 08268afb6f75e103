#!/usr/bin/env bash
# Drop-in check: moby's own source, with libcontainerd/ removed and only the
# import prefix rewritten to this checkout, builds dockerd, vets every package
# that imports the library, passes moby's own unit tests of the packages
# built on it, inside moby's own dependency graph (its vendor.mod), and the
# dockerd it built runs containers (hack/dropin-run.sh).
#
#   hack/test-dropin.sh [VERSION...]      default: the versions in DROPIN_VERSIONS
#
# VERSION is a moby release: v25.x–v27.x run on this module (containerd v1.7
# client), v28.x on its containerd v2 flavour (v2/), both from
# github.com/docker/docker@VERSION+incompatible with libcontainerd/ at the
# root; v2.x (moby v29, github.com/moby/moby/v2@VERSION, e.g.
# v2.0.0-beta.24) on the v2 flavour too, with libcontainerd at
# daemon/internal/libcontainerd and a real go.mod instead of vendor.mod. The
# source comes from the Go module proxy. The Go build cache is reused across
# runs; the temp copies are removed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
versions=("$@")
[ ${#versions[@]} -gt 0 ] || read -r -a versions <<<"${DROPIN_VERSIONS:-v25.0.8 v26.1.5 v27.5.1 v28.5.2 v2.0.0-beta.24}"
tags="exclude_graphdriver_btrfs exclude_graphdriver_devicemapper no_btrfs"

# flavour VERSION: sets what differs between moby lines: the module and
# directory moby's libcontainerd has, its dependency file, the packages whose
# unit tests use the library, this repo's module that replaces it (and where
# it lives), and extra dockerd flags for the run.
flavour() {
	case $1 in
	v2.*)
		mobymod=github.com/moby/moby/v2@$1
		libdir=daemon/internal/libcontainerd
		old=github.com/moby/moby/v2/$libdir
		depfile=go.mod
		testpkgs="./daemon/container/... ./daemon/internal/plugin/executor/containerd/..."
		new=github.com/lcdkit/libcontainerd/v2
		newdir=$repo/v2
		# moby v29 gives every container a time namespace, which runc
		# 1.1 (Debian 12's) refuses; its own escape hatch turns it off.
		runconfig='{"features": {"time-namespaces": false}}'
		;;
	*)
		mobymod=github.com/docker/docker@$1+incompatible
		libdir=libcontainerd
		old=github.com/docker/docker/$libdir
		depfile=vendor.mod
		testpkgs="./container/... ./plugin/executor/containerd/..."
		runconfig='{}'
		case $1 in
		v2[5-7].*) new=github.com/lcdkit/libcontainerd newdir=$repo ;;
		*) new=github.com/lcdkit/libcontainerd/v2 newdir=$repo/v2 ;;
		esac
		;;
	esac
}

export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local
work=$(mktemp -d /tmp/lcd-dropin-XXXXXX)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

results=()
failed=0

# step NAME LOG CMD...: runs CMD with its output in LOG; on failure shows the
# first errors and returns 1.
step() {
	local name=$1 log=$2
	shift 2
	if "$@" >"$log" 2>&1; then
		return 0
	fi
	echo "--- $version: $name failed; first errors:" >&2
	grep -v -e '^go: downloading' -e '^go: finding' "$log" | head -40 >&2
	return 1
}

check() {
	local version=$1 src dir start t0 built=fail vetted=fail tested=fail ran=fail
	local mobymod libdir old depfile testpkgs new newdir runconfig
	flavour "$version"
	start=$(date +%s)
	src=$(go mod download -json "$mobymod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$src" ] || [ ! -f "$src/$depfile" ]; then
		echo "--- $version: cannot download moby's source" >&2
		results+=("$(printf '%-14s %-6s %-6s %-6s %-6s %5ss' "$version" fail - - - $(($(date +%s) - start)))")
		return 1
	fi
	dir=$work/$version
	cp -r "$src" "$dir"
	chmod -R u+w "$dir"
	rm -rf "$dir/vendor" "${dir:?}/$libdir"
	if [ "$depfile" = vendor.mod ]; then
		mv "$dir/vendor.mod" "$dir/go.mod"
		mv "$dir/vendor.sum" "$dir/go.sum"
	fi
	grep -rlZ --include='*.go' "$old" "$dir" | xargs -0 -r sed -i "s#$old#$new#g"
	if grep -rq --include='*.go' "$old" "$dir"; then
		echo "--- $version: the prefix is still imported after the rewrite" >&2
		return 1
	fi
	# A /v2 module path needs a v2 version, even for a replaced one.
	local newver=v0.0.0
	[ "${new%/v2}" = "$new" ] || newver=v2.0.0
	(cd "$dir" && go mod edit -require="$new@$newver" -replace="$new=$newdir")

	local ok=0
	t0=$(date +%s)
	if (cd "$dir" && step build "$work/$version.build.log" go build -tags "$tags" -o "$work/dockerd-$version" ./cmd/dockerd); then
		built="ok"
	else
		ok=1
	fi
	local tb=$(($(date +%s) - t0))

	# Every package whose code or tests import the library.
	local pkgs
	pkgs=$(cd "$dir" && go list -tags "$tags" -f '{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./... 2>/dev/null |
		awk -v p="$new" '{for (i = 2; i <= NF; i++) if (index($i, p) == 1) {print $1; break}}')
	if [ -z "$pkgs" ]; then
		echo "--- $version: no package imports $new (rewrite failed?)" >&2
		ok=1
	elif (cd "$dir" && step vet "$work/$version.vet.log" go vet -tags "$tags" $pkgs); then
		vetted="ok"
	else
		ok=1
	fi

	if (cd "$dir" && step tests "$work/$version.test.log" go test -count=1 -tags "$tags" $testpkgs); then
		tested="ok"
	else
		ok=1
	fi
	if [ "$built" = ok ] && step run "$work/$version.run.log" "$repo/hack/dropin-run.sh" "$work/dockerd-$version" "$runconfig"; then
		ran="ok"
	else
		ok=1
	fi
	results+=("$(printf '%-14s %-6s %-6s %-6s %-6s %5ss (build %ss, %d packages vetted; on %s)' "$version" "$built" "$vetted" "$tested" "$ran" $(($(date +%s) - start)) "$tb" "$(echo "$pkgs" | wc -w)" "$new")")
	rm -f "$work/dockerd-$version"
	rm -rf "$dir"
	return $ok
}

for version in "${versions[@]}"; do
	echo "== moby $version"
	check "$version" || failed=1
done

echo
printf '%-14s %-6s %-6s %-6s %-6s %s\n' MOBY BUILD VET TESTS RUN TIME
printf '%s\n' "${results[@]}"
if [ $failed -ne 0 ]; then
	echo "drop-in check FAILED" >&2
	exit 1
fi
echo "drop-in check passed for ${versions[*]}"
