#!/usr/bin/env bash
# The GPU proof in one call (issue 13 item 7), for a bare machine with one H100/H200: nvcc 13,
# CMake, ninja, Python 3.12 with PyTorch, transformers, numpy and the nvidia-nccl/nvidia-cublas
# wheels; no GoogleTest, no `gguf`, no Debian -dev packages, no network. Everything else comes
# from the folder benchmarks/gpu/pack.sh makes here (CARRY, default build-cuda/gpu-carry). How to
# run it with the device tool: benchmarks/gpu/README.md.
#
# In order, each step under its own timeout and all under BUDGET_S (default 360 s; a step that
# would start with too little left is recorded "skipped (time)"):
#   configure + build  engine-only preset, CUDA on, tests on (GoogleTest from the carry)
#   op suite           the device-parametrised op tests, cuda instances against the CPU reference
#   model on device    the tiny llama gtest on cuda:0 against the CPU; NCCL tests
#   model check        model_check on cuda:0 vs the CPU: SmolLM2-135M shape in Q4_1, F16, BF16, a
#                      Qwen2-0.5B-shaped F16 (biases) and a small Mixtral-style MoE in Q4_0 (the
#                      MoE ops), written here by make_models.py
#   memcheck           compute-sanitizer over the cuda op suite; a refusal is "not run"
#   kernels bench      kernels_bench (kernels, GEMV/GEMM vs copy bandwidth and cuBLAS peak)
#   model bench        model_bench: 1B and 8B shapes in Q4_0, Q8_0, F16 (decode 1/8/64, prefill)
#   hf peer            hf_peer.py: the same 1B weights under transformers, batch 1 and 8
# make_models.py runs in the background from the start (niced), in the order the steps use them.
# Writes to $OUT (default ./gpu-out) few files: summary.txt, summary.json, build.log, tests.txt,
# memcheck.txt, bench.txt, models.log. Exit status: 0 only when every step that ran passed; NCCL
# missing, a test binary missing or a gtest run with zero tests passed fail it, named.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
START=$(date +%s)
BUDGET_S=${BUDGET_S:-360}
OUT=${OUT:-./gpu-out}
BUILD=${BUILD:-build-gpu}
CARRY=${CARRY:-build-cuda/gpu-carry}
MODELS=${MODELS:-$BUILD/proof-models}
mkdir -p "$OUT" "$BUILD/proof"
OUT=$(cd "$OUT" && pwd)
work=$(cd "$BUILD/proof" && pwd)  # the steps' JSON, folded into summary.json
rm -f "$work"/*.json
summary=$OUT/summary.txt rows=$work/rows.tsv log=$OUT/build.log tests=$OUT/tests.txt
bench=$OUT/bench.txt
jobs=${JOBS:-$(nproc)}
# Which generated models the check, the benchmarks and the peer use (a dry run elsewhere may cut them).
CHECK_MODELS=${CHECK_MODELS:-smollm2-q4_1 smollm2-f16 smollm2-bf16 qwen2-f16 mixtral-q4_0 smollm2-f16:f16}
BENCH_MODELS=${BENCH_MODELS:-llama1b-q4_0 llama1b-q8_0 llama1b-f16 llama8b-q4_0 llama8b-q8_0 llama8b-f16}
PEER_MODELS=${PEER_MODELS:-hf-llama1b-bf16 hf-llama1b-f16}
status=0
: >"$summary"; : >"$rows"; : >"$tests"; : >"$bench"; : >"$log"
say() { echo "$*" | tee -a "$summary"; }
section() { echo; echo "===== $* ($(date -u +%T), $(elapsed) s)"; }
elapsed() { echo $(($(date +%s) - START)); }
left() { echo $((BUDGET_S - $(elapsed))); }
# row STEP RESULT DETAIL: one line of the summary table (RESULT: ok, FAIL, not run, skipped ...)
row() {
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$rows"
  say "$(printf '%-26s %-14s %s' "$1" "$2" "$3")"
  case $2 in FAIL*|MISSING*) status=1 ;; esac
}
# limit N: the timeout for a step that wants N seconds: N, or what is left; 0 when under 10 s.
limit() { local l; l=$(left); [ "$l" -lt 10 ] && { echo 0; return; }; [ "$1" -lt "$l" ] && echo "$1" || echo "$l"; }

say "tessera GPU proof  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
say "card: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi failed')"
say "cpu: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $jobs cores"
say "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
say "cmake: $(cmake --version | head -1); python: $(python3 --version 2>&1)"

# --- the carry: gguf for make_models.py, GoogleTest for the build ---------------------------
if [ -d "$CARRY/python/gguf" ]; then
  export PYTHONPATH="$(cd "$CARRY/python" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
fi
models_ok=1
if ! python3 -c 'import gguf, numpy' 2>>"$OUT/models.log"; then
  models_ok=0
  row make_models MISSING "python3 cannot import gguf/numpy: carry $CARRY (benchmarks/gpu/pack.sh)"
fi
# Background generation in the order the steps need the files; 8B files are deleted after use.
# Each file appears complete or not at all (written aside, then renamed; HF: config.json last).
gen_pid=
if [ "$models_ok" = 1 ]; then
  mkdir -p "$MODELS"
  # shellcheck disable=SC2086  # the lists are words
  nice -n 5 python3 benchmarks/gpu/make_models.py --out "$MODELS" --skip-existing --only $(echo $CHECK_MODELS | tr ' ' '\n' | sed 's/:.*//' | sort -u) \
    $(echo $BENCH_MODELS | tr ' ' '\n' | grep llama1b) $PEER_MODELS \
    $(echo $BENCH_MODELS | tr ' ' '\n' | grep -v llama1b) >>"$OUT/models.log" 2>&1 &
  gen_pid=$!
