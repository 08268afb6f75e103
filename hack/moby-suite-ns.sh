#!/usr/bin/env bash
# One side of make test-moby: a dockerd and moby's integration test binaries
# against it, inside namespaces of their own. hack/test-moby.sh starts it as
#
#   unshare --mount --net --pid --fork --mount-proc --propagation private \
#       tini-static -- hack/moby-suite-ns.sh
#
# with its parameters in the environment (SUITE_*). Everything it mounts is
# private to the namespace and goes away with it, and so does every process
# it started (dockerd, its containerd, the shims, the containers, the
# daemons the tests start): the host keeps no mount, no bridge, no iptables
# rule and no process from a run. Like moby's CI (hack/dind and
# hack/make/.integration-daemon-start): / is rshared, /run and /tmp are
# fresh, one dockerd serves the suite with the containerd it starts itself
# at /var/run/docker/containerd/containerd.sock (the socket the daemons the
# tests start connect to), and `dockerd` on PATH is the daemon under test.
#
# SUITE_DOCKERD, SUITE_PROXY    the dockerd and docker-proxy under test
# SUITE_STATE                   a fresh directory for the daemons' state
# SUITE_RESULTS                 where the TSV and the logs go
# SUITE_SIDE                    lcd or moby: the TSV's name
# SUITE_PKGS                    "DIR=BINARY ..." test binaries, each run in DIR
# SUITE_GOPATHS                 "DIR=GOPATH ..." the prebuilt plugin binaries' GOPATH
# SUITE_TESTS                   names to run (default: every top-level test)
# SUITE_REPEAT                  runs of each test (default 1)
# SUITE_TIMEOUT                 seconds per test
# SUITE_PATH                    more tools for the tests (distribution's registry)
# SUITE_IMAGES                  the frozen images' names (TestMain's list)
# SUITE_GOCACHE                 the Go build cache (plugin tests may build)
# SUITE_FLAGS                   flags for every dockerd of the run (v29 on
#                               runc 1.1: --feature time-namespaces=false)
# SUITE_DRIVER                  storage driver (moby CI's: vfs; v29: native)
# SUITE_ENV                     "K=V ..." for dockerd and the tests (v29:
#                               DOCKER_MIN_API_VERSION=1.24, v25: 1.12,
#                               as their CI)
set -euo pipefail

state=$SUITE_STATE res=$SUITE_RESULTS side=$SUITE_SIDE
log() { echo "[$(date +%T)] $*" >&2; }

# --- the namespace: a private /sys for the new network namespace (libnetwork
# reads /sys/class/net), keeping the host's cgroup mounts; then CI's dind.
mkdir -p "$state/cg"
mount --rbind /sys/fs/cgroup "$state/cg"
mount -t sysfs sysfs /sys
mount --rbind "$state/cg" /sys/fs/cgroup
umount -R -l "$state/cg"
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
# /etc/docker (daemon.json, plugin specs the authz tests write) is the run's
# own; on the host it may not exist, so an empty directory is the mount
# point (the only thing a run leaves on the host).
mkdir -p /etc/docker
mount -t tmpfs -o mode=755 tmpfs /etc/docker
mount --make-rshared /
# The network: loopback, and an eth0 as CI's containers have (tests look up
# its address, e.g. TestNetworkNat), one end of a veth pair with no route
# beyond it: the namespace reaches nothing outside.
ip link set lo up
ip link add eth0 type veth peer name eth0-peer
ip addr add 10.255.0.2/24 dev eth0
ip link set eth0 up
ip link set eth0-peer up

mkdir -p "$state/bin" "$state/dest" "$state/home" "$res/logs"
# The daemons the tests start ignore daemon.json (v29 passes --config-file
# /dev/null), so what every daemon needs goes on its command line: `dockerd`
# on PATH is then a wrapper that execs the daemon under test with it. A
# test's own config file that sets "features" gets its way (dockerd refuses
# features from both a flag and the file): those tests start no container.
if [ -n "${SUITE_FLAGS:-}" ]; then
	cat >"$state/bin/dockerd" <<EOF
