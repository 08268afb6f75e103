# shellcheck shell=bash
# What hack/test-dropin.sh, hack/build-dockerd.sh and hack/test-moby.sh share:
# which moby lines exist, where each keeps its libcontainerd, and how moby's
# source (from the Go module proxy) becomes a tree that builds on this
# library, or on its own libcontainerd for comparison. Sourced, not run.
#
# The library checkout a tree is wired to is $LIBCONTAINERD_DIR (default:
# the checkout this file lives in), so a run can test another worktree.

moby_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
lcd_dir=$(cd "${LIBCONTAINERD_DIR:-$moby_repo}" && pwd)
[ -f "$lcd_dir/go.mod" ] && [ -f "$lcd_dir/v2/go.mod" ] || {
	echo "moby.sh: $lcd_dir is not a libcontainerd checkout (LIBCONTAINERD_DIR)" >&2
	return 1
}

# The lines test-dropin checks; v29 is moby's github.com/moby/moby/v2 module.
MOBY_LINES="v25.0.8 v26.1.5 v27.5.1 v28.5.2 v2.0.0-beta.24"
MOBY_BUILD_TAGS="exclude_graphdriver_btrfs exclude_graphdriver_devicemapper no_btrfs"
# The cache the built trees and suite results live in, outside the repo.
MOBY_CACHE=${LCD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/libcontainerd}/moby

export GOWORK=off GOFLAGS=-mod=mod GOTOOLCHAIN=local

# moby_version NAME: prints the line NAME names (one of MOBY_LINES; v29 is
# an alias of v2.0.0-beta.24), or fails listing them.
moby_version() {
	local v
	[ "$1" = v29 ] && { echo v2.0.0-beta.24; return 0; }
	for v in $MOBY_LINES; do
		[ "$v" = "$1" ] && { echo "$v"; return 0; }
	done
	echo "unknown moby version '${1:-}': one of $MOBY_LINES (v29 = v2.0.0-beta.24)" >&2
	return 1
}

# moby_flavour VERSION: sets what differs between moby lines: the module
# (mobymod) and its Go path (mobypkg), the directory its libcontainerd has
# (libdir) and its import path (old), its dependency file (depfile), the
# packages whose unit tests use the library (testpkgs), this repo's module
# that replaces it (new) and where it lives (newdir), and the daemon.json a
# run on Debian's runc needs (runconfig), or the same as flags (runflags).
moby_flavour() {
	case $1 in
	v2.*)
		mobymod=github.com/moby/moby/v2@$1
		mobypkg=github.com/moby/moby/v2
		libdir=daemon/internal/libcontainerd
		depfile=go.mod
		testpkgs="./daemon/container/... ./daemon/internal/plugin/executor/containerd/..."
		new=github.com/lcdkit/libcontainerd/v2
		newdir=$lcd_dir/v2
		# moby v29 gives every container a time namespace, which runc
		# 1.1 (Debian 12's) refuses; its own escape hatch turns it off.
		runconfig='{"features": {"time-namespaces": false}}'
		runflags='--feature time-namespaces=false'
		;;
	*)
		mobymod=github.com/docker/docker@$1+incompatible
		mobypkg=github.com/docker/docker
		libdir=libcontainerd
		depfile=vendor.mod
		testpkgs="./container/... ./plugin/executor/containerd/..."
		runconfig='{}'
		runflags=''
		case $1 in
		v2[5-7].*) new=github.com/lcdkit/libcontainerd newdir=$lcd_dir ;;
		*) new=github.com/lcdkit/libcontainerd/v2 newdir=$lcd_dir/v2 ;;
		esac
		;;
	esac
	old=$mobypkg/$libdir
}

# moby_source VERSION: prints the directory of moby's source in the module
# cache, downloading it through the Go module proxy first if needed.
moby_source() {
	local mobymod mobypkg libdir old depfile testpkgs new newdir runconfig runflags src
	moby_flavour "$1"
	src=$(go mod download -json "$mobymod" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	if [ -z "$src" ] || [ ! -f "$src/$depfile" ]; then
		echo "moby.sh: cannot download moby $1 ($mobymod)" >&2
		return 1
	fi
	echo "$src"
}

# moby_tree VERSION DIR KIND: makes DIR a buildable copy of moby's source,
# with vendor.mod as its go.mod where moby has one (the same dependency
# resolution for both kinds). KIND lcd: libcontainerd/ removed, its import
# prefix rewritten to this library, and go.mod requiring and replacing it
# with $LIBCONTAINERD_DIR; KIND moby: nothing else changed.
moby_tree() {
	local version=$1 dir=$2 kind=$3 src
	local mobymod mobypkg libdir old depfile testpkgs new newdir runconfig runflags
	moby_flavour "$version"
	src=$(moby_source "$version") || return 1
	if [ -e "$dir" ]; then
		chmod -R u+w "$dir"
		rm -rf "$dir"
	fi
	mkdir -p "$(dirname "$dir")"
	cp -r "$src" "$dir"
	chmod -R u+w "$dir"
	rm -rf "$dir/vendor"
	if [ "$depfile" = vendor.mod ]; then
		mv "$dir/vendor.mod" "$dir/go.mod"
		mv "$dir/vendor.sum" "$dir/go.sum"
	fi
	[ "$kind" = moby ] && return 0
	rm -rf "${dir:?}/$libdir"
	grep -rlZ --include='*.go' "$old" "$dir" | xargs -0 -r sed -i "s#$old#$new#g"
	if grep -rq --include='*.go' "$old" "$dir"; then
		echo "moby.sh: $version: the prefix $old is still imported after the rewrite" >&2
		return 1
	fi
	# A /v2 module path needs a v2 version, even for a replaced one.
	local newver=v0.0.0
	[ "${new%/v2}" = "$new" ] || newver=v2.0.0
	(cd "$dir" && go mod edit -require="$new@$newver" -replace="$new=$newdir")
}

# lcd_commit: the library checkout's commit, -dirty when its Go sources or
# module files differ from it (docs and scripts do not make a dockerd).
lcd_commit() {
	local c
	c=$(git -C "$lcd_dir" rev-parse --short HEAD 2>/dev/null) || { echo unknown; return; }
	git -C "$lcd_dir" diff --quiet HEAD -- '*.go' '*go.mod' '*go.sum' || c=$c-dirty
	echo "$c"
}

# moby_ldflags VERSION KIND: the version stamps moby's own build sets
# (hack/make/.go-autogen); the commit names the library's when KIND is lcd.
moby_ldflags() {
	local mobymod mobypkg libdir old depfile testpkgs new newdir runconfig runflags commit
	moby_flavour "$1"
	if [ "$2" = lcd ]; then
		commit="libcontainerd-$(lcd_commit)"
	else
		commit=moby
	fi
	echo "-X $mobypkg/dockerversion.Version=${1#v} -X $mobypkg/dockerversion.GitCommit=$commit"
}
