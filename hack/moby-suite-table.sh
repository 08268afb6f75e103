#!/usr/bin/env bash
# The table of a make test-moby run: for each dockerd, how many tests passed,
# failed (timeouts and crashes counted as failures, and named) and skipped,
# the difference of the pass sets both ways, and how the tests in it fared
# when run again on both sides (MOBY_RECHECK).
#
#   hack/moby-suite-table.sh RESULTS_DIR          (.../moby/VERSION/results/STAMP)
#   hack/moby-suite-table.sh -names RESULTS_DIR   the differing tests' names only
set -euo pipefail

names=""
[ "${1:-}" = -names ] && { names=1; shift; }
results=${1:?results dir}
moby=$results/moby/moby.tsv lcd=$results/lcd/lcd.tsv

# diff_sets TITLE A B: the tests A passes and B does not, with B's result.
diff_sets() {
	awk -F'\t' -v title="$1" -v names="$names" '
		FNR == NR { if ($3 == "pass") pass[$1 " " $2] = 1; next }
		{ key = $1 " " $2; seen[key] = 1; if ((key in pass) && $3 != "pass") { out[++n] = $2 " (" $3 ")"; name[n] = $2 } }
		END {
			for (k in pass) if (!(k in seen)) { split(k, p, " "); out[++n] = p[2] " (not run)"; name[n] = p[2] }
			if (names) { for (i = 1; i <= n; i++) print name[i]; exit }
			printf "%s: %d\n", title, n
			for (i = 1; i <= n; i++) print "  " out[i]
		}' "$2" "$3"
}

if [ -n "$names" ]; then
	[ -f "$moby" ] && [ -f "$lcd" ] || exit 0
	{ diff_sets - "$moby" "$lcd"; diff_sets - "$lcd" "$moby"; } | sort -u | tr '\n' ' '
	exit 0
fi

cat "$results/run.txt"
echo
printf '%-22s %6s %6s %6s %6s %9s\n' dockerd tests pass fail skip time
for side in moby lcd; do
	tsv=$results/$side/$side.tsv
	[ -f "$tsv" ] || continue
	name="moby's own"
	[ $side = lcd ] && name="on libcontainerd"
	secs=$(cat "$results/$side/seconds" 2>/dev/null || echo 0)
	awk -F'\t' -v name="$name" -v secs="$secs" '
		{ n++; c[$3]++ }
		END {
			other = ""
			if (c["timeout"]) other = other " " c["timeout"] " timeout"
			if (c["crash"]) other = other " " c["crash"] " crash"
			printf "%-22s %6d %6d %6d %6d %6dm%02ds%s\n", name, n, c["pass"], c["fail"] + c["timeout"] + c["crash"], c["skip"], secs / 60, secs % 60, (other == "" ? "" : "  (fail:" other ")")
		}' "$tsv"
done

[ -f "$moby" ] && [ -f "$lcd" ] || exit 0
echo
diff_sets "moby's passes, ours does not" "$moby" "$lcd"
diff_sets "ours passes, moby's does not" "$lcd" "$moby"
echo
awk -F'\t' '$3 != "pass" && $3 != "skip" { print $2 }' "$moby" "$lcd" | sort | uniq -d | tr '\n' ' ' |
	sed 's/^/failed on both: /; s/ $/\n/'

rc=$results/recheck
if [ -f "$rc/moby/moby.tsv" ] || [ -f "$rc/lcd/lcd.tsv" ]; then
	echo
	echo "run again on each side (passes/runs):"
	for f in "$rc"/moby/moby.tsv "$rc"/lcd/lcd.tsv; do [ -f "$f" ] && awk -F'\t' -v s="$(basename "$f" .tsv)" '{ print s "\t" $0 }' "$f"; done |
		awk -F'\t' '
			{ k = $3; t[k] = 1; r[$1, k]++; if ($4 == "pass") p[$1, k]++ }
			END { for (k in t) printf "  %-50s moby'"'"'s %d/%d, ours %d/%d\n", k, p["moby", k], r["moby", k], p["lcd", k], r["lcd", k] }' | sort
fi