#!/bin/sh
cfg="" prev=""
for a in "\$@"; do
	[ "\$prev" = --config-file ] && cfg=\$a
	case \$a in --config-file=*) cfg=\${a#--config-file=} ;; esac
	prev=\$a
done
if [ -n "\$cfg" ] && [ "\$cfg" != /dev/null ] && grep -q '"features"' "\$cfg" 2>/dev/null; then
	exec $SUITE_DOCKERD "\$@"
fi
exec $SUITE_DOCKERD $SUITE_FLAGS "\$@"
EOF
	chmod 755 "$state/bin/dockerd"
else
	ln -s "$SUITE_DOCKERD" "$state/bin/dockerd"
fi
ln -s "$SUITE_PROXY" "$state/bin/docker-proxy"
ln -s "$(command -v tini-static)" "$state/bin/docker-init"
export PATH=$state/bin${SUITE_PATH:+:$SUITE_PATH}:$PATH
read -r -a extra_env <<<"${SUITE_ENV:-}"

dockerd_pid=
start_dockerd() {
	env "${extra_env[@]}" dockerd --debug --host unix:///var/run/docker.sock \
		--data-root "$state/root" --storage-driver "$SUITE_DRIVER" \
		--pidfile /var/run/docker.pid --userland-proxy=true \
		>>"$res/dockerd.log" 2>&1 &
	dockerd_pid=$!
	local i
	for i in $(seq 1 600); do
		DOCKER_HOST=unix:///var/run/docker.sock docker version >/dev/null 2>&1 && return 0
		kill -0 "$dockerd_pid" 2>/dev/null || break
		sleep 0.1
	done
	log "dockerd did not serve; its log ends:"
	tail -20 "$res/dockerd.log" >&2
	return 1
}
export DOCKER_HOST=unix:///var/run/docker.sock
start_dockerd
log "$side: $(docker version -f 'dockerd {{.Server.Version}} ({{.Server.GitCommit}}), API {{.Server.APIVersion}}'), $(docker info -f '{{.Driver}}, containerd {{.ContainerdCommit.ID}}')"

# --- the frozen images, offline: one busybox image (Debian's busybox-static,
# every applet linked, the busybox image's users and groups) under every name
# the suites' TestMain expects, so that nothing is pulled.
rootfs=$state/rootfs
mkdir -p "$rootfs"/{bin,etc,home,root,tmp,var/spool/mail,var/www,usr/sbin}
chmod 1777 "$rootfs/tmp"
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for applet in $("$rootfs/bin/busybox" --list); do
	[ -e "$rootfs/bin/$applet" ] || ln -s busybox "$rootfs/bin/$applet"
done
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:daemon
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
EOF
# Debian's busybox-static has no addgroup/adduser applets, which the suites'
# Dockerfiles use (RUN addgroup -g GID G && adduser -D [-u UID] [-G G] U):
# two small scripts do what those forms ask.
cat >"$rootfs/bin/addgroup" <<'EOF'
#!/bin/sh
# addgroup [-g GID] GROUP (the form moby's tests use)
gid=""
while getopts g:S opt; do case $opt in g) gid=$OPTARG ;; esac; done
shift $((OPTIND - 1))
[ -n "$gid" ] || gid=$(($(cut -d: -f3 /etc/group | sort -n | awk '$1 < 60000' | tail -1) + 1))
echo "$1:x:$gid:" >>/etc/group
EOF
cat >"$rootfs/bin/adduser" <<'EOF'
#!/bin/sh
# adduser -D [-u UID] [-G GROUP] USER (the form moby's tests use)
uid="" group=""
while getopts Du:G:h:s:S opt; do case $opt in u) uid=$OPTARG ;; G) group=$OPTARG ;; esac; done
shift $((OPTIND - 1))
[ -n "$uid" ] || uid=$(($(cut -d: -f3 /etc/passwd | sort -n | awk '$1 < 60000' | tail -1) + 1))
if [ -n "$group" ]; then
	gid=$(awk -F: -v g="$group" '$1 == g { print $3 }' /etc/group)
else
	gid=$uid
	echo "$1:x:$gid:" >>/etc/group
