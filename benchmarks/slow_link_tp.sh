#!/usr/bin/env bash
# TP=2 over a link whose speed we control (issue 15, items 3 and 5): the two ranks run in two
# network namespaces made here, joined by a veth pair shaped with `tc ... tbf` on both ends, so
# every TP all-reduce crosses a RATE link even on one machine. Node 0 (coordinator, engine, HTTP,
# TP rank 0) runs in one namespace, node 1 (TP rank 1) in the other (`parallel.tensor_across_nodes`
# lets the TP group span the two "nodes"; TESSERA_COMM_SHM=0 keeps shared memory out of it, since
# namespaces share /dev/shm). On a generated dense model (hidden 512, 8 heads, 2 KV heads, 16
# layers, FFN 1536, F32), one op thread per rank, it serves the same `tessera bench` workload with
# tp_overlap off and on, at each concurrency, in one run, and prints step time (ITL p50), the
# on/off ratio, the fraction of the communication hidden, and an alpha-beta prediction of the
# step's communication time from RATE and the measured round trip.
#
# Needs root (ip netns, tc). Everything it makes (namespaces, veth, files) is removed on exit.
#   RATE=1gbit CONCURRENCIES="1 8" benchmarks/slow_link_tp.sh
# Results: a table on stdout and benchmarks/results/slowlink-<stamp>-<overlap>-c<N>.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
TESSERA=${TESSERA:-$BUILD/tessera}
PYTHON=${PYTHON:-python3}
RATE=${RATE:-1gbit}          # tbf rate of each direction of the link
BURST=${BURST:-32kb}         # tbf bucket: about one all-reduce message at decode sizes
TBF_LATENCY=${TBF_LATENCY:-50ms}  # tbf queue bound (not a delay: netem is not available)
CONCURRENCIES=${CONCURRENCIES:-"1 8"}
NUM_REQUESTS=${NUM_REQUESTS:-16}
INPUT_LEN=${INPUT_LEN:-32}
OUTPUT_LEN=${OUTPUT_LEN:-48}
SKIP_UNSHAPED=${SKIP_UNSHAPED:-0}  # 1: only the shaped link (no unshaped reference run)
out=benchmarks/results
mkdir -p "$out"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
tag=$$
ns0=tsl0-$tag ns1=tsl1-$tag
veth0=tslA$tag veth1=tslB$tag
addr0=10.213.$((tag % 200)).1 addr1=10.213.$((tag % 200)).2
port=$((20000 + tag % 20000))
tmp=$(mktemp -d)
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$ns0" 2>/dev/null || true  # removes veth0, and with it its peer
  ip netns del "$ns1" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

ip netns add "$ns0"
ip netns add "$ns1"
ip link add "$veth0" type veth peer name "$veth1"
ip link set "$veth0" netns "$ns0"
ip link set "$veth1" netns "$ns1"
ip -n "$ns0" addr add "$addr0/24" dev "$veth0"
ip -n "$ns1" addr add "$addr1/24" dev "$veth1"
for n in "$ns0" "$ns1"; do ip -n "$n" link set lo up; done
ip -n "$ns0" link set "$veth0" up
ip -n "$ns1" link set "$veth1" up
shape() {  # on|off
  for pair in "$ns0 $veth0" "$ns1 $veth1"; do
    set -- $pair
    tc -n "$1" qdisc del dev "$2" root 2>/dev/null || true
    if [ "$shaped" = on ]; then
      tc -n "$1" qdisc add dev "$2" root tbf rate "$RATE" burst "$BURST" latency "$TBF_LATENCY"
    fi
  done
}

PYTHONPATH=tests/python "$PYTHON" - "$tmp" <<'PY'
import json, sys
from tiny_models import TinySpec
d = sys.argv[1]
kw = dict(hidden=512, heads=8, kv_heads=2, layers=16, ffn=1536, seed=1)
TinySpec(**kw).write_hf(d + "/hf")
tok = json.load(open(d + "/hf/tokenizer.json"))
TinySpec(vocab=len(tok["model"]["vocab"]), **kw).write_gguf(d + "/dense.gguf", tok)
print(len(tok["model"]["vocab"]), file=open(d + "/vocab", "w"))
PY

for overlap in false true; do
  cat >"$tmp/tp2-$overlap.yaml" <<YAML
model: {path: '$tmp/dense.gguf'}
backend: cpu
parallel: {tensor: 2, tensor_across_nodes: true}
nodes:
  - {name: ns0, host: $addr0, devices: [0]}
  - {name: ns1, host: $addr1, devices: [0]}
coordinator: {host: $addr0, port: $port, timeout_s: 300, collective_timeout_s: 60}
scheduler: {kv_cache_mb: 64, max_num_seqs: 16}
listen: {host: 127.0.0.1, http_port: 0}
threads_per_rank: 1
tp_overlap: $overlap
YAML
done

# Median round trip of a 64-byte TCP exchange over the link (no ping here): alpha of the model.
ping_ms() {
  ip netns exec "$ns1" "$PYTHON" -c '
import socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
c, _ = s.accept()
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
while (d := c.recv(64)):
    c.sendall(d)' "$addr1" $((port + 1)) &
  local echo=$!
  sleep 0.5
  ip netns exec "$ns0" "$PYTHON" -c '
import socket, statistics, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
t = []
for _ in range(200):
    t0 = time.perf_counter(); c.sendall(b"x" * 64); n = 0
    while n < 64: n += len(c.recv(64))
    t.append((time.perf_counter() - t0) * 1e3)
print(f"{statistics.median(t):.4f}")' "$addr1" $((port + 1))
  wait "$echo" 2>/dev/null || true
}

