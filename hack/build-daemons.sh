#!/usr/bin/env bash
# Builds the containerd daemon and its runc shim for each version named, from
# their Go modules, into a cache outside the repo:
#
#   hack/build-daemons.sh [VERSION...]    default: $DAEMON_VERSIONS
#
#   ${LCD_DAEMON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/libcontainerd/daemons}/<version>/
#       containerd  containerd-shim-runc-v2  .complete
#
# Point LCD_CONTAINERD_BIN at such a directory to run the suites against it.
#
# Why a temp module rather than `go install pkg@version`: containerd's go.mod
# has exclude directives, which `go install` refuses. Each build is a module
# that requires the version, built with -mod=mod so its requirements resolve
# through the proxy. no_btrfs: the btrfs snapshotter needs cgo headers we do
# not have or need. The .complete marker is written only after both binaries
# built and report the expected version, so an interrupted build is redone and
# a finished one is reused.
set -euo pipefail

versions=("$@")
[ ${#versions[@]} -gt 0 ] || read -r -a versions <<<"${DAEMON_VERSIONS:-v1.7.35 v2.4.2}"
cache=${LCD_DAEMON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/libcontainerd/daemons}

export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local

# module VERSION: the containerd module path that carries VERSION.
module() {
	case $1 in
	v1.*) echo github.com/containerd/containerd ;;
	v*) echo "github.com/containerd/containerd/v${1:1:1}" ;;
	esac
}

build() {
	local version=$1 mod out work start
	mod=$(module "$version")
	out=$cache/$version
	if [ -f "$out/.complete" ]; then
		echo "daemons: $version cached in $out"
		return 0
	fi
	start=$(date +%s)
	echo "daemons: building $mod@$version into $out"
	work=$(mktemp -d /tmp/lcd-daemon-XXXXXX)
	# A subshell so the temp module is removed however the build ends.
	(
		trap 'rm -rf "$work"' EXIT
		cd "$work"
		go mod init lcd-daemon-build >/dev/null 2>&1
		go mod edit -require="$mod@$version"
		mkdir -p "$out.tmp"
		for cmd in containerd containerd-shim-runc-v2; do
			go build -tags no_btrfs -trimpath \
				-ldflags "-X $mod/version.Version=$version -X $mod/version.Revision=module" \
				-o "$out.tmp/$cmd" "$mod/cmd/$cmd"
		done
		got=$("$out.tmp/containerd" --version)
		case $got in
		*" $version "*) ;;
		*)
			echo "daemons: built containerd reports '$got', want $version" >&2
			exit 1
			;;
		esac
	)
	rm -rf "$out"
	mv "$out.tmp" "$out"
	touch "$out/.complete"
	echo "daemons: $version built in $(($(date +%s) - start))s"
}

for v in "${versions[@]}"; do
	build "$v"
done
