#!/usr/bin/env bash
# The whole GPU check in one call, for a bare GPU machine (nvcc, CMake, ninja, PyTorch, ncu; no
# Debian -dev packages, no network): configure the engine-only preset with CUDA on, build the CUDA
# tests with all cores, run them (and the NCCL tests when NCCL was found), a compute-sanitizer
# memcheck pass over the new kernels, and the standalone kernel benchmark; then write a summary
# to $OUT (default ./gpu-out). About 3-5 minutes on 16 cores; the per-step timeouts keep a hang
# inside the 10-minute device call. Rerun on a warm machine reuses build-gpu (incremental).
#
# GoogleTest: the GPU image has none. Run benchmarks/gpu/pack_gtest.sh on the dev machine first
# and carry build-cuda/gpu-carry (or set GTEST_PACK); without GoogleTest the script configures with
# -DTESSERA_BUILD_TESTS=OFF, says so, and only builds the kernels and runs the benchmark.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-./gpu-out}
BUILD=${BUILD:-build-gpu}
GTEST_PACK=${GTEST_PACK:-build-cuda/gpu-carry/gtest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
summary=$OUT/summary.txt
jobs=$(nproc)
status=0
: >"$summary"
say() { echo "$*" | tee -a "$summary"; }
section() { echo; echo "===== $* ($(date -u +%T))"; }

say "tessera GPU check  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
section nvidia-smi
nvidia-smi 2>&1
say "card: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo 'nvidia-smi failed')"
say "nvcc: $(nvcc --version 2>/dev/null | tail -1)"
say "cmake: $(cmake --version | head -1)"

# --- configure -----------------------------------------------------------------------------
section configure
# No -Werror here: CI enforces it; a different host compiler must not cost the GPU session.
args=(--preset engine-only -B "$BUILD" -DTESSERA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native)
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
tests=ON
if [ -d "$GTEST_PACK/include/gtest" ]; then
  pack=$(cd "$GTEST_PACK" && pwd)
  gtest_root=$pack  # Debian's prebuilt libraries, unless the sources build here
  if [ -f "$pack/src/CMakeLists.txt" ]; then
    prefix=$PWD/$BUILD-gtest
    if [ -f "$prefix/include/gtest/gtest.h" ] ||
       { cmake -S "$pack/src" -B "$prefix-build" -DCMAKE_BUILD_TYPE=Release \
           -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 >"$OUT/gtest.log" 2>&1 &&
         cmake --build "$prefix-build" -j"$jobs" >>"$OUT/gtest.log" 2>&1 &&
         cmake --install "$prefix-build" >>"$OUT/gtest.log" 2>&1; }; then
      gtest_root=$prefix
    else
      say "GoogleTest sources did not build here (see gtest.log); using the prebuilt copy"
    fi
  fi
  args+=(-DGTest_ROOT="$gtest_root")
  say "GoogleTest: carried, from $gtest_root"
fi
log=$OUT/build.log  # configure + build output (few files: the device tool returns at most 8)
if ! cmake "${args[@]}" -DTESSERA_BUILD_TESTS=ON >"$log" 2>&1; then
  tests=OFF
  if grep -q GTest "$log"; then
    say "GoogleTest not found (no system package, no $GTEST_PACK): configuring with" \
        "-DTESSERA_BUILD_TESTS=OFF - NO TESTS WILL RUN (run benchmarks/gpu/pack_gtest.sh, carry it)"
  else
    say "configure with tests failed for another reason (see build.log); retrying without tests"
    tail -20 "$log"
  fi
  rm -rf "$BUILD"
  if ! cmake "${args[@]}" -DTESSERA_BUILD_TESTS=OFF >>"$log" 2>&1; then
    say "CONFIGURE FAILED (see build.log)"
    tail -40 "$log"
    exit 1
  fi
fi
tail -3 "$log"
say "NCCL: $(grep -E '^NCCL_LIBRARY' "$BUILD/CMakeCache.txt" | cut -d= -f2)"
# Without cuBLAS the CUDA backend still builds, every matmul on the GEMV: say which one this is.
say "cuBLAS: $(grep -E '^CUDA_cublas_LIBRARY' "$BUILD/CMakeCache.txt" | cut -d= -f2 || true)"

# --- build ---------------------------------------------------------------------------------
section build
# Separate builds, so that a failure in the comm tests cannot block the CUDA tests.
build() {
  if cmake --build "$BUILD" -j"$jobs" --target "$@" >>"$log" 2>&1; then
    say "build: ok ($*)"
  else
    say "BUILD FAILED: $* (see build.log)"
    grep -E 'error' "$log" | head -20
    return 1
  fi
}
build tessera_kernels tessera_ops || exit 1
if [ "$tests" = ON ]; then
  build tessera_ops_tests || status=1
  build tessera_core_tests || status=1
  build tessera_model_tests || status=1
  build tessera_comm_tests || status=1
fi

# --- tests ---------------------------------------------------------------------------------
run_test() {  # name, binary, extra args...
  local name=$1 bin=$2
  shift 2
  if [ ! -x "$bin" ]; then say "$name: not built"; return; fi
  section "$name"
  timeout "${TEST_TIMEOUT:-120}" "$bin" "$@" 2>&1 | tee "$OUT/$name.txt" | tail -40
  local rc=${PIPESTATUS[0]}
  say "$name: rc=$rc $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/$name.txt" | tr '\n' ' ')"
  grep -E '^\[  FAILED  \]' "$OUT/$name.txt" | sed 's/^/  /' | tee -a "$summary" >/dev/null
  [ "$rc" = 0 ] || status=1
}
if [ "$tests" = ON ]; then
  # The device-parametrised op suite: the cuda instances run here (cpu/guarded run too, cheaply).
  run_test backend_ops "$BUILD/tests/tessera_ops_tests" \
    --gtest_filter='Devices/BackendOps.*:Devices/DeviceMatmul.*:KquantTest.Cuda*'
  run_test guarded_core "$BUILD/tests/tessera_core_tests" --gtest_filter='GuardedDevice.*'
  # The whole model (a tiny generated llama) on cuda:0 against the CPU, prefill + decode steps.
  run_test model_on_device "$BUILD/tests/tessera_model_tests" --gtest_filter='Devices/LlamaOnDevice.*' 
  run_test nccl_tests "$BUILD/tests/tessera_comm_tests" --gtest_filter='Nccl*'
  if command -v compute-sanitizer >/dev/null && [ -x "$BUILD/tests/tessera_ops_tests" ]; then
    section "compute-sanitizer memcheck"
    timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 \
      "$BUILD/tests/tessera_ops_tests" \
      --gtest_filter='Devices/BackendOps.*/cuda:Devices/DeviceMatmul.*/cuda:-*GemmTiles*' \
      >"$OUT/memcheck.txt" 2>&1
    rc=$?
    tail -8 "$OUT/memcheck.txt"
    say "memcheck: rc=$rc $(grep -E 'ERROR SUMMARY' "$OUT/memcheck.txt" | tail -1)"
  fi
fi

# --- benchmark -----------------------------------------------------------------------------
section kernels_bench
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
if nvcc -O3 -std=c++17 -arch=native -Ikernels/include -Iinclude -Isrc/ops \
     benchmarks/gpu/kernels_bench.cu benchmarks/gpu/matmul_bench.cu src/ops/cuda_matmul_plan.cpp \
     "$BUILD/kernels/libtessera_kernels.a" "${blas_args[@]}" -o "$BUILD/kernels_bench" >>"$log" 2>&1; then
  timeout 120 "$BUILD/kernels_bench" 2>&1 | tee "$OUT/kernels_bench.txt"
  say "kernels_bench: rc=${PIPESTATUS[0]} (see kernels_bench.txt)"
else
  say "kernels_bench: BUILD FAILED (see build.log)"
  tail -20 "$log"
fi

echo
echo "===== summary ($summary)"
cat "$summary"
exit $status
