#!/usr/bin/env bash
# Issue 13's label-efficiency table (BENCHMARKS.md, "Label efficiency (served model)"): the served ensemble and
# its members, the peers, RLAD and a minimax backbone on the documented subsets (app/bench/plan.py, LABEL_SUBSETS),
# through the product's loop and adoption rule. Arguments go to `bench plan` (e.g. --seeds 0 --budgets 0.01).
# A run whose JSON already exists is not run again, so several invocations fill one folder.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${ANOMALOOP:-.venv/bin/anomaloop}
OUT=${BENCH_OUT:-bench-results/labels}
JOBS=${BENCH_JOBS:-2}
mkdir -p "$OUT"
"$A" bench plan --parts labels --out "$OUT" --executable "$A" "$@" > "$OUT/plan-$$.txt"
while IFS= read -r line; do
  json=$(sed -E 's/.*--out ([^ ]+\.json).*/\1/' <<< "$line")
  [ -s "$json" ] || printf '%s\n' "$line"
done < "$OUT/plan-$$.txt" > "$OUT/todo-$$.txt"
echo "$(wc -l < "$OUT/todo-$$.txt") runs to do, $JOBS at a time" >&2
xargs -P "$JOBS" -d '\n' -I{} bash -c '{} || echo "failed: {}" >> '"$OUT/failed.txt" < "$OUT/todo-$$.txt"
"$A" bench efficiency "$OUT"/lab_*.json