fi
# wait_for PATH MAX_S: 0 once PATH exists; 1 if the generator ended without it or time ran out.
wait_for() {
  local t=0
  while [ ! -e "$1" ]; do
    [ -n "$gen_pid" ] && kill -0 "$gen_pid" 2>/dev/null || { [ -e "$1" ]; return; }
    [ "$t" -ge "$2" ] && return 1
    sleep 1; t=$((t + 1))
  done
}

# native: the card here; a dry run without a GPU (nvidia-smi fails) compiles for the H100's sm_90.
cuda_arch=${CUDA_ARCH:-$(nvidia-smi >/dev/null 2>&1 && echo native || echo 90)}

# --- configure -----------------------------------------------------------------------------
section configure
# No -Werror here: CI enforces it; a different host compiler must not cost the GPU session.
args=(--preset engine-only -B "$BUILD" -DTESSERA_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$cuda_arch"
      -DTESSERA_BUILD_BENCHMARKS=OFF -DTESSERA_BUILD_TESTS=ON)
# EXTRA_CMAKE_ARGS: e.g. a dry run elsewhere hiding that machine's libraries (README.md).
# shellcheck disable=SC2206
args+=(${EXTRA_CMAKE_ARGS:-})
if ! command -v ccache >/dev/null; then  # the presets launch compilers through ccache
  args+=(-DCMAKE_C_COMPILER_LAUNCHER= -DCMAKE_CXX_COMPILER_LAUNCHER= -DCMAKE_CUDA_COMPILER_LAUNCHER=)
fi
if ! command -v make >/dev/null && command -v ninja >/dev/null; then args+=(-G Ninja); fi
# NCCL ships in the nvidia-nccl pip wheel on this image, as libnccl.so.2 only: point CMake at it.
nccl_dir=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null || true)
if [ -n "$nccl_dir" ] && [ -f "$nccl_dir/lib/libnccl.so.2" ]; then
  args+=(-DNCCL_LIBRARY="$nccl_dir/lib/libnccl.so.2")
  export CPATH="$nccl_dir/include${CPATH:+:$CPATH}"
  export LD_LIBRARY_PATH="$nccl_dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
gtest_pack=$CARRY/gtest
if [ -d "$gtest_pack/include/gtest" ]; then
  pack=$(cd "$gtest_pack" && pwd)
  gtest_root=$pack  # Debian's prebuilt libraries, unless the sources build here
  if [ -f "$pack/src/CMakeLists.txt" ]; then
    prefix=$PWD/$BUILD-gtest
    if [ -f "$prefix/include/gtest/gtest.h" ] ||
       { cmake -S "$pack/src" -B "$prefix-build" -DCMAKE_BUILD_TYPE=Release \
           -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 >>"$log" 2>&1 &&
         cmake --build "$prefix-build" -j"$jobs" >>"$log" 2>&1 &&
         cmake --install "$prefix-build" >>"$log" 2>&1; }; then
      gtest_root=$prefix
    else
      say "GoogleTest sources did not build here (see build.log); using the prebuilt copy"
    fi
  fi
  args+=(-DGTest_ROOT="$gtest_root")
