#!/usr/bin/env bash
# Builds liblloyd_pass.so (the native Lloyd pass of probe.py) next to this script.
# -ffp-contract=fast lets g++ fuse the multiply-adds (ISO -std=c++17 turns contraction off);
# -mprefer-vector-width=512 lets it use the full AVX-512 registers where the CPU has them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
include_dir="$("$python" -c "import jax.ffi; print(jax.ffi.include_dir())")"
"${CXX:-g++}" -O3 -march=native -mprefer-vector-width=512 -ffp-contract=fast -shared -fPIC -std=c++17 \
  -I"$include_dir" "$here/lloyd_pass.cc" -o "$here/liblloyd_pass.so" -pthread ${EXTRA_CXXFLAGS:-}
echo "built $here/liblloyd_pass.so"