fi
echo "$1:x:$uid:$gid:Linux User,,,:/home/$1:/bin/sh" >>/etc/passwd
mkdir -p "/home/$1" && chown "$uid:$gid" "/home/$1"
EOF
chmod 755 "$rootfs/bin/addgroup" "$rootfs/bin/adduser"
tar -C "$rootfs" -cf "$state/busybox.tar" .
# The hello-world images: the same busybox with hello-world's /hello, the
# file a test mounts the image for (TestLiveRestore's image mount), and
# its command.
cat >"$rootfs/hello" <<'EOF'
#!/bin/sh
printf '\nHello from Docker!\nThis message shows that your installation appears to be working correctly.\n\n'
EOF
chmod 755 "$rootfs/hello"
tar -C "$rootfs" -cf "$state/hello.tar" .
docker import --change 'CMD ["sh"]' "$state/busybox.tar" busybox:latest >/dev/null
# A name that says its platform gets it (the platform tests read it back);
# arm32v7/hello-world is in CI's frozen set too (moby's Dockerfile), for
# TestCreatePlatformSpecificImageNoPlatform.
for name in $SUITE_IMAGES arm32v7/hello-world:latest; do
	tar=$state/busybox.tar cmd='CMD ["sh"]' platform=""
	case $name in
	busybox:latest) continue ;;
	*hello-world*) tar=$state/hello.tar cmd='CMD ["/hello"]' ;;
	esac
	case $name in
	*:amd64) platform=linux/amd64 ;;
	*:arm64) platform=linux/arm64 ;;
	arm32v7/*) platform=linux/arm/v7 ;;
	esac
	if [ "$tar" = "$state/busybox.tar" ] && [ -z "$platform" ]; then
		docker tag busybox:latest "$name"
	else
		docker import --change "$cmd" ${platform:+--platform "$platform"} "$tar" "$name" >/dev/null
	fi
done
log "$side: images: $(docker images --format '{{.Repository}}:{{.Tag}}' | sort | tr '\n' ' ')"

# --- the tests, each top-level one in a process of its own, with the
# environment moby's CI gives them (hack/make/.integration-test-helpers).
tsv=$res/$side.tsv
: >"$tsv"
declare -A gopaths=()
for kv in ${SUITE_GOPATHS:-}; do gopaths[${kv%%=*}]=${kv#*=}; done

for kv in $SUITE_PKGS; do
	dir=${kv%%=*} bin=${kv#*=}
	pkg=${dir#*/integration/}
	pkg=integration/$pkg
	if [ -n "${SUITE_TESTS:-}" ]; then
		tests=$SUITE_TESTS
	else
		# -test.list runs TestMain (it needs the daemon) but no test.
		tests=$(cd "$dir" && "$bin" -test.list '^Test' 2>/dev/null | grep '^Test' || true)
	fi
	gopath=${gopaths[$dir]:-$state/gopath}
	declare -A here=()
	for t in $tests; do
		# A name from SUITE_TESTS may belong to another package.
		if [ -z "${SUITE_TESTS:-}" ] || (cd "$dir" && "$bin" -test.list "^$t\$" 2>/dev/null | grep -qx "$t"); then
			here[$t]=1
		fi
	done
	for t in $(for _ in $(seq 1 "${SUITE_REPEAT:-1}"); do echo $tests; done); do
		[ -n "${here[$t]:-}" ] || continue
		if ! kill -0 "$dockerd_pid" 2>/dev/null; then
			log "$side: dockerd is gone before $pkg $t; restarting it"
			echo "dockerd gone before $pkg $t" >>"$res/notes"
			start_dockerd || true
		fi
		tlog=$res/logs/${pkg//\//_}.$t.log
		[ ! -e "$tlog" ] || tlog=$(mktemp --suffix=.log "$res/logs/${pkg//\//_}.$t.XXXX")
		t0=$(date +%s%N)
		set +e
		(cd "$dir" && timeout -k 30 $((SUITE_TIMEOUT + 60)) env -i \
			DEST="$state/dest" \
			DOCKER_GRAPHDRIVER="$SUITE_DRIVER" \
			DOCKER_USERLANDPROXY=true \
			DOCKER_HOST="$DOCKER_HOST" \
			GOCACHE="$SUITE_GOCACHE" \
			GOPATH="$gopath" \
			GOTRACEBACK=all \
			HOME="$state/home" \
			PATH="$gopath/bin:$PATH" \
			TEST_CLIENT_BINARY=docker \
			"${extra_env[@]}" \
			"$bin" -test.v -test.run "^$t\$" -test.timeout "${SUITE_TIMEOUT}s") >"$tlog" 2>&1
		rc=$?
		set -e
		ms=$((($(date +%s%N) - t0) / 1000000))
		if grep -q "^--- PASS: $t " "$tlog"; then
			result=pass
		elif grep -q "^--- SKIP: $t " "$tlog"; then
			result=skip
		elif grep -q "^--- FAIL: $t " "$tlog"; then
			result=fail
		elif [ $rc -eq 124 ] || [ $rc -eq 137 ] || grep -q '^panic: test timed out' "$tlog"; then
			result=timeout
		else
			result=crash
		fi
		printf '%s\t%s\t%s\t%d.%d\n' "$pkg" "$t" "$result" $((ms / 1000)) $((ms % 1000 / 100)) >>"$tsv"
		log "$side: $pkg $t: $result ($((ms / 1000))s)"
	done
done

kill -TERM "$dockerd_pid" 2>/dev/null || true
for _ in $(seq 1 300); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
log "$side: done"
