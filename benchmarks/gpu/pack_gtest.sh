#!/usr/bin/env bash
# Run HERE (the dev machine, which has Debian's libgtest-dev) before a GPU session: copies
# GoogleTest's headers, static libraries and CMake package into an ignored folder that the device
# tool can carry, because the bare GPU image has no GoogleTest and cannot download one. run.sh
# picks the copy up from $GTEST_PACK (default build-cuda/gpu-carry/gtest). Packs both the sources
# (run.sh builds them there with the machine's own compiler, so no libstdc++ mismatch) and
# Debian's prebuilt static libraries as a fallback. ~6 MB.
set -euo pipefail
cd "$(dirname "$0")/../.."
dest=${GTEST_PACK:-build-cuda/gpu-carry/gtest}
arch=x86_64-linux-gnu
rm -rf "$dest"
mkdir -p "$dest/include" "$dest/lib/$arch/cmake"
cp -r /usr/include/gtest /usr/include/gmock "$dest/include/"
cp /usr/lib/$arch/libgtest*.a /usr/lib/$arch/libgmock*.a "$dest/lib/$arch/"
# The package's targets locate the prefix three folders above their own file, so keeping the
# lib/<arch>/cmake/GTest layout makes the copy a relocatable prefix.
cp -r /usr/lib/$arch/cmake/GTest "$dest/lib/$arch/cmake/"
cp -r /usr/src/googletest "$dest/src"
du -sh "$dest"
