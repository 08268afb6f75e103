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
# source comes from the Go module proxy (hack/moby.sh wires it, as for make
# dockerd). LIBCONTAINERD_DIR=/other/checkout checks another checkout of the
# library. The Go build cache is reused across runs; the temp copies are
# removed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/moby.sh
. "$repo/hack/moby.sh"
versions=("$@")
[ ${#versions[@]} -gt 0 ] || read -r -a versions <<<"${DROPIN_VERSIONS:-$MOBY_LINES}"
tags=$MOBY_BUILD_TAGS

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
	local version=$1 dir start t0 built=fail vetted=fail tested=fail ran=fail
	local mobymod mobypkg libdir old depfile testpkgs new newdir runconfig runflags
	moby_flavour "$version"
	start=$(date +%s)
	dir=$work/$version
	if ! moby_tree "$version" "$dir" lcd; then
		echo "--- $version: cannot make moby's source a tree on this library" >&2
		results+=("$(printf '%-14s %-6s %-6s %-6s %-6s %5ss' "$version" fail - - - $(($(date +%s) - start)))")
		return 1
	fi

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
