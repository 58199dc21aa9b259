#!/usr/bin/env bash
# Expert parallelism on a generated Mixtral-style MoE (issue 14: 8 experts, top-2, hidden 512,
# 8 layers, expert width 1024, 8 heads / 2 KV heads, F32), one core per rank, side by side in one
# run: EP=1 (one rank), EP=2 with data-parallel attention (each rank its own sequences, tokens to
# their experts' rank and back by all_to_all_v: the default), EP=2 with replicated attention (one
# all-reduce per MoE layer) and TP=2. Each layout serves the same `tessera bench` workload (same
# seed) at each concurrency. Prints, per layout and concurrency, output tokens/s, ITL p50 (the
# decode step time at c=1), the expert load imbalance (max/mean tokens per expert within a layer,
# from /metrics' tessera:expert_tokens_total over the measured run: mean over layers and the worst
# layer), and the bytes the group sent per token fed (/metrics' tessera:comm_bytes_total of the
# layout's main op: all_to_all_v for EP data, all_reduce_sum otherwise; tokens fed = layer 0's
# routed tokens / top-k) beside the planner's figure for the same op (`tessera plan --act-dtype
# f32`, summed over the group's ranks where the plan counts one rank).
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
          layers=8, seed=1, ctx=4096)
MoeSpec(**kw).write_hf(d + "/hf")
tok = json.load(open(d + "/hf/tokenizer.json"))
MoeSpec(vocab=len(tok["model"]["vocab"]), **kw).write_gguf(d + "/moe.gguf", tok)
PY

layout() {  # name tensor expert expert_attention
  cat >"$tmp/$1.yaml" <<YAML
model: {path: '$tmp/moe.gguf'}
backend: cpu
parallel: {tensor: $2, expert: $3, pipeline: 1, expert_attention: $4}
scheduler: {kv_cache_mb: 64, max_num_seqs: 16}
listen: {http_port: 0}
threads_per_rank: 1
YAML
}
layout ep1 1 1 data
layout ep2 1 2 data
layout ep2r 1 2 replicated
layout tp2 2 1 data

metrics() { curl -s "$1/metrics" >"$2"; }

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
printf '%-6s %4s %10s %10s %14s %16s %16s\n' layout conc "out tok/s" "ITL p50" "imbalance" \
  "sent B/token" "plan B/token"
for name in ep1 ep2 ep2r tp2; do
  t=1; e=1; attention=data; op=-
  case "$name" in
    ep2) e=2; op=all_to_all_v ;;
    ep2r) e=2; attention=replicated; op=all_reduce_sum ;;
    tp2) t=2; op=all_reduce_sum ;;
  esac
  # The planner's figure for the op measured, for the whole group: EP data's all-to-all is
  # already the group's bytes for a token; an all-reduce's figure is per rank (x ranks), and
  # TP's includes the logits all-gather (per sampled token, not per token fed: left out).
  plan_bytes=$("$TESSERA" plan --model "$tmp/hf/config.json" --gpus $((t * e)) --json \
    --act-dtype f32 --expert-attention "$attention" 2>/dev/null | "$PYTHON" -c "
import json, math, sys
p = json.load(sys.stdin)
l = [l for l in p['layouts'] if l['tensor'] == $t and l['expert'] == $e and l['pipeline'] == 1][0]
v = json.load(open('$tmp/hf/config.json'))['vocab_size']
if '$name' == 'ep2':
    print(l['a2a_bytes_per_token'])
elif '$name' == 'ep2r':
    print(l['ep_allreduce_bytes_per_token'] * $e)
elif '$name' == 'tp2':
    print((l['comm_tp_bytes_per_token'] - ($t - 1) * math.ceil(v / $t) * 4) * $t)
else:
    print(0)" || echo "-")
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
      "$plan_bytes" "$op" <<'PY'
import collections, json, re, sys
path, name, conc, before, after, plan, op = sys.argv[1:8]
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
fed = sum(layers[0].values()) / 2 if 0 in layers else 0  # top-2: each token fed counts twice
comm = re.compile(r'^tessera:comm_bytes_total\{group="(\w+)",op="(\w+)"\}\s+([0-9.e+]+)', re.M)
def sent(f):
    return {(g, o): float(v) for g, o, v in comm.findall(open(f).read())}
sb, sa = sent(before), sent(after)
bytes_op = sum(v - sb.get(k, 0.0) for k, v in sa.items() if k[1] == op)
per_token = bytes_op / fed if fed and op != "-" else 0.0
res = json.load(open(path))
res["expert_imbalance"] = {"max_over_mean_by_layer": ratios}
res["comm"] = {"tokens_fed": fed, "op": op, "bytes": bytes_op, "bytes_per_token": per_token,
               "planned_bytes_per_token": float(plan) if plan not in ("-", "") else None,
               "by_group_op": {f"{g}/{o}": v - sb.get((g, o), 0.0) for (g, o), v in sa.items()}}
json.dump(res, open(path, "w"), indent=1)
s = res["summary"]
itl = s.get("itl_ms", s["tpot_ms"])
print(f"{name:<6} {conc:>4} {s['output_token_throughput']:10.1f} {itl['p50']:10.1f} "
      f"{imb:>14} {per_token:16,.0f} {float(plan):16,.0f}")
PY
  done
  kill "$server"; wait "$server" || true
done
echo "imbalance: max/mean tokens per expert within a layer, mean over the 8 layers / worst layer"
echo "sent B/token: the group's bytes of the layout's main op (EP data: all_to_all_v; EP replicated"
echo "  and TP: all_reduce_sum) per token fed, from tessera:comm_bytes_total; plan B/token: the"
echo "  planner's figure for that op (f32 messages) for the whole group"
