#!/usr/bin/env bash
# Expert parallelism on a generated Mixtral-style MoE (issue 14: 8 experts, top-2, hidden 512,
# 8 layers, expert width 1024, 8 heads / 2 KV heads, F32), one core per rank, side by side in one
# run: EP=1 (one rank), EP=2 (experts split, attention replicated, one all-reduce per MoE layer)
# and TP=2. Each layout serves the same `tessera bench` workload (same seed) at each concurrency.
# Prints, per layout and concurrency, output tokens/s, ITL p50 (the decode step time at c=1), the
# expert load imbalance (max/mean tokens per expert within a layer, from /metrics'
# tessera:expert_tokens_total over the measured run: mean over layers and the worst layer), and
# the planner's bytes per token for the same layout (`tessera plan`, f32 activations).
# JSON per run lands in benchmarks/results/moe-<stamp>-<layout>-c<N>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TESSERA=${TESSERA:-$BUILD/tessera}
PYTHON=${PYTHON:-python3}
CONCURRENCIES=${CONCURRENCIES:-"1 8"}
NUM_REQUESTS=${NUM_REQUESTS:-16}
INPUT_LEN=${INPUT_LEN:-32}
OUTPUT_LEN=${OUTPUT_LEN:-48}
out=benchmarks/results
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

PYTHONPATH=tests/python "$PYTHON" - "$tmp" <<'PY'
import json, sys
from tiny_moe import MoeSpec
d = sys.argv[1]
kw = dict(style="mixtral", experts=8, top_k=2, moe_ffn=1024, hidden=512, heads=8, kv_heads=2,
          layers=8, seed=1)
MoeSpec(**kw).write_hf(d + "/hf")
tok = json.load(open(d + "/hf/tokenizer.json"))
MoeSpec(vocab=len(tok["model"]["vocab"]), **kw).write_gguf(d + "/moe.gguf", tok)
PY

layout() {  # name tensor expert
  cat >"$tmp/$1.yaml" <<YAML
model: {path: '$tmp/moe.gguf'}
backend: cpu
parallel: {tensor: $2, expert: $3, pipeline: 1}
scheduler: {kv_cache_mb: 64, max_num_seqs: 16}
listen: {http_port: 0}
threads_per_rank: 1
YAML
}
layout ep1 1 1
layout ep2 1 2
layout tp2 2 1

metrics() { curl -s "$1/metrics" >"$2"; }

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
printf '%-6s %4s %10s %10s %14s %14s\n' layout conc "out tok/s" "ITL p50" "imbalance" "plan B/token"
for name in ep1 ep2 tp2; do
  t=1; e=1
  [ "$name" = ep2 ] && e=2
  [ "$name" = tp2 ] && t=2
  plan_bytes=$("$TESSERA" plan --model "$tmp/hf/config.json" --gpus $((t * e)) --json \
    2>/dev/null | "$PYTHON" -c "
import json, sys
p = json.load(sys.stdin)
l = [l for l in p['layouts'] if l['tensor'] == $t and l['expert'] == $e and l['pipeline'] == 1][0]
print(l['comm_bytes_per_token'] * 2)  # the plan counts bf16 messages; the CPU sends f32" ||
    echo "-")
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
  model=$(curl -s "$url/v1/models" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
  for c in $CONCURRENCIES; do
    # Warm-up requests are counted by the server too; the imbalance is of the measured run only.
    "$TESSERA" bench --base-url "$url" --model "$model" --tokenizer "$tmp/hf/tokenizer.json" \
      --endpoint completions --concurrency "$c" --num-requests 2 --input-len "$INPUT_LEN" \
      --output-len 8 --seed 7 --timeout 600 --quiet >/dev/null
    metrics "$url" "$tmp/before"
    "$TESSERA" bench --base-url "$url" --model "$model" --tokenizer "$tmp/hf/tokenizer.json" \
      --endpoint completions --concurrency "$c" --num-requests "$NUM_REQUESTS" \
      --input-len "$INPUT_LEN" --output-len "$OUTPUT_LEN" --seed 1 --timeout 600 --quiet \
      --output "$out/moe-$stamp-$name-c$c.json" >/dev/null
    metrics "$url" "$tmp/after"
    "$PYTHON" - "$out/moe-$stamp-$name-c$c.json" "$name" "$c" "$tmp/before" "$tmp/after" \
      "$plan_bytes" <<'PY'
import collections, json, re, sys
path, name, conc, before, after, plan = sys.argv[1:7]
pat = re.compile(r'^tessera:expert_tokens_total\{(?=[^}]*layer="(\d+)")(?=[^}]*expert="(\d+)")'
                 r'[^}]*\}\s+([0-9.e+]+)', re.M)
def counts(f):
    return {(int(l), int(e)): float(v) for l, e, v in pat.findall(open(f).read())}
b, a = counts(before), counts(after)
layers = collections.defaultdict(dict)
for (l, e), v in a.items():
    layers[l][e] = v - b.get((l, e), 0.0)
ratios = []
for l, per in layers.items():
    vals = list(per.values()) + [0.0] * (8 - len(per))  # experts never chosen count as 0
    mean = sum(vals) / len(vals)
    if mean > 0:
        ratios.append(max(vals) / mean)
imb = f"{sum(ratios) / len(ratios):.2f}/{max(ratios):.2f}" if ratios else "-"
res = json.load(open(path))
res["expert_imbalance"] = {"max_over_mean_by_layer": ratios}
json.dump(res, open(path, "w"), indent=1)
s = res["summary"]
itl = s.get("itl_ms", s["tpot_ms"])
print(f"{name:<6} {conc:>4} {s['output_token_throughput']:10.1f} {itl['p50']:10.1f} "
      f"{imb:>14} {plan:>14}")
PY
  done
  kill "$server"; wait "$server" || true
done
echo "imbalance: max/mean tokens per expert within a layer, mean over the 8 layers / worst layer"
echo "plan B/token: tessera plan's comm_bytes_per_token for the layout, doubled for f32 messages"
