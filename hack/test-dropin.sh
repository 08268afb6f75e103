#!/usr/bin/env bash
# Drop-in check: moby's own source, with libcontainerd/ removed and only the
# import prefix rewritten to this checkout, builds dockerd, vets every package
# that imports the library, passes moby's own unit tests of the packages
# built on it, inside moby's own dependency graph (its vendor.mod), and the
# dockerd it built runs containers (hack/dropin-run.sh).
#
#   hack/test-dropin.sh [VERSION...]      default: the versions in DROPIN_VERSIONS
#
# The source comes from the Go module proxy (github.com/docker/docker@VERSION+incompatible).
# The Go build cache is reused across runs; the temp copies are removed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
versions=("$@")
[ ${#versions[@]} -gt 0 ] || read -r -a versions <<<"${DROPIN_VERSIONS:-v25.0.8 v26.1.5 v27.5.1}"
tags="exclude_graphdriver_btrfs exclude_graphdriver_devicemapper no_btrfs"
old=github.com/docker/docker/libcontainerd
new=github.com/lcdkit/libcontainerd

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
	start=$(date +%s)
	src=$(go mod download -json "github.com/docker/docker@${version}+incompatible" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$src" ] || [ ! -f "$src/vendor.mod" ]; then
		echo "--- $version: cannot download moby's source" >&2
		results+=("$(printf '%-9s %-6s %-6s %-6s %-6s %5ss' "$version" fail - - - $(($(date +%s) - start)))")
		return 1
	fi
	dir=$work/$version
	cp -r "$src" "$dir"
	chmod -R u+w "$dir"
	rm -rf "$dir/vendor" "$dir/libcontainerd"
	mv "$dir/vendor.mod" "$dir/go.mod"
	mv "$dir/vendor.sum" "$dir/go.sum"
	grep -rlZ --include='*.go' "$old" "$dir" | xargs -0 -r sed -i "s#$old#$new#g"
	if grep -rq --include='*.go' "$old" "$dir"; then
		echo "--- $version: the prefix is still imported after the rewrite" >&2
		return 1
	fi
	(cd "$dir" && go mod edit -require="$new@v0.0.0" -replace="$new=$repo")

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

	if (cd "$dir" && step tests "$work/$version.test.log" go test -count=1 -tags "$tags" ./container/... ./plugin/executor/containerd/...); then
		tested="ok"
	else
		ok=1
	fi
	if [ "$built" = ok ] && step run "$work/$version.run.log" "$repo/hack/dropin-run.sh" "$work/dockerd-$version"; then
		ran="ok"
	else
		ok=1
	fi
	results+=("$(printf '%-9s %-6s %-6s %-6s %-6s %5ss (build %ss, %d packages vetted)' "$version" "$built" "$vetted" "$tested" "$ran" $(($(date +%s) - start)) "$tb" "$(echo "$pkgs" | wc -w)")")
	rm -f "$work/dockerd-$version"
	rm -rf "$dir"
	return $ok
}

for version in "${versions[@]}"; do
	echo "== moby $version"
	check "$version" || failed=1
done

echo
printf '%-9s %-6s %-6s %-6s %-6s %s\n' MOBY BUILD VET TESTS RUN TIME
printf '%s\n' "${results[@]}"
if [ $failed -ne 0 ]; then
	echo "drop-in check FAILED" >&2
	exit 1
fi
echo "drop-in check passed for ${versions[*]}"
