#!/usr/bin/env bash
# Runs the whole integration suite and the supervisor's tests against each
# containerd daemon in turn and prints a table: daemon version, tests passed /
# failed / skipped, seconds. Fails if any daemon's run fails.
#
#   hack/test-compat.sh [DAEMON...]     default: $COMPAT_DAEMONS
#
# DAEMON is "host" (the containerd on PATH: Debian's) or a version that
# hack/build-daemons.sh built into the cache (run `make daemons` first).
# COMPAT_FLAVOUR=v2 runs the containerd v2 flavour's suites (module v2/)
# instead of this module's. Each run's full output is kept in
# bin/compat-<version>.log (bin/compat-v2-<version>.log for v2).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
daemons=("$@")
[ ${#daemons[@]} -gt 0 ] || read -r -a daemons <<<"${COMPAT_DAEMONS:-host v1.7.35 v2.4.2}"
cache=${LCD_DAEMON_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/libcontainerd/daemons}
case ${COMPAT_FLAVOUR:-v1} in
v1) module=github.com/lcdkit/libcontainerd moddir=$repo logprefix=bin/compat- ;;
v2) module=github.com/lcdkit/libcontainerd/v2 moddir=$repo/v2 logprefix=bin/compat-v2- ;;
*) echo "test-compat: COMPAT_FLAVOUR must be v1 or v2" >&2; exit 2 ;;
esac
pkgs=("$module/integration" "$module/supervisor")

# The tests allowed to skip (those that need a working criu; the Makefile
# passes them), as for make test-integration.
allow=()
for t in ${CRIU_TESTS:-}; do allow+=("-allow-skip" "criu=$t"); done
# And for the v2 flavour, those that cannot work on containerd 1.6 with the
# v2 client (Makefile's V2_SKIP_TESTS), each skipping with its reason.
for t in ${V2_SKIP_TESTS:-}; do allow+=("-allow-skip" "containerd-1.6=$t"); done

mkdir -p bin
go build -o bin/testjson ./internal/cmd/testjson

rows=()
failed=0
for d in "${daemons[@]}"; do
	if [ "$d" = host ]; then
		bindir=""
		version=$(containerd --version | awk '{print $3}')
	else
		bindir=$cache/$d
		if [ ! -f "$bindir/.complete" ]; then
			echo "test-compat: no containerd $d in $cache: run \`make daemons\`" >&2
			exit 1
		fi
		version=$("$bindir/containerd" --version | awk '{print $3}')
	fi
	log=$repo/$logprefix$d.log
	echo "== containerd $version${bindir:+ ($bindir)}: $module's integration suite and supervisor tests"
	start=$(date +%s)
	# -p 1: one package at a time, so the supervisor's restarts and hangs
	# do not share the CPU with the chaos test's timings.
	rc=0
	# The soak-like tests only where COMPAT_SOAK_ON says (default: all).
	skip=()
	case " ${COMPAT_SOAK_ON:-all} " in
	*" all "* | *" $d "*) ;;
	*) [ -z "${SOAK_TESTS:-}" ] || skip=(-skip "$SOAK_TESTS") ;;
	esac
	(cd "$moddir" && LCD_CONTAINERD_BIN=$bindir go test -race -count=1 -p 1 -json -timeout 20m "${skip[@]}" "${pkgs[@]}") |
		bin/testjson "${pkgs[@]/#/-require=}" "${allow[@]}" >"$log" 2>&1 || rc=$?
	secs=$(($(date +%s) - start))
	counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -1 || true)
	read -r passed _ nfailed _ skipped _ <<<"${counts:-- - - - - -}"
	result=ok
	if [ $rc -ne 0 ] || [ -z "$counts" ]; then
		result=FAIL
		failed=1
		echo "--- containerd $version failed (full output: $log):" >&2
		grep -E -e '^(--- FAIL|FAIL|panic:)' -e '^FAIL: ' -e '_test\.go:[0-9]+: ' "$log" | head -60 >&2 || true
	fi
	echo "   $counts in ${secs}s: $result${skip:+ (soak-like tests not run here)}"
	rows+=("$(printf '%-12s %6s %6s %7s %7s  %s' "$version" "$passed" "$nfailed" "$skipped" "$secs" "$result")")
done

echo
printf '%-12s %6s %6s %7s %7s  %s\n' DAEMON PASSED FAILED SKIPPED SECONDS RESULT
printf '%s\n' "${rows[@]}"
if [ $failed -ne 0 ]; then
	echo "test-compat FAILED" >&2
	exit 1
fi
echo "test-compat passed on ${daemons[*]} ($module)"
