#!/usr/bin/env bash
# Pipeline parallelism on a workload of many requests, side by side in one run: the default model
# served by one worker process on one core (PP=1, the "one device" baseline) and on all cores, by
# two pipeline stages of one core each run one plan at a time (PP=2, micro_batches 1) and by two
# stages with two micro-batches in flight (PP=2, the default: stages balanced by weight bytes,
# the last one carrying the LM head), and the same with an even split of the layers.
# Each layout serves the same `tessera bench` workload (same seed); output tokens/s and latencies
# land in benchmarks/results/pp-<stamp>-<layout>.json and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TESSERA=${TESSERA:-$BUILD/tessera}
CONCURRENCY=${CONCURRENCY:-8}
NUM_REQUESTS=${NUM_REQUESTS:-32}
INPUT_LEN=${INPUT_LEN:-64}
OUTPUT_LEN=${OUTPUT_LEN:-48}
LAYOUTS=${LAYOUTS:-"pp1-1core pp1-allcores pp2-serial pp2 pp2-even"}  # a subset, in this order
out=benchmarks/results
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
tmp=$(mktemp -d)
server=""
# A failed step (set -e) must not leave the server it started running.
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$tmp"' EXIT

layout() {  # name pipeline micro_batches threads_per_rank [layer_split]
  cat >"$tmp/$1.yaml" <<YAML
model: {path: smollm2-135m-instruct}
backend: cpu
parallel: {tensor: 1, pipeline: $2, micro_batches: $3${5:+, layer_split: $5}}
scheduler: {kv_cache_mb: 128, max_num_seqs: 64}
listen: {http_port: 0}
threads_per_rank: $4
YAML
}
layout pp1-1core 1 1 1
layout pp1-allcores 1 1 0
layout pp2-serial 2 1 1
layout pp2 2 2 1
layout pp2-even 2 2 1 "[15, 15]"

printf '%-14s %10s %10s %10s %10s\n' layout "out tok/s" "req/s" "TPOT p50" "E2E p50"
for name in $LAYOUTS; do
  log="$tmp/$name.log"
  "$TESSERA" serve --config "$tmp/$name.yaml" --no-warmup >"$log" 2>&1 &
  server=$!
  url=""
  for _ in $(seq 1 600); do
    url=$(sed -n 's/^READY \(http:[^ ]*\).*/\1/p' "$log" | head -n1)
    [ -n "$url" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.5
  done
  "$TESSERA" bench --base-url "$url" --model smollm2-135m-instruct --tokenizer smollm2-135m-instruct \
    --endpoint completions --concurrency "$CONCURRENCY" --num-requests "$NUM_REQUESTS" --warmup 2 \
    --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" --seed 1 --timeout 600 --quiet \
    --output "$out/pp-$stamp-$name.json" >/dev/null
  kill "$server"; wait "$server" || true
  server=""
  python3 - "$out/pp-$stamp-$name.json" "$name" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
print(f"{sys.argv[2]:<14} {s['output_token_throughput']:10.1f} {s['request_throughput']:10.2f} "
      f"{s['tpot_ms']['p50']:10.1f} {s['e2e_ms']['p50']:10.0f}")
PY
done
