#!/usr/bin/env bash
# Runs a dockerd built on this library (hack/test-dropin.sh builds it) for
# real: its own private containerd started through our supervisor package,
# a busybox image imported from the host's busybox-static (no pulls), and a
# container's life through the docker CLI: exit codes, stdin, exec, pause,
# stop, remove. Everything lives in a temp dir, removed afterwards.
#
#   hack/dropin-run.sh /path/to/dockerd [DAEMON_JSON]
#
# DAEMON_JSON is the daemon's config file content (default {}): moby v29
# needs {"features": {"time-namespaces": false}} on runc 1.1.
set -euo pipefail

dockerd=$1
config=${2:-"{}"}
command -v docker >/dev/null || { echo "dropin-run: the docker CLI is missing" >&2; exit 1; }
busybox=$(command -v busybox) || { echo "dropin-run: busybox is missing (make deps)" >&2; exit 1; }

dir=$(mktemp -d /tmp/lcd-dockerd-XXXXXX)
sock=$dir/docker.sock
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	umount -R "$dir" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

fail() {
	echo "dropin-run: $*" >&2
	echo "--- dockerd log (last 30 lines):" >&2
	tail -30 "$dir/dockerd.log" >&2 || true
	exit 1
}

# No bridge, no iptables: nothing on this host's network is touched. An
# explicit config file, so the host's /etc/docker/daemon.json is not read.
echo "$config" >"$dir/daemon.json"
"$dockerd" --config-file "$dir/daemon.json" --data-root "$dir/root" --exec-root "$dir/exec" --pidfile "$dir/dockerd.pid" \
	-H "unix://$sock" --bridge=none --iptables=false --ip6tables=false --userland-proxy=false --storage-driver=vfs \
	>"$dir/dockerd.log" 2>&1 &
pid=$!
export DOCKER_HOST=unix://$sock
for _ in $(seq 1 300); do
	docker version >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || fail "dockerd exited"
	sleep 0.1
done
docker version >/dev/null 2>&1 || fail "dockerd did not serve within 30 s"

mkdir -p "$dir/rootfs/bin"
cp "$busybox" "$dir/rootfs/bin/busybox"
for a in sh echo cat sleep; do ln -s busybox "$dir/rootfs/bin/$a"; done
tar -C "$dir/rootfs" -c . | docker import - lcd/busybox >/dev/null || fail "docker import"

want() { # want WHAT GOT EXPECTED
	[ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}

set +e
out=$(timeout 60 docker run --rm --net=none lcd/busybox sh -c 'echo hello; exit 3')
rc=$?
set -e
want "run output" "$out" hello
want "run exit code" "$rc" 3

want "stdin through the FIFO, closed at EOF" "$(echo piped | timeout 60 docker run --rm -i --net=none lcd/busybox cat)" piped

timeout 60 docker run -d --name long --net=none lcd/busybox sleep 300 >/dev/null || fail "docker run -d"
set +e
timeout 60 docker exec long sh -c 'exit 5'
rc=$?
set -e
want "exec exit code" "$rc" 5
want "exec with stdin" "$(echo to-exec | timeout 60 docker exec -i long cat)" to-exec
timeout 60 docker pause long >/dev/null || fail "docker pause"
want "paused state" "$(docker inspect -f '{{.State.Status}}' long)" paused
timeout 60 docker unpause long >/dev/null || fail "docker unpause"
timeout 60 docker stop -t 1 long >/dev/null || fail "docker stop"
want "stopped state" "$(docker inspect -f '{{.State.Status}}' long)" exited
want "stopped exit code" "$(docker inspect -f '{{.State.ExitCode}}' long)" 137
timeout 60 docker rm long >/dev/null || fail "docker rm"
want "containers left" "$(docker ps -aq | wc -l)" 0
echo "dockerd ran: run, exit codes, stdin, exec, pause, stop, rm"
