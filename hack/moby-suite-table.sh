#!/usr/bin/env bash
# The table of a make test-moby run: for each dockerd, how many tests passed,
# failed (timeouts and crashes counted as failures, and named) and skipped,
# and the difference of the pass sets both ways.
#
#   hack/moby-suite-table.sh RESULTS_DIR    (.../moby/VERSION/results/STAMP)
set -euo pipefail

results=${1:?results dir}
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

[ -f "$results/moby/moby.tsv" ] && [ -f "$results/lcd/lcd.tsv" ] || exit 0
# diff NAME A B: the tests A passes and B does not, with B's result.
diff_sets() {
	awk -F'\t' -v title="$1" '
		FNR == NR { if ($3 == "pass") pass[$1 " " $2] = 1; next }
		{ key = $1 " " $2; seen[key] = 1; if ((key in pass) && $3 != "pass") out[++n] = $2 " (" $3 ")" }
		END {
			for (k in pass) if (!(k in seen)) { split(k, p, " "); out[++n] = p[2] " (not run)" }
			printf "%s: %d\n", title, n
			for (i = 1; i <= n; i++) print "  " out[i]
		}' "$2" "$3"
}
echo
diff_sets "moby's passes, ours does not" "$results/moby/moby.tsv" "$results/lcd/lcd.tsv"
diff_sets "ours passes, moby's does not" "$results/lcd/lcd.tsv" "$results/moby/moby.tsv"
