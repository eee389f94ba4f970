#!/usr/bin/env bash
# `make bench`: the nab + skab parts of BENCHMARKS.md sections 1 and 2 (baselines, label efficiency), into
# bench-results/ (JSON per run, tables.md with date, machine, revision and commands, bench_report.html).
# The full-data runs (kpi, smd, asd, smap) are listed in BENCHMARKS.md; they take hours on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
A=.venv/bin/anomaloop
D=${SHARED_DATA:-../shared/data}
OUT=bench-results
mkdir -p $OUT
NAB="--data $D/nab --series realAWSCloudwatch__ec2_cpu_utilization_53ea38 --series realAWSCloudwatch__ec2_cpu_utilization_5f5533 --series realAWSCloudwatch__ec2_cpu_utilization_fe7f93 --series realAWSCloudwatch__ec2_disk_write_bytes_1ef3de"
SKAB="--data $D/skab --series other__10 --series other__11 --series other__12 --series other__13"
start=$(date +%s)
for DET in random oneliner rollingz iforest; do
  $A bench run --data $D/nab --data $D/skab --detector $DET --out $OUT/base_${DET}_nabskab.json
done
for SET in NAB SKAB; do
  for DET in random oneliner rollingz iforest; do
    $A bench run ${!SET} --detector $DET --out $OUT/le_${SET,,}_${DET}_0.json
  done
  for DET in rlad lstm_ae usad transformer; do
    for B in 0 0.001 0.01 0.05; do
      $A bench run --device cpu --threads 1 ${!SET} --detector $DET --budget $B --rounds 2 --out $OUT/le_${SET,,}_${DET}_$B.json
    done
  done
done
{
  echo "# anomaloop bench — $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "Machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB, $(uname -m); revision $(git rev-parse --short HEAD 2>/dev/null || echo none); wall $(( $(date +%s) - start )) s."
  echo "Command: make bench (scripts/bench.sh)"
  echo
  echo "## Baselines (nab, skab)"
  $A bench table $OUT/base_*.json --no-html
  echo
  echo "## Label efficiency (nab and skab subsets)"
  $A bench table $OUT/le_*.json --html $OUT/bench_report.html
} > $OUT/tables.md
echo "wrote $OUT/tables.md and $OUT/bench_report.html"
