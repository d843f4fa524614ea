#!/usr/bin/env bash
# The GPU checks of issue #17, as one script for a machine with one GPU (no internet needed):
#   1. the device tests: the compiled Pallas kernel (tests/test_pallas.py -k gpu), the precision policy, same key ->
#      same bits in one process (tests/test_determinism.py), then the re-compilation check under the one XLA flag
#      that makes XLA:GPU deterministic (--xla_gpu_deterministic_ops=true; jaxprob never sets it);
#   2. benchmarks/bench_accelerator.py: the issue's table (jaxprob, the PyTorch peers, the floors) and the error of
#      each matrix-product precision;
#   3. the test modules that failed on the GPU before the precision policy (mixture, k-means, KDE, autoencoder).
# Every step has its own time limit and log under $OUT (default ./gpu_out); a failing step does not stop the others.
# Usage: OUT=/some/dir STEPS="device bench modules" bash benchmarks/gpu_checks.sh
# Each step fits in 10 minutes (device about 3, bench about 5, modules about 5): where one command may run at most
# 10 minutes, run them one per command, e.g. STEPS=device, then STEPS=bench, then STEPS=modules.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
STEPS=${STEPS:-"device bench modules"}
PY=${PYTHON:-python}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# the multi-process test starts CPU-only children; nothing here preallocates the GPU for them
export XLA_PYTHON_CLIENT_PREALLOCATE=false
status=0

step() {  # step NAME LIMIT_SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s)" | tee -a "$OUT/summary.txt"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "--- $name: rc=$rc, $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.log"
  [ $rc -eq 0 ] || status=1
}

$PY -c "import jax; print(jax.__version__, jax.devices())" | tee "$OUT/device.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >> "$OUT/device.txt" 2>/dev/null

PYTEST="$PY -m pytest -n 0 -p no:cacheprovider -q -rs"
for s in $STEPS; do
  case $s in
    device)
      step device_tests 240 $PYTEST tests/test_pallas.py tests/test_precision.py tests/test_determinism.py
      step deterministic_flag 150 env XLA_FLAGS="--xla_gpu_deterministic_ops=true" \
        $PYTEST tests/test_determinism.py -k "recompiling or one_process"
      ;;
    bench)
      step bench 420 $PY benchmarks/bench_accelerator.py --json "$OUT/bench.json"
      ;;
    modules)
      step modules 420 $PYTEST tests/test_mixture.py tests/test_kmeans.py tests/test_kde.py tests/test_autoencoder.py
      ;;
  esac
done
exit $status
