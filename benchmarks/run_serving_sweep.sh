#!/usr/bin/env bash
# The serving benchmark behind `make bench`: starts `tessera serve` with the default model on a
# free port, runs a small standard `tessera bench sweep` over concurrencies (synthetic prompts of
# INPUT_LEN tokens, OUTPUT_LEN output tokens forced with ignore_eos), writes the JSON of every
# point, the sweep and its PNG plots to benchmarks/results/, and stops the server. Sized for a
# 2-core CPU box (a few minutes); override with CONCURRENCIES, NUM_REQUESTS, INPUT_LEN, OUTPUT_LEN.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TESSERA=${TESSERA:-$BUILD/tessera}
MODEL=${MODEL:-smollm2-135m-instruct}
CONCURRENCIES=${CONCURRENCIES:-1,2,4,8}
NUM_REQUESTS=${NUM_REQUESTS:-16}
INPUT_LEN=${INPUT_LEN:-128}
OUTPUT_LEN=${OUTPUT_LEN:-64}
if [ -z "${TESSERA_PYTHON:-}" ] && [ -x .venv/bin/python ]; then
  export TESSERA_PYTHON=$PWD/.venv/bin/python  # the plots need matplotlib (tests/requirements.txt)
fi
out=benchmarks/results
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
log=$(mktemp)

"$TESSERA" serve --model "$MODEL" --http-port 0 >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT
url=""
for _ in $(seq 1 600); do
  url=$(sed -n 's/^READY \(http:[^ ]*\).*/\1/p' "$log" | head -n1)
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$log"; echo "tessera serve exited" >&2; exit 1; }
  sleep 0.5
done
[ -n "$url" ] || { cat "$log"; echo "tessera serve did not become READY" >&2; exit 1; }
echo "== serving sweep against $url ($MODEL): concurrency $CONCURRENCIES, $NUM_REQUESTS requests each, in $INPUT_LEN / out $OUTPUT_LEN"

"$TESSERA" bench sweep --base-url "$url" --model "$MODEL" --tokenizer "$MODEL" \
  --concurrencies "$CONCURRENCIES" --num-requests "$NUM_REQUESTS" --warmup 2 \
  --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" --seed 0 --timeout 300 \
  --goodput "ttft:2000 tpot:100" \
  --output-dir "$out" --label "serving-$stamp" --plot --quiet \
  --plot-script benchmarks/plot_bench.py
