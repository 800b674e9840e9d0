#!/usr/bin/env bash
# Run HERE (a machine with PyPI access and ../shared), before the GPU run. Fetches what the GPU machine lacks
# into ignored folders that the run carries: the Keras wheels for its Python 3.12 (Keras and the few pure or
# small dependencies it does not have; JAX, ml_dtypes, numpy, h5py, rich are there), and a copy of the shared
# faces (the device sees only the working tree). About 3 MB of wheels and 23 MB of faces.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf wheels && mkdir -p wheels
python_bin="${PYTHON:-../../.venv/bin/python}"
[ -x "$python_bin" ] || python_bin=python3
"$python_bin" -m pip download "keras==3.15.1" "namex==0.1.0" "optree==0.20.0" "absl-py==2.5.1" "packaging" \
  --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --quiet -d wheels
faces=../../../shared/data/ffhq_stylegan_140k_sample
if [ -d "$faces" ]; then
  rm -rf faces && mkdir -p faces && cp -r "$faces/real" "$faces/fake" faces/
fi
du -sh wheels faces 2>/dev/null || true
