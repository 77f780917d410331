#!/usr/bin/env bash
# The pipeline's benchmark, both halves, in one table (issue 11, "Benchmark"):
#   bench/pipeline_lander.py  lander events/s landing N events already in Kafka (target >= 50,000/s)
#   bench/pipeline_cycle.py   hourly cycle time for N new events on DuckDB (target <= 60 s), over 1
#                             epoch of history (A) and over FACTOR epochs (B: target B/A <= 1.5)
# Usage: bench/pipeline.sh [--messages N] [--events N] [--history-factor F] [--s3] [--work DIR]
# Defaults: 1,000,000 events for both, factor 10, work dir /tmp/engage-bench-cycle (~15 GB).
# Creates the pipeline venv if needed (pipeline_env in scripts/lib.sh) and fetches the Kafka jars
# (and s3proxy's with --s3). The lander part starts its own broker on port 19492 (and s3proxy on
# 19580): not while pipeline/test.sh runs. Full output of both scripts goes to stderr; the table to
# stdout. Exits 1 if a script failed, 3 if a target was missed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

MESSAGES=1000000 EVENTS=1000000 FACTOR=10 S3=() WORK=/tmp/engage-bench-cycle
while [ $# -gt 0 ]; do
    case $1 in
        --messages) MESSAGES=$2; shift 2 ;;
        --events) EVENTS=$2; shift 2 ;;
        --history-factor) FACTOR=$2; shift 2 ;;
        --s3) S3=(--s3); shift ;;
        --work) WORK=$2; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

ensure_packages
pipeline_env
"$ROOT/scripts/kafka.sh" fetch >/dev/null
[ ${#S3[@]} -eq 0 ] || "$ROOT/scripts/s3proxy.sh" fetch >/dev/null
cd "$ROOT"
LOG=$(mktemp -d /tmp/engage-bench-pipeline.XXXXXX)
trap 'rm -rf "$LOG"' EXIT
status=0

say "lander: $MESSAGES events (bench/pipeline_lander.py ${S3[*]})"
"$PYTHON" bench/pipeline_lander.py --messages "$MESSAGES" "${S3[@]}" 2>&1 | tee "$LOG/lander" >&2 ||
    status=1
say "cycle: $EVENTS new events over 1 and $FACTOR epochs of history (bench/pipeline_cycle.py)"
cycle_status=0
"$PYTHON" bench/pipeline_cycle.py --events "$EVENTS" --history-factor "$FACTOR" --work "$WORK" 2>&1 |
    tee "$LOG/cycle" >&2 || cycle_status=${PIPESTATUS[0]}
[ "$cycle_status" = 0 ] || [ "$cycle_status" = 3 ] || status=1

# The table: figures parsed from the two scripts' own report lines (they compute them).
table_status=0
"$PYTHON" - "$LOG/lander" "$LOG/cycle" "$EVENTS" "$FACTOR" <<'PY' || table_status=$?
import re, sys
lander, cycle = open(sys.argv[1]).read(), open(sys.argv[2]).read()
events, factor = int(sys.argv[3]), int(sys.argv[4])
rows, missed = [], False
for name, n, rate in re.findall(r"^lander (.+?): ([\d,]+) events in .*? = ([\d,]+) events/s", lander, re.M):
    r = int(rate.replace(",", ""))
    missed |= r < 50_000
    rows.append((f"lander, {n} events in Kafka → {name}", f"{r:,} events/s", ">= 50,000/s",
                 f"{r / 50_000:.2f}x the target"))
times = dict(re.findall(r"^([AB]): cycle with 1 new epoch: ([\d.]+) s", cycle, re.M))
if "A" in times:
    a = float(times["A"])
    missed |= a > 60
    rows.append((f"cycle (DuckDB), {events:,} new events over {events:,} of history", f"{a:.1f} s",
                 "<= 60 s", f"{a / 60:.2f} of the target"))
if "A" in times and "B" in times:
    b = float(times["B"])
    ratio = re.search(r"ratio B/A = ([\d.]+)", cycle)    # the script's own, from unrounded times
    ratio = float(ratio.group(1)) if ratio else b / a
    missed |= ratio > 1.5
    rows.append((f"cycle (DuckDB), {events:,} new events over {factor * events:,} of history",
                 f"{b:.1f} s", "B/A <= 1.5", f"B/A = {ratio:.2f}"))
if not rows:
    print("no figures: see the scripts' output above"); sys.exit(1)
w = [max(len(r[i]) for r in rows + [("figure", "measured", "target", "ratio")]) for i in range(4)]
line = lambda r: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |"
print(line(("figure", "measured", "target", "ratio")))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in rows:
    print(line(r))
sys.exit(3 if missed else 0)
PY
[ $status != 0 ] && exit $status
exit $table_status
