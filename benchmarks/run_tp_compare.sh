#!/usr/bin/env bash
# Tensor parallelism on a generated dense model (hidden 512, 8 heads, 2 KV heads, 16 layers, F32;
# issue 15), one core per rank, side by side in one run: TP=1 on one core, TP=2 over Gloo
# (TESSERA_COMM_SHM=0) and TP=2 over shared memory (the default on one node). Each layout serves
# the same `tessera bench` workload (same seed) at each concurrency; tokens/s and ITL land in
# benchmarks/results/tp-<stamp>-<layout>-c<N>.json and a table on stdout, with the CPU model.
# LAYOUTS picks among tp1, tp2-gloo, tp2-shm and their sequence-parallel forms tp2-gloo-sp,
# tp2-shm-sp (`sequence_parallel: true`: reduce-scatter + all-gather for each all-reduce), and
# tp4-shm, tp4-shm-sp (four ranks: oversubscribed on fewer than four cores).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TESSERA=${TESSERA:-$BUILD/tessera}
PYTHON=${PYTHON:-python3}
CONCURRENCIES=${CONCURRENCIES:-"1 8"}
LAYOUTS=${LAYOUTS:-"tp1 tp2-gloo tp2-shm"}
NUM_REQUESTS=${NUM_REQUESTS:-16}
INPUT_LEN=${INPUT_LEN:-32}
OUTPUT_LEN=${OUTPUT_LEN:-48}
out=benchmarks/results
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
tmp=$(mktemp -d)
server=""
# A failed step (set -e) must not leave the server it started running.
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$tmp"' EXIT

PYTHONPATH=tests/python "$PYTHON" - "$tmp" <<'PY'
import json, sys
from tiny_models import TinySpec
d = sys.argv[1]
kw = dict(hidden=512, heads=8, kv_heads=2, layers=16, ffn=1536, seed=1)
TinySpec(**kw).write_hf(d + "/hf")
tok = json.load(open(d + "/hf/tokenizer.json"))
TinySpec(vocab=len(tok["model"]["vocab"]), **kw).write_gguf(d + "/dense.gguf", tok)
PY

layout() {  # name: tp<T>[-gloo|-shm][-sp]
  local t=${1#tp}
  t=${t%%-*}
  cat >"$tmp/$1.yaml" <<YAML
model: {path: '$tmp/dense.gguf'}
backend: cpu
parallel: {tensor: $t, pipeline: 1}
scheduler: {kv_cache_mb: 64, max_num_seqs: 16}
listen: {http_port: 0}
threads_per_rank: 1
sequence_parallel: $(case $1 in *-sp) echo true ;; *) echo false ;; esac)
YAML
}
for name in $LAYOUTS; do
  case $name in
    tp1 | tp[0-9]-gloo | tp[0-9]-shm | tp[0-9]-gloo-sp | tp[0-9]-shm-sp) layout "$name" ;;
    *) echo "unknown layout $name" >&2; exit 2 ;;
  esac
done

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
printf '%-12s %4s %10s %10s %10s %10s\n' layout conc "out tok/s" "ITL p50" "TPOT p50" "TTFT p50"
for name in $LAYOUTS; do
  log="$tmp/$name.log"
  shm=1; case $name in *-gloo*) shm=0 ;; esac
  TESSERA_COMM_SHM=$shm "$TESSERA" serve --config "$tmp/$name.yaml" --no-warmup >"$log" 2>&1 &
  server=$!
  url=""
  for _ in $(seq 1 600); do
    url=$(sed -n 's/^READY \(http:[^ ]*\).*/\1/p' "$log" | head -n1)
    [ -n "$url" ] && break
    kill -0 "$server" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.5
  done
  grep -o "group [^ ]*: [^\n]*\(shared memory\|Gloo\)" "$log" | head -n1 >&2 || true
  model=$(curl -s "$url/v1/models" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
  for c in $CONCURRENCIES; do
    "$TESSERA" bench --base-url "$url" --model "$model" --tokenizer "$tmp/hf/tokenizer.json" \
      --endpoint completions --concurrency "$c" --num-requests "$NUM_REQUESTS" --warmup 2 \
      --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" --seed 1 --timeout 600 --quiet \
      --output "$out/tp-$stamp-$name-c$c.json" >/dev/null
    "$PYTHON" - "$out/tp-$stamp-$name-c$c.json" "$name" "$c" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
itl = s.get("itl_ms", s["tpot_ms"])
print(f"{sys.argv[2]:<12} {sys.argv[3]:>4} {s['output_token_throughput']:10.1f} "
      f"{itl['p50']:10.1f} {s['tpot_ms']['p50']:10.1f} {s['ttft_ms']['p50']:10.1f}")
PY
  done
  kill "$server"; wait "$server" || true
  server=""
done
