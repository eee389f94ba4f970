#!/usr/bin/env bash
# `make bench`: every run behind BENCHMARKS.md's tables (`anomaloop bench plan`: label efficiency on the
# documented subsets of nab, skab, kpi, asd, smd, smap; seed 002's comparison; the ablations), a few at a
# time, then the tables into $OUT/tables.md (date, machine, revision, commands) and the learning-curve
# report $OUT/bench_report.html. Arguments go to `bench plan` (e.g. --sets asd,kpi --seeds 0 --quick).
# The whole plan takes hours on 2 cores; BENCH_JOBS runs that many at once (default: 2).
# A run that fails is listed in tables.md and leaves out only its own cells.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${ANOMALOOP:-.venv/bin/anomaloop}
OUT=${BENCH_OUT:-bench-results/plan}
JOBS=${BENCH_JOBS:-2}
mkdir -p "$OUT"
start=$(date +%s)
"$A" bench plan --out "$OUT" --executable "$A" "$@" > "$OUT/plan.txt"
# one shell per line; a failed run is recorded, the others go on
xargs -P "$JOBS" -d '\n' -I{} bash -c '{} || echo "failed: {}" >> '"$OUT/failed.txt" < "$OUT/plan.txt"

shopt -s nullglob
tables() {  # a title, then the command; skipped when its files are missing
  local title=$1; shift
  echo "## $title"; echo
  "$@" 2>&1 || echo "(not rendered: the runs it needs are missing)"
  echo
}
{
  echo "# anomaloop bench — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(uname -m); revision $(git rev-parse --short HEAD 2>/dev/null || echo none); wall $(( $(date +%s) - start )) s; $JOBS runs at a time."
  echo "Command: scripts/bench.sh $*   (the runs: $OUT/plan.txt)"
  echo
  if [ -s "$OUT/failed.txt" ]; then echo "Failed runs:"; sed 's/^/    /' "$OUT/failed.txt"; echo; fi
  eff=()
  for f in "$OUT"/*_s[0-9]*.json; do
    case $(basename "$f") in abl_*|*_wo_s*) ;; *) eff+=("$f") ;; esac
  done
  tables "Label efficiency (PR-AUC)" "$A" bench efficiency "${eff[@]}"
  tables "Label efficiency, ratio to the best unsupervised detector (sanity baselines aside)" \
    "$A" bench efficiency "${eff[@]}" --exclude-sanity
  for DS in asd smd smap; do
    s002=("$OUT"/${DS}_{usad,lstm_ae,transformer}_{wo,0,0.01}_s*.json)
    [ ${#s002[@]} -gt 0 ] || continue
    tables "Seed 002 comparison, $DS (PA%K-AUC; 'hybrid 0' = w/ unlabeled, 'hybrid 0.01' = with feedback)" \
      "$A" bench compare "${s002[@]}" --metric pa_k_auc --base "hybrid 0" --scale 100
  done
  for DS in asd smd; do
    abl=("$OUT"/abl_${DS}_*_s*.json)
    [ ${#abl[@]} -gt 0 ] || continue
    bb=("$OUT"/abl_${DS}_*_wsum_s*.json)
    if [ ${#bb[@]} -gt 0 ]; then
      name=$(basename "${bb[0]}"); name=${name#abl_${DS}_}; name=${name%_wsum_s*}
      tables "Feedback ablations, $DS, $name (PA%K-AUC; base: the 1 % label-efficiency run)" \
        "$A" bench compare "$OUT"/${DS}_${name}_0.01_s*.json "$OUT"/abl_${DS}_${name}_*_s*.json \
        --metric pa_k_auc --base "hybrid 0.01" --scale 100
    fi
    rl=("$OUT"/abl_${DS}_rlad_*_s*.json)
    if [ ${#rl[@]} -gt 0 ]; then
      tables "RLAD ablations, $DS (PR-AUC)" "$A" bench compare "${rl[@]}" --metric pr_auc --base full
    fi
  done
  tables "Full metric tables" "$A" bench table "$OUT"/*.json --html "$OUT/bench_report.html"
} > "$OUT/tables.md"
echo "wrote $OUT/tables.md and $OUT/bench_report.html"
