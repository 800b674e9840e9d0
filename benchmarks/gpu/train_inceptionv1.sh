#!/usr/bin/env bash
# On the device machine (one GPU, Python 3.12 with JAX + CUDA, no TensorFlow, no Keras): train InceptionV1 from
# scratch with featurekit's own command at the faces' own 256 px with a cosine schedule, extract the trained
# backbone's features, compare logistic regression and the head on them, and write the results to $OUT.
# Budget: about 8 minutes on one H100/H200 (untested on a GPU so far: see benchmarks/gpu/README.md).
#
# Before, HERE:  bash benchmarks/gpu/prepare.sh   (faces + wheels into benchmarks/gpu/data/, ignored by git)
# On the device: bash benchmarks/gpu/train_inceptionv1.sh   with carry = ["benchmarks/gpu/data"]
#
# Settings (environment): EPOCHS (40), IMAGE_SIZE (256), BATCH_SIZE (64), SCHEDULE (cosine), DATA (the carried
# faces), WORK (/tmp/featurekit-train: local disk for the run, the model files and the caches), OUT ($OUT, else
# WORK/out), PYTHON (python3). A CPU check here (about 6 minutes on 2 busy cores):
#   bash benchmarks/gpu/prepare.sh --images 32
#   PYTHON=.venv/bin/python EPOCHS=1 IMAGE_SIZE=64 bash benchmarks/gpu/train_inceptionv1.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

EPOCHS="${EPOCHS:-40}"
IMAGE_SIZE="${IMAGE_SIZE:-256}"
BATCH_SIZE="${BATCH_SIZE:-64}"
SCHEDULE="${SCHEDULE:-cosine}"
DATA="${DATA:-benchmarks/gpu/data/ffhq_stylegan_140k_sample}"
WORK="${WORK:-/tmp/featurekit-train}"
OUT="${OUT:-$WORK/out}"
PYTHON="${PYTHON:-python3}"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3

started=$(date +%s)
step() { echo "== [$(( $(date +%s) - started )) s] $*"; }

if [ ! -d "$DATA/real" ] || [ ! -d "$DATA/fake" ]; then
  echo "No faces at $DATA: run 'bash benchmarks/gpu/prepare.sh' here first and carry benchmarks/gpu/data." >&2
  exit 1
fi
mkdir -p "$WORK" "$OUT"
# One log of everything; $OUT gets 5 files (the device returns at most 8): run.log, training.json,
# end_to_end_test.json, compare.md, compare.json. The model files (~25 MB each) stay in $WORK.
exec > >(tee "$OUT/run.log") 2>&1

# Keras (and the few packages the device image lacks) from the carried wheels, into a folder on PYTHONPATH: a
# venv made with --system-site-packages from the device's python3 (itself a venv) would not see its JAX.
if ! "$PYTHON" -c "import keras, skops" 2>/dev/null; then
  step "installing $(ls benchmarks/gpu/data/wheels | tr '\n' ' ')"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
    benchmarks/gpu/data/wheels/*.whl
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi

step "environment"
{
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi (no GPU)"
  nproc
  "$PYTHON" - <<'PY'
import jax, keras, numpy, sys
print(f"python {sys.version.split()[0]}, jax {jax.__version__}, keras {keras.__version__} ({keras.backend.backend()}), "
      f"numpy {numpy.__version__}")
print("devices:", jax.devices())
PY
  echo "settings: epochs $EPOCHS, image size $IMAGE_SIZE, batch $BATCH_SIZE, schedule $SCHEDULE, data $DATA"
}

step "train-backbone"
# --patience EPOCHS: the whole cosine schedule runs (the best epoch on valid is still the one kept).
"$PYTHON" cli.py train-backbone inceptionv1 --data "$DATA" --image-size "$IMAGE_SIZE" --epochs "$EPOCHS" \
  --schedule "$SCHEDULE" --batch-size "$BATCH_SIZE" --patience "$EPOCHS" --out "$WORK/run" --overwrite \
  --no-progress
cp "$WORK/run/training.json" "$OUT/training.json"
trained=$(date +%s)

step "end-to-end test accuracy of the trained network (with its top)"
"$PYTHON" benchmarks/bench_train_backbone.py --evaluate-run "$WORK/run" --data "$DATA" --image-size "$IMAGE_SIZE" \
  --out "$OUT/end_to_end_test.json"

step "extract the trained backbone (inception_5b, avg and meanstd, one pass)"
rm -rf "$WORK/cache" "$WORK/runs"
"$PYTHON" cli.py extract --backbone inceptionv1 --data "$DATA" --weights "$WORK/run/inceptionv1.keras" \
  --image-size "$IMAGE_SIZE" --pooling avg,meanstd --cache-dir "$WORK/cache" --no-progress

step "compare logreg and the head on the trained backbone's features"
caches=()
for cache in "$WORK"/cache/*.h5; do caches+=(--cache "$cache"); done
"$PYTHON" cli.py compare "${caches[@]}" --probe logreg --probe head --runs-dir "$WORK/runs" --format md \
  --out "$OUT/compare.md"
# The same rows as JSON (the fitted probes are reused, nothing is trained again).
"$PYTHON" cli.py compare "${caches[@]}" --probe logreg --probe head --runs-dir "$WORK/runs" --format json \
  --out "$OUT/compare.json" >/dev/null
cat "$OUT/compare.md"

finished=$(date +%s)
step "done: training $(( trained - started )) s, everything $(( finished - started )) s; results in $OUT"