fi
if ! timeout "$(limit 60)" cmake "${args[@]}" >>"$log" 2>&1; then
  grep -q GTest "$log" && row configure FAIL "GoogleTest MISSING: no $gtest_pack (run benchmarks/gpu/pack.sh, carry it)" ||
    row configure FAIL "see build.log"
  tail -30 "$log"
  kill "$gen_pid" 2>/dev/null
  exit 1
fi
say "GoogleTest: $(sed -n 's/^GTest_DIR:[A-Z]*=//p' "$BUILD/CMakeCache.txt")"
nccl=$(sed -n 's/^NCCL_LIBRARY:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
case $nccl in ""|*NOTFOUND*) row nccl_library MISSING "no NCCL library found (the nvidia-nccl wheel?)" ;;
  *) row nccl_library ok "$nccl" ;; esac
cublas=$(sed -n 's/^CUDA_cublas_LIBRARY:[A-Z]*=//p' "$BUILD/CMakeCache.txt")
# Without cuBLAS the backend still works (every matmul on the GEMV): shown, not failed.
if [ -n "$cublas" ]; then row cublas ok "$cublas"; else row cublas absent "every matmul on the GEMV"; fi

# --- build ---------------------------------------------------------------------------------
section build
targets=(tessera_ops_tests tessera_model_tests tessera_comm_tests tessera_core_tests model_check model_bench)
t0=$(date +%s)
if timeout "$(limit "${BUILD_LIMIT_S:-240}")" cmake --build "$BUILD" -j"$jobs" --target "${targets[@]}" >>"$log" 2>&1; then
  row build ok "$((${#targets[@]})) targets in $(($(date +%s) - t0)) s"
else
  row build FAIL "see build.log ($(($(date +%s) - t0)) s)"
  grep -E 'error|Error' "$log" | head -20
  # Go on: whatever did build still runs; each missing binary is named below.
fi

# --- tests ---------------------------------------------------------------------------------
# gtest NAME LIMIT SKIPS BINARY ARGS...: fails on a missing binary, a timeout, a failure, 0 passed,
# or (SKIPS=no) any skip: the cuda instances skip only when no GPU is seen, which here is a failure.
gtest() {
  local name=$1 want=$2 skips=$3 bin=$4
  shift 4
  if [ ! -x "$bin" ]; then row "$name" MISSING "$bin not built"; return; fi
  local l; l=$(limit "$want")
  if [ "$l" = 0 ]; then row "$name" "skipped (time)" ""; return; fi
  section "$name"
  echo "===== $name" >>"$tests"
  timeout "$l" "$bin" "$@" >"$work/$name.txt" 2>&1
  local rc=$?
  cat "$work/$name.txt" >>"$tests"
  tail -15 "$work/$name.txt"
  local passed skipped failed
  passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$work/$name.txt")
  skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$work/$name.txt")
  failed=$(grep -E '^\[  FAILED  \] [A-Za-z]' "$work/$name.txt" | sed 's/ (.*//' | sort -u | wc -l)
  local detail="passed ${passed:-0}, skipped ${skipped:-0}, failed $failed, rc $rc"
  if [ "$rc" = 124 ]; then row "$name" FAIL "timed out after $l s; $detail"
  elif [ "$rc" != 0 ] || [ "$failed" != 0 ]; then row "$name" FAIL "$detail"
  elif [ "${passed:-0}" = 0 ]; then row "$name" FAIL "zero tests passed; $detail"
  elif [ "$skips" = no ] && [ "${skipped:-0}" != 0 ]; then row "$name" FAIL "skipped on the GPU machine; $detail"
  else row "$name" ok "$detail"; fi
  grep -E '^\[  FAILED  \] [A-Za-z]' "$work/$name.txt" | head -10 | sed 's/^/  /' | tee -a "$summary"
}
# The cuda instances only (the cpu and guarded ones ran in CI). NCCL cases needing more GPUs than
# this machine has skip, so skips are allowed there (but not zero passed).
gtest op_suite 90 no "$BUILD/tests/tessera_ops_tests" \
  --gtest_filter='Devices/*/cuda*:KquantTest.Cuda*'