export TESSERA_GROUP_SECRET=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export TESSERA_COMM_SHM=0
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
echo "link: veth pair between two network namespaces, tbf rate $RATE burst $BURST each way"
results="$tmp/results.txt"
: >"$results"
links="on"; [ "$SKIP_UNSHAPED" = 1 ] || links="off on"
for shaped in $links; do
  shape
  rtt=$(ping_ms)
  for overlap in false true; do
    cfg="$tmp/tp2-$overlap.yaml"
    ip netns exec "$ns1" "$TESSERA" serve --config "$cfg" --node-rank 1 >"$tmp/n1.log" 2>&1 &
    n1=$!
    pids+=("$n1")
    ip netns exec "$ns0" "$TESSERA" serve --config "$cfg" --node-rank 0 --no-warmup \
      >"$tmp/n0.log" 2>&1 &
    n0=$!
    pids+=("$n0")
    url=""
    for _ in $(seq 1 600); do
      url=$(sed -n 's/^READY \(http:[^ ]*\).*/\1/p' "$tmp/n0.log" | head -n1)
      [ -n "$url" ] && break
      kill -0 "$n0" 2>/dev/null || { tail -n 30 "$tmp/n0.log" "$tmp/n1.log"; exit 1; }
      sleep 0.5
    done
    [ -n "$url" ] || { tail -n 30 "$tmp/n0.log" "$tmp/n1.log"; exit 1; }
    model=$(ip netns exec "$ns0" curl -s "$url/v1/models" |
      "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')
    for c in $CONCURRENCIES; do
      f="$out/slowlink-$stamp-link_$shaped-overlap_$overlap-c$c.json"
      ip netns exec "$ns0" "$TESSERA" bench --base-url "$url" --model "$model" \
        --tokenizer "$tmp/hf/tokenizer.json" --endpoint completions --concurrency "$c" \
        --num-requests "$NUM_REQUESTS" --warmup 2 --input-len "$INPUT_LEN" \
        --output-len "$OUTPUT_LEN" --seed 1 --timeout 600 --quiet --output "$f" >/dev/null
      "$PYTHON" - "$f" "$shaped" "$overlap" "$c" "$rtt" >>"$results" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
itl = s.get("itl_ms", s["tpot_ms"])
print(sys.argv[2], sys.argv[3], sys.argv[4], itl["p50"], s["output_token_throughput"], sys.argv[5])
PY
    done
    kill "$n0" "$n1"
    wait "$n0" "$n1" 2>/dev/null || true
    pids=()
  done
done

# The table, the ratio, the hidden fraction, and the alpha-beta prediction of the communication.
"$PYTHON" - "$results" "$RATE" "$(cat "$tmp/vocab")" <<'PY'
import re, sys
rows = [l.split() for l in open(sys.argv[1])]
rate = sys.argv[2]
m = re.fullmatch(r"([0-9.]+)([kmg]?)bit", rate)
bps = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)]
vocab = int(sys.argv[3])
hidden, layers = 512, 16
r = {(a, b, int(c)): (float(itl), float(tps), float(rtt or 0)) for a, b, c, itl, tps, rtt in rows}
print(f"{'link':<9} {'conc':>4} {'ITL off ms':>10} {'ITL on ms':>10} {'on/off':>7} "
      f"{'tok/s off':>9} {'tok/s on':>9} {'comm ms (pred)':>14} {'hidden':>7}")
for (link, ov, c), (itl_off, tps_off, rtt) in sorted(r.items()):
    if ov != "false" or (link, "true", c) not in r:
        continue
    itl_on, tps_on, _ = r[(link, "true", c)]
    # alpha-beta, per decode step of c rows: 2 all-reduces per layer + the embedding's, each a
    # direct exchange (every rank sends its c x hidden F32 rows to the other: one message of
    # c*hidden*4 bytes each way, full duplex), plus the LM head's all-gather of c x vocab/2
    # floats; alpha = half the measured round trip per message.
    msgs = 2 * layers + 1
    beta_s = lambda b: b * 8 / bps
    alpha = rtt / 2 / 1e3
    comm = msgs * (alpha + beta_s(c * hidden * 4)) + alpha + beta_s(c * ((vocab + 1) // 2) * 4)
    hidden_frac = (itl_off - itl_on) / (comm * 1e3) if link == "on" else float("nan")
    print(f"{'tbf ' + rate if link == 'on' else 'unshaped':<9} {c:>4} {itl_off:>10.2f} "
          f"{itl_on:>10.2f} {itl_on / itl_off:>7.3f} {tps_off:>9.1f} {tps_on:>9.1f} "
          f"{comm * 1e3:>14.2f} {hidden_frac:>7.2f}")
    if link == "on" and ("off", "false", c) in r:
        base = r[("off", "false", c)][0]
        cost = itl_off - base
        # Predicted step time on the shaped link, overlap off: the unshaped step plus what the
        # shaper adds, every message's bytes at RATE (alpha is already in the unshaped step).
        beta_only = msgs * beta_s(c * hidden * 4) + beta_s(c * ((vocab + 1) // 2) * 4)
        print(f"{'':<9} {c:>4} predicted ITL off: {base + beta_only * 1e3:.2f} ms (measured "
              f"{itl_off:.2f}); link cost measured (shaped - unshaped, off): {cost:.2f} ms"
              + (f", hidden with overlap: {(itl_off - itl_on) / cost:.2f}" if cost > 0.5 else ""))
PY
