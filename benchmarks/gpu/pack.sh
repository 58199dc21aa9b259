#!/usr/bin/env bash
# Run HERE (the dev machine) before a GPU session: makes, in one ignored folder the device tool
# can carry (default build-cuda/gpu-carry, at most 64 MiB), everything the bare GPU machine needs
# for benchmarks/gpu/run.sh and cannot download:
#   gtest/   GoogleTest: Debian's sources (run.sh builds them there with the machine's own
#            compiler, so no libstdc++ mismatch) and Debian's headers, static libraries and CMake
#            package as a fallback (the lib/<arch>/cmake/GTest layout keeps it a relocatable
#            prefix: the package's targets find the prefix three folders above their own file);
#   python/  the pure-Python `gguf` package, which make_models.py writes models with (its own
#            needs there, numpy and pyyaml, come with PyTorch and transformers); on PYTHONPATH.
# The engine-only build needs no other library: spdlog, nlohmann_json and the rest are optional
# there (engine-only logs to stderr and reads GGUF, not HF directories).
# Fails when a piece is missing here or the folder exceeds 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=${GPU_CARRY:-build-cuda/gpu-carry}
arch=$(gcc -dumpmachine 2>/dev/null || echo x86_64-linux-gnu)
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=/work/main/.venv/bin/python
[ -x "$python" ] || python=python3
rm -rf "$dest"
mkdir -p "$dest/gtest/include" "$dest/gtest/lib/$arch/cmake" "$dest/python"

for f in /usr/include/gtest /usr/include/gmock /usr/src/googletest/CMakeLists.txt \
         /usr/lib/$arch/cmake/GTest; do
  [ -e "$f" ] || { echo "pack.sh: $f missing: install libgtest-dev, googletest (make deps)" >&2; exit 1; }
done
cp -r /usr/include/gtest /usr/include/gmock "$dest/gtest/include/"
cp /usr/lib/$arch/libgtest*.a /usr/lib/$arch/libgmock*.a "$dest/gtest/lib/$arch/"
cp -r /usr/lib/$arch/cmake/GTest "$dest/gtest/lib/$arch/cmake/"
cp -r /usr/src/googletest "$dest/gtest/src"

gguf_dir=$("$python" -c 'import gguf, os; print(os.path.dirname(gguf.__file__))' 2>/dev/null) || {
  echo "pack.sh: no gguf package in $python (pip install gguf, or make deps)" >&2; exit 1; }
cp -r "$gguf_dir" "$dest/python/gguf"
find "$dest/python" -name __pycache__ -prune -exec rm -rf {} +
# The copy must import on its own (from the pack, not from where it was found).
PYTHONPATH="$dest/python" "$python" -c 'import gguf, sys; assert gguf.__file__.startswith(sys.argv[1]), gguf.__file__' \
  "$(cd "$dest/python" && pwd)" || { echo "pack.sh: the packed gguf does not import" >&2; exit 1; }

size=$(du -sm "$dest" | cut -f1)
echo "pack.sh: $dest: ${size} MiB ($(du -sh "$dest/gtest" | cut -f1) GoogleTest, $(du -sh "$dest/python" | cut -f1) gguf)"
if [ "$size" -gt 64 ]; then
  echo "pack.sh: over the 64 MiB the device tool carries" >&2
  exit 1
fi
