#!/usr/bin/env bash
# Create .venv at the repo root, install featurekit with its test extras, then (unless --no-job)
# run the main job on the bundled sample: extract -> fit -> compare.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
if [ "${1:-}" != "--no-job" ]; then
  .venv/bin/python cli.py run --config configs/default.toml
fi
