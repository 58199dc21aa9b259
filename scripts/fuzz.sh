#!/usr/bin/env bash
# Runs every libFuzzer target (build-fuzz/tests/fuzz/fuzz_*) for N seconds over its checked-in
# corpus. New inputs go to build-fuzz/fuzz-work/<target> (scratch, so the repo's corpus stays
# small); a crash, leak, timeout or OOM leaves its input in build-fuzz/findings/<target>/ and fails
# the run. Prints one line per target: executions and the result.
#   usage: scripts/fuzz.sh SECONDS [target...]    (FUZZ_SEED=N: a fixed seed, as CI uses;
#          RUNS=N: N executions per target instead of SECONDS)
set -uo pipefail
secs=${1:-60}
shift || true
build=${BUILD_FUZZ:-build-fuzz}
root=$(cd "$(dirname "$0")/.." && pwd)
status=0
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for bin in "$build"/tests/fuzz/fuzz_*; do targets+=("$(basename "$bin" | sed 's/^fuzz_//')"); done
fi
for name in "${targets[@]}"; do
  bin="$build/tests/fuzz/fuzz_$name"
  work="$build/fuzz-work/$name"
  findings="$build/findings/$name"
  log="$build/findings/$name.log"
  mkdir -p "$work" "$findings"
  # RUNS=N: stop after N executions instead of after SECONDS.
  bound="-max_total_time=$secs"
  [ -n "${RUNS:-}" ] && bound="-runs=$RUNS"
  if "$bin" "$work" "$root/tests/fuzz/corpus/$name" "$bound" -timeout=10 \
      -rss_limit_mb=2048 -artifact_prefix="$findings/" -print_final_stats=1 \
      ${FUZZ_SEED:+-seed=$FUZZ_SEED} >"$log" 2>&1; then
    execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
    took=$(awk '/stat::.*time|Done [0-9]+ runs in/ {for (i=1;i<=NF;i++) if ($i=="in") print $(i+1)}' "$log" | tail -1)
    echo "fuzz $name: ok, ${execs:-?} executions in ${took:-$secs}s, 0 findings"
  else
    echo "fuzz $name: FINDING (input in $findings/, log $log)"
    grep -E "ERROR|SUMMARY|fuzz property|Test unit written" "$log" | head -8
    status=1
  fi
done
exit $status