gtest model_on_device 45 no "$BUILD/tests/tessera_model_tests" --gtest_filter='Devices/LlamaOnDevice.*/cuda'
gtest nccl_tests 45 yes "$BUILD/tests/tessera_comm_tests" --gtest_filter='Nccl*'

# --- the whole model, cuda:0 against the CPU -----------------------------------------------
for spec in $CHECK_MODELS; do
  # NAME or NAME:KV (the device's KV cache type; the CPU reference keeps f32).
  m=${spec%%:*} kv=f32
  [ "$spec" != "$m" ] && kv=${spec#*:}
  name=check_$m
  [ "$kv" != f32 ] && name=${name}_kv_$kv
  if [ ! -x "$BUILD/benchmarks/gpu/model_check" ]; then row "$name" MISSING "model_check not built"; continue; fi
  l=$(limit 60)
  if [ "$l" = 0 ]; then row "$name" "skipped (time)" ""; continue; fi
  if ! wait_for "$MODELS/$m.gguf" "$l"; then row "$name" FAIL "model not generated (models.log)"; continue; fi
  section "$name"
  l=$(limit 60)
  timeout "$l" "$BUILD/benchmarks/gpu/model_check" --model "$MODELS/$m.gguf" --device cuda:0 \
    --tokens 16 --kv-cache-dtype "$kv" --json "$work/$name.json" 2>&1 | tee -a "$tests"
  rc=${PIPESTATUS[0]}
  case $rc in 0) row "$name" ok "16 tokens x 5 prompts (tests.txt)" ;;
    1) row "$name" FAIL "mismatch (tests.txt)" ;; 124) row "$name" FAIL "timed out after $l s" ;;
    *) row "$name" FAIL "error rc $rc (tests.txt)" ;; esac
done

# --- compute-sanitizer memcheck over the cuda op suite -------------------------------------
l=$(limit 75)
if ! command -v compute-sanitizer >/dev/null; then row memcheck "not run" "no compute-sanitizer"
elif [ ! -x "$BUILD/tests/tessera_ops_tests" ]; then row memcheck MISSING "tessera_ops_tests not built"
elif [ "$l" = 0 ]; then row memcheck "skipped (time)" ""
else
  section memcheck
  timeout "$l" compute-sanitizer --tool memcheck --error-exitcode 9 "$BUILD/tests/tessera_ops_tests" \
    --gtest_filter='Devices/*/cuda*:-*GemmTiles*' \
    >"$OUT/memcheck.txt" 2>&1
  rc=$?
  tail -5 "$OUT/memcheck.txt"
  errs=$(grep -E 'ERROR SUMMARY' "$OUT/memcheck.txt" | tail -1)
  if [ "$rc" = 0 ]; then row memcheck ok "$errs"
  elif [ "$rc" = 9 ]; then row memcheck FAIL "$errs"
  elif [ "$rc" = 124 ]; then row memcheck "not run" "timed out after $l s (partial: memcheck.txt)"
  elif grep -qiE 'not supported|unable to|refus|permission|Target application terminated before' "$OUT/memcheck.txt" ||
       [ -z "$errs" ]; then row memcheck "not run" "refused here, rc $rc (memcheck.txt)"
  else row memcheck FAIL "rc $rc $errs"; fi
fi

