#!/usr/bin/env bash
# Run HERE (the development machine), before a device run: puts what the device machine cannot see into
# benchmarks/gpu/data/ (ignored by git; name it in the run's `carry`):
#   data/ffhq_stylegan_140k_sample/{real,fake}/  the shared faces, copied from ../shared (the device sees only
#                                                the working tree, not ../shared): 1,756 JPEGs, about 23 MB
#   data/wheels/                                 Keras and the few packages the device image lacks (Python 3.12
#                                                wheels: keras, namex, optree, absl-py, packaging,
#                                                skops), about 3 MB
#
#   bash benchmarks/gpu/prepare.sh              # everything
#   bash benchmarks/gpu/prepare.sh --images 32  # the first 32 faces of each class only (a quick CPU check)
#
# Copying again replaces the faces; wheels already there are kept.
set -euo pipefail
cd "$(dirname "$0")/../.."
per_class=""
while [ $# -gt 0 ]; do
  case "$1" in
    --images) per_class="$2"; shift 2 ;;
    *) echo "unknown argument: $1 (use --images N)" >&2; exit 2 ;;
  esac
done

source_dir="../shared/data/ffhq_stylegan_140k_sample"
target="benchmarks/gpu/data/ffhq_stylegan_140k_sample"
if [ ! -d "$source_dir/real" ] || [ ! -d "$source_dir/fake" ]; then
  echo "prepare.sh needs the shared faces at $source_dir (real/ and fake/ beside the checkout); not found." >&2
  exit 1
fi
rm -rf "$target"
for class in real fake; do
  mkdir -p "$target/$class"
  if [ -n "$per_class" ]; then
    find "$source_dir/$class" -maxdepth 1 -type f -name '*.jpg' | sort | sed -n "1,${per_class}p" \
      | xargs -r cp -t "$target/$class"
  else
    find "$source_dir/$class" -maxdepth 1 -type f -name '*.jpg' -print0 | xargs -0 -r cp -t "$target/$class"
  fi
done
[ -f "$source_dir/SOURCE.md" ] && cp "$source_dir/SOURCE.md" "$target/"
echo "faces: $(find "$target" -name '*.jpg' | wc -l) JPEGs, $(du -sh "$target" | cut -f1) in $target"

# Keras is not installed on the device machine (its image holds JAX, h5py, numpy, rich, typer, scikit-learn,
# Pillow, matplotlib, ml-dtypes, absl-py); compare's scikit-learn probes are saved with skops.
wheels="benchmarks/gpu/data/wheels"
mkdir -p "$wheels"
PYTHON="${PYTHON:-python3}"
for requirement in keras==3.15.1 namex==0.1.0 optree==0.20.0 absl-py==2.5.1 packaging skops==0.16.0; do
  name="${requirement%%==*}"
  name="${name//-/_}"
  if ls "$wheels/$name"-*.whl >/dev/null 2>&1; then
    continue
  fi
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d "$wheels" "$requirement"
done
echo "wheels: $(ls "$wheels" | tr '\n' ' ')($(du -sh "$wheels" | cut -f1))"
echo "carry: benchmarks/gpu/data ($(du -sh benchmarks/gpu/data | cut -f1); the device limit is 64 MiB with the tree)"
