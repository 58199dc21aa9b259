#!/usr/bin/env bash
# The Debian (or Ubuntu) packages that hold the shared libraries a binary links, one per line: what
# a slim runtime image must install. Used by docker/Dockerfile.{cpu,cuda} in their build stage and
# by tests/python/test_deploy_files.py. Usage: scripts/runtime_packages.sh build/tessera
set -euo pipefail
bin=${1:?usage: runtime_packages.sh BINARY}
ldd "$bin" | awk '/=> \//{print $3}' | while read -r lib; do
  real=$(readlink -f "$lib")
  # dpkg knows a file by the path its package installed; with merged /usr that may be either.
  found=""
  for p in "$lib" "$real" "${real#/usr}" "/usr${lib#/usr}"; do
    if out=$(dpkg -S "$p" 2>/dev/null); then
      found="${out%%:*}"
      break
    fi
  done
  if [ -n "$found" ]; then echo "$found"; else echo "no package holds $lib" >&2; fi
done | sort -u