# --- kernel benchmarks ---------------------------------------------------------------------
# cuBLAS: the toolkit's, else the nvidia-cublas wheel's (linked by path, found again at run time).
blas_args=(-lcublas)
if ! ls "$(dirname "$(command -v nvcc)")"/../lib*/libcublas.so* >/dev/null 2>&1 &&
   ! ls "$(dirname "$(command -v nvcc)")"/../targets/*/lib/libcublas.so* >/dev/null 2>&1; then
  blas_dir=$(python3 -c 'import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))' 2>/dev/null || true)
  if [ -n "$blas_dir" ] && ls "$blas_dir"/lib/libcublas.so* >/dev/null 2>&1; then
    blas_so=$(ls "$blas_dir"/lib/libcublas.so* | head -1)
    blas_args=("$blas_so" -Xlinker "-rpath=$blas_dir/lib")
    export CPATH="$blas_dir/include${CPATH:+:$CPATH}"
  fi
fi
l=$(limit 60)
if [ "$l" = 0 ]; then row kernels_bench "skipped (time)" ""
else
  section kernels_bench
  if timeout "$l" nvcc -O3 -std=c++17 -arch=$([ "$cuda_arch" = native ] && echo native || echo sm_$cuda_arch) -Ikernels/include -Iinclude -Isrc/ops \
       benchmarks/gpu/kernels_bench.cu benchmarks/gpu/matmul_bench.cu src/ops/cuda_matmul_plan.cpp \
       "$BUILD/kernels/libtessera_kernels.a" "${blas_args[@]}" -o "$BUILD/kernels_bench" >>"$log" 2>&1; then
    l=$(limit 60)
    echo "===== kernels_bench" >>"$bench"
    timeout "$l" "$BUILD/kernels_bench" 2>&1 | tee -a "$bench"
    rc=${PIPESTATUS[0]}
    [ "$rc" = 0 ] && row kernels_bench ok "bench.txt" || row kernels_bench FAIL "rc $rc"
  elif [ "$(limit 1)" = 0 ]; then
    row kernels_bench "skipped (time)" "nvcc cut short by the budget"
  else
    row kernels_bench FAIL "nvcc build failed (build.log)"
  fi
fi

# --- whole-model benchmarks ----------------------------------------------------------------
for m in $BENCH_MODELS; do
  name=bench_$m
  if [ ! -x "$BUILD/benchmarks/gpu/model_bench" ]; then row "$name" MISSING "model_bench not built"; continue; fi
  l=$(limit 60)
  if [ "$l" = 0 ]; then row "$name" "skipped (time)" ""; continue; fi
  if ! wait_for "$MODELS/$m.gguf" "$l"; then row "$name" "skipped (model)" "not generated in time (models.log)"; continue; fi
  section "$name"
  echo "===== $name" >>"$bench"
  timeout "$(limit 60)" "$BUILD/benchmarks/gpu/model_bench" --model "$MODELS/$m.gguf" --device cuda:0 \
    --batches 1,8,64 --steps 32 --prefill 512 --json "$work/$name.json" 2>&1 | tee -a "$bench"
  rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] && row "$name" ok "bench.txt" || row "$name" FAIL "rc $rc"
  case $m in llama8b-*) rm -f "$MODELS/$m.gguf" ;; esac  # 5-16 GB each: keep the disk free
done

# --- the transformers peer on the same 1B weights ------------------------------------------
for p in $PEER_MODELS; do
  d=${p##*-} name=hf_peer_${p##*-} dir=$MODELS/$p
  l=$(limit 60)
  if [ "$l" = 0 ]; then row "$name" "skipped (time)" ""; continue; fi
  if ! wait_for "$dir/config.json" "$l"; then row "$name" "skipped (model)" "not generated in time"; continue; fi
  section "$name"
  echo "===== $name" >>"$bench"
  dtype=$([ $d = bf16 ] && echo bfloat16 || echo float16)
  timeout "$(limit 60)" python3 benchmarks/gpu/hf_peer.py --model "$dir" --dtype "$dtype" \
    --batches 1,8 --tokens 32 --json "$work/$name.json" 2>&1 | tee -a "$bench"
  rc=${PIPESTATUS[0]}
  [ "$rc" = 0 ] && row "$name" ok "bench.txt" || row "$name" FAIL "rc $rc"
done

[ -n "$gen_pid" ] && kill "$gen_pid" 2>/dev/null
wait 2>/dev/null

# --- summary -------------------------------------------------------------------------------
echo
echo "===== summary ($(elapsed) s of $BUDGET_S)"
python3 benchmarks/gpu/summarize.py --rows "$rows" --work "$work" --json "$OUT/summary.json" \
  --elapsed "$(elapsed)" --status "$status" | tee -a "$summary"
exit $status
