#!/usr/bin/env bash
# make dockerd: moby's dockerd built on this library, wired exactly as
# hack/test-dropin.sh wires it (hack/moby.sh: moby's source from the Go
# module proxy, its libcontainerd removed, the import prefix rewritten, go.mod
# requiring and replacing this library), and moby's docker-proxy from the
# same source (it does not use the library).
#
#   hack/build-dockerd.sh VERSION     bin/dockerd-VERSION, bin/docker-proxy-VERSION
#
# VERSION is one of the lines test-dropin checks (v25.0.8 v26.1.5 v27.5.1 on
# this module, v28.5.2 and v2.0.0-beta.24 alias v29 on v2/). MOBY_ORIGINAL=1
# builds moby's own dockerd from the same source and the same dependency
# resolution instead, unchanged, into bin/dockerd-VERSION-moby, for like-for-
# like comparisons. LIBCONTAINERD_DIR builds on another checkout of the
# library; BIN puts the binaries elsewhere; QUIET=1 skips the how-to-run text.
# The source trees stay in the cache (~/.cache/libcontainerd/moby/VERSION/)
# for make test-moby, which builds moby's test binaries from them.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=hack/moby.sh
. "$repo/hack/moby.sh"

version=$(moby_version "${1:-}")
kind=lcd suffix=""
if [ -n "${MOBY_ORIGINAL:-}" ] && [ "${MOBY_ORIGINAL}" != 0 ]; then
	kind=moby suffix=-moby
fi
bin=${BIN:-$repo/bin}
mkdir -p "$bin"
bin=$(cd "$bin" && pwd)
moby_flavour "$version"

tree=$MOBY_CACHE/$version/src-$kind
out=$bin/dockerd-$version$suffix
start=$(date +%s)
moby_tree "$version" "$tree" "$kind"
ldflags=$(moby_ldflags "$version" "$kind")
# Built beside and renamed, so a failed build leaves no stale binary behind
# under the name.
(cd "$tree" && go build -tags "$MOBY_BUILD_TAGS" -ldflags "$ldflags" -o "$out.tmp" ./cmd/dockerd)
mv "$out.tmp" "$out"
(cd "$tree" && go build -tags "$MOBY_BUILD_TAGS" -ldflags "$ldflags" -o "$bin/docker-proxy-$version.tmp" ./cmd/docker-proxy)
mv "$bin/docker-proxy-$version.tmp" "$bin/docker-proxy-$version"
took=$(($(date +%s) - start))

if [ "$kind" = lcd ]; then
	what="moby $version's dockerd on libcontainerd ($new at $newdir, $(lcd_commit))"
else
	what="moby $version's own dockerd, unchanged (its $libdir), for comparison"
fi
echo "built $out in ${took}s: $what"
echo "built $bin/docker-proxy-$version (moby's userland proxy, same source)"
[ -n "${QUIET:-}" ] && exit 0

cfg=""
[ "$runconfig" = '{}' ] || cfg="
  On Debian 12's runc 1.1 this line needs $runconfig in its
  daemon.json (/etc/docker/daemon.json, or --config-file FILE), or
  the flags $runflags."
cat <<EOF

Run it as root, like any dockerd (it needs runc and containerd on PATH;
Debian: apt-get install containerd runc). Put the proxy on PATH first:
  install -m 755 $bin/docker-proxy-$version /usr/local/bin/docker-proxy
  (or run dockerd with --userland-proxy=false); --init wants docker-init
  on PATH (Debian's tini package: ln -s /usr/bin/tini-static docker-init).
With the containerd dockerd starts and supervises itself (the default):
  $out --data-root /var/lib/docker --exec-root /var/run/docker
With the host's containerd (Debian's containerd.service):
  $out --containerd /run/containerd/containerd.sock
--live-restore keeps the containers running while dockerd is stopped,
restarted or upgraded; it reattaches to them when it comes back.$cfg
Then: docker -H unix:///var/run/docker.sock run --rm busybox echo hello
EOF
