#!/usr/bin/env bash
# The CPU benchmark run behind `make bench`: machine ceilings, kernels and decode/prefill speed in
# one go (so ratios come from the same run). JSON lands in benchmarks/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
out=benchmarks/results
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
for b in machine_bench ops_bench decode_bench dispatch_bench; do
  if [ -x "$BUILD/benchmarks/$b" ]; then
    echo "== $b"
    "$BUILD/benchmarks/$b" --benchmark_out="$out/$b-$stamp.json" --benchmark_out_format=json \
      --benchmark_counters_tabular=true
  fi
done
