#!/usr/bin/env bash
# On the device machine (one GPU, Python 3.12 with JAX + CUDA, no TensorFlow, no Keras): fine-tune MobileNet
# (the ImageNet weights shipped in featurekit/weights/, which travel with the checkout) above conv_pw_5_relu up
# to conv_pw_11_relu at the faces' own 256 px for more epochs than the CPUs allow, with augmented copies, and
# score it against its frozen parent with benchmarks/bench_finetune.py (test, JPEG/blur views, other generator).
# UNTESTED: no device machine was lent to the session that wrote it (see benchmarks/gpu/README.md).
#
# InceptionV3's genuine 2015-12-05 file (88 MB, ../shared/weights) exceeds what a run may carry (64 MiB), so the
# GPU fine-tunes MobileNet; set BACKBONE/WEIGHTS/UNFREEZE_FROM/TOP_LAYER to fine-tune another from a carried file.
#
# Before, HERE:  bash benchmarks/gpu/prepare.sh
#                cp -r ../shared/data/other_generator benchmarks/gpu/data/   (394 fakes of another generator)
# On the device: bash benchmarks/gpu/finetune.sh   with carry = ["benchmarks/gpu/data"], timeout_s 580
#
# Settings (environment): EPOCHS (40), PATIENCE (8), COPIES (3), IMAGE_SIZE (256), BATCH_SIZE (64),
# LEARNING_RATE (3e-4), BACKBONE (mobilenet), WEIGHTS (default), UNFREEZE_FROM (conv_pw_5_relu),
# TOP_LAYER (conv_pw_11_relu), OUT ($OUT, else /tmp/featurekit-finetune/out), PYTHON (python3).
set -euo pipefail
cd "$(dirname "$0")/../.."

DATA="benchmarks/gpu/data/ffhq_stylegan_140k_sample"
OTHER="benchmarks/gpu/data/other_generator/fake"
WORK="${WORK:-/tmp/featurekit-finetune}"
OUT="${OUT:-$WORK/out}"
PYTHON="${PYTHON:-python3}"
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3

for folder in "$DATA/real" "$DATA/fake" "$OTHER"; do
  if [ ! -d "$folder" ]; then
    echo "No $folder: run the two preparation commands at the top of this script here first." >&2
    exit 1
  fi
done
mkdir -p "$WORK" "$OUT"
exec > >(tee "$OUT/run.log") 2>&1

if ! "$PYTHON" -c "import keras, skops" 2>/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
    benchmarks/gpu/data/wheels/*.whl
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi (no GPU)"

# The run folder (runs/bench-finetune-...) resumes if the command is cut short and started again.
"$PYTHON" benchmarks/bench_finetune.py --data "$DATA" --other-fakes "$OTHER" \
  --backbone "${BACKBONE:-mobilenet}" --weights "${WEIGHTS:-default}" \
  --unfreeze-from "${UNFREEZE_FROM:-conv_pw_5_relu}" --top-layer "${TOP_LAYER:-conv_pw_11_relu}" \
  --image-size "${IMAGE_SIZE:-256}" --epochs "${EPOCHS:-40}" --patience "${PATIENCE:-8}" \
  --batch-size "${BATCH_SIZE:-64}" --learning-rate "${LEARNING_RATE:-3e-4}" --augment-copies "${COPIES:-3}" \
  --augment-views jpeg:30-95 blur:0-2 --out "$OUT/finetune_gpu"
