#!/usr/bin/env bash
# The GPU benchmark, on the device machine (Python 3.12, JAX with CUDA; no TensorFlow, no Keras). Installs the
# carried Keras wheels into a private folder, then runs benchmarks/bench_gpu.py under KERAS_BACKEND=jax.
# Results: $OUT/gpu.json and $OUT/gpu.log. Extra arguments go to bench_gpu.py (e.g. --images 2000).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/featurekit-gpu-out}"
mkdir -p "$OUT"
wheels=benchmarks/gpu/data/wheels
if ! ls "$wheels"/keras-*.whl >/dev/null 2>&1; then
  echo "No Keras wheel in $wheels: run 'bash benchmarks/gpu/prepare.sh' first and carry benchmarks/gpu/data." >&2
  exit 3
fi
python_bin="${PYTHON:-python3}"
site=/tmp/featurekit-gpu-site
rm -rf "$site" && mkdir -p "$site"
if ! "$python_bin" -m pip install --quiet --no-deps --no-index --target "$site" "$wheels"/*.whl 2>/dev/null; then
  for wheel in "$wheels"/*.whl; do "$python_bin" -m zipfile -e "$wheel" "$site"; done  # a wheel is a zip
fi
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export KERAS_BACKEND=jax
"$python_bin" -c "import jax, keras; print('jax', jax.__version__, jax.devices(), '| keras', keras.__version__)"
"$python_bin" benchmarks/bench_gpu.py --out "$OUT/gpu.json" "$@" 2>&1 | tee "$OUT/gpu.log"
