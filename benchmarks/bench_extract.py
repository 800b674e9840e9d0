"""Extraction throughput: the tf.data pipeline into the cache vs the same forward pass on tensors in memory.

Target (issue 2): pipeline throughput >= 90% of the in-memory forward pass, same backbone, same run.
Uses the shared faces and the near-ImageNet weights in ../shared/weights (results are labelled so).

    .venv/bin/python benchmarks/bench_extract.py [--images 128] [--backbones vgg16,inceptionv3] [--out results/bench_extract.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SHARED = REPO.parent / "shared"
FACES = SHARED / "data" / "ffhq_stylegan_140k_sample"
WEIGHTS = {
    "vgg16": SHARED / "weights" / "vgg16_near_imagenet_notop.weights.h5",
    "inceptionv3": SHARED / "weights" / "inception_v3_near_imagenet_notop.weights.h5",
    "inceptionv1": None,
}


def subset_folder(n_images: int, destination: Path) -> Path:
    """A class-folder copy of the first n/2 real and n/2 fake shared faces (by name)."""
    for label in ("real", "fake"):
        (destination / label).mkdir(parents=True)
        for path in sorted((FACES / label).glob("*.jpg"))[: n_images // 2]:
            shutil.copy2(path, destination / label / path.name)
    return destination


def in_memory_rate(embedder, folder: Path, batch_size: int) -> float:
    from featurekit.data import load_image, scan_image_folder

    size = embedder.describe()["image_size"]
    images = np.stack([load_image(folder / s.path, size) for s in scan_image_folder(folder).samples])
    embedder(images[:1])  # trace
    started = time.perf_counter()
    for start in range(0, len(images), batch_size):
        embedder(images[start:start + batch_size])
    return len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--backbones", default="vgg16,inceptionv3")
    parser.add_argument("--pooling", default="flatten")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "extract.json")
    args = parser.parse_args()
    if not FACES.exists():
        sys.exit(f"needs the shared faces at {FACES}")

    from featurekit.backbones.embedder import build_embedder
    from featurekit.extraction.extract import extract

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = subset_folder(args.images, Path(scratch) / "faces")
        for backbone in args.backbones.split(","):
            weights = WEIGHTS.get(backbone)
            weights = str(weights) if weights and weights.exists() else "none"
            embedder = build_embedder(backbone, weights=weights, pooling=args.pooling)
            memory = in_memory_rate(embedder, folder, args.batch_size)
            del embedder
            cache = Path(scratch) / f"{backbone}.h5"
            started = time.perf_counter()
            result = extract(folder, backbone, weights=weights, pooling=args.pooling, batch_size=args.batch_size,
                             cache=cache, progress=False, log=lambda m: None)
            wall = time.perf_counter() - started
            row = {"backbone": backbone, "weights": result.weights_label, "pooling": args.pooling,
                   "images": result.n_images, "in_memory_img_per_s": round(memory, 2),
                   "pipeline_img_per_s": round(result.images_per_second, 2),
                   "pipeline_vs_memory": round(result.images_per_second / memory, 3),
                   "end_to_end_img_per_s": round(result.n_images / wall, 2),
                   "cache_bytes": cache.stat().st_size,
                   "cache_bytes_per_image": round(cache.stat().st_size / result.n_images)}
            rows.append(row)
            print(json.dumps(row))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "extract", "cpu_count": os.cpu_count(), "rows": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
