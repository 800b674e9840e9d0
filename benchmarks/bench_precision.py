"""Backbone precision: float32 vs bfloat16 (and float16 where the hardware has it), measured through `extract`.

For each backbone (VGG16 flatten at 224, InceptionV3 avg at 299 by default) the same N faces are extracted
once per precision, side by side in ONE run, with the real `featurekit.extraction.extract.extract` (decode, compiled
forward pass, crash-safe batch files). It prints the CPU model and its bfloat16 / float16 flags (machines
differ: without AMX or AVX512-BF16 units, bfloat16 is emulated and can be slower than float32), the images/s
of each precision and their ratio, and what the lower precision costs in the features: max and mean
absolute difference, relative L2 error per image (mean, max) and the lowest cosine similarity. Writes
benchmarks/results/precision.json.

    .venv/bin/python benchmarks/bench_precision.py --images 256 [--backbones vgg16,inceptionv3]
        [--precisions float32,bfloat16] [--batch-size 32] [--out benchmarks/results/precision.json]

Images: the shared faces beside the checkout (../shared/data/ffhq_stylegan_140k_sample), else the bundled
data/faces_sample, copied (repeated if N is larger) into a temporary folder. Weights: the files in
../shared/weights when present (labelled in the output), else seeded random weights (labelled so). Probe
accuracy fp32 vs bf16 is measured separately: extract with `precision="bfloat16"` and run `compare`.
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
FACES = [SHARED / "data" / "ffhq_stylegan_140k_sample", REPO / "data" / "faces_sample"]
# Backbone -> (pooling, image size, weights file in ../shared/weights): the study's features.
SETTINGS = {
    "vgg16": ("flatten", 224, SHARED / "weights" / "vgg16_near_imagenet_notop.weights.h5"),
    "inceptionv3": ("avg", 299, SHARED / "weights" / "inception_v3_imagenet_2015_12_05_notop.weights.h5"),
    "inceptionv1": ("avg", 224, None),
    "test_tiny": ("avg", 32, None),  # for testing this script in seconds
}
# CPU flags of native low-precision arithmetic (Linux /proc/cpuinfo names).
LOW_PRECISION_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16", "amx_fp16")


def faces_folder(n_images: int, destination: Path) -> tuple[Path, str]:
    """A class-folder copy of n/2 real and n/2 fake faces (repeated under new names if there are fewer)."""
    source = next((folder for folder in FACES if folder.exists()), None)
    if source is None:
        sys.exit(f"bench_precision needs faces in one of: {', '.join(map(str, FACES))}")
    for label in ("real", "fake"):
        files = sorted((source / label).glob("*.jpg"))
        (destination / label).mkdir(parents=True)
        for i in range(max(1, n_images // 2)):
            original = files[i % len(files)]
            shutil.copy2(original, destination / label / f"{i:06d}-{original.name}")
    return destination, str(source)


def feature_differences(reference: np.ndarray, lower: np.ndarray) -> dict[str, float]:
    """How far lower-precision features are from float32 ones (same rows)."""
    difference = np.abs(lower.astype(np.float64) - reference.astype(np.float64))
    reference_norm = np.linalg.norm(reference.astype(np.float64), axis=1)
    lower_norm = np.linalg.norm(lower.astype(np.float64), axis=1)
    relative = np.linalg.norm(lower.astype(np.float64) - reference, axis=1) / np.maximum(reference_norm, 1e-12)
    cosine = np.sum(reference * lower.astype(np.float64), axis=1) / np.maximum(reference_norm * lower_norm, 1e-12)
    return {
        "max_abs_diff": float(difference.max()),
        "mean_abs_diff": float(difference.mean()),
        "mean_feature_magnitude": float(np.abs(reference).mean()),
        "mean_relative_l2": float(relative.mean()),
        "max_relative_l2": float(relative.max()),
        "min_cosine_similarity": float(cosine.min()),
    }


def machine() -> dict[str, object]:
    from featurekit.backend import active_backend, cpu_info, has_accelerator, resolve_precision

    info = cpu_info()
    return {
        "cpu_model": info["model"],
        "cpu_count": os.cpu_count(),
        "low_precision_flags": {flag: flag in info["flags"] for flag in LOW_PRECISION_FLAGS},
        "backend": active_backend(),
        "accelerator": has_accelerator(),
        "auto_precision": resolve_precision("auto"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256, help="images per extraction (half real, half fake)")
    parser.add_argument("--backbones", default="vgg16,inceptionv3")
    parser.add_argument("--precisions", default=None,
                        help="comma-separated; default float32,bfloat16, plus float16 where the hardware has it")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "precision.json")
    args = parser.parse_args()

    import keras

    from featurekit.cache import open_cache
    from featurekit.extraction.extract import extract

    about = machine()
    fp16_units = about["accelerator"] or about["low_precision_flags"]["avx512_fp16"] or about["low_precision_flags"]["amx_fp16"]
    precisions = (args.precisions.split(",") if args.precisions
                  else ["float32", "bfloat16"] + (["float16"] if fp16_units else []))
    print(f"CPU: {about['cpu_model']} ({about['cpu_count']} CPUs); flags: "
          + ", ".join(f"{flag} {'yes' if present else 'no'}" for flag, present in about["low_precision_flags"].items()))
    print(f"Keras {keras.__version__}, backend {about['backend']}, accelerator: {about['accelerator']}; "
          f"precision 'auto' resolves to {about['auto_precision']}")
    if "float16" not in precisions:
        print("float16 left out: no float16 units here (pass --precisions float32,bfloat16,float16 to force it)")

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folder, source = faces_folder(args.images, Path(scratch) / "faces")
        for backbone in args.backbones.split(","):
            pooling, size, weights_file = SETTINGS[backbone]
            weights = str(weights_file) if weights_file is not None and weights_file.exists() else "none"
            runs = {}
            for precision in precisions:
                cache = Path(scratch) / f"{backbone}-{precision}.h5"
                try:
                    result = extract(folder, backbone, weights=weights, image_size=size, pooling=pooling,
                                     precision=precision, batch_size=args.batch_size, cache=cache, progress=False,
                                     log=lambda message: None)
                except Exception as error:  # e.g. a backend without float16 kernels on this device
                    print(f"{backbone} {precision}: not supported here ({type(error).__name__}: {error})")
                    runs[precision] = {"error": f"{type(error).__name__}: {error}"}
                    continue
                with open_cache(result.cache_path) as made:
                    features = made.load()[0]
                runs[precision] = {"images_per_second": result.images_per_second, "seconds": result.seconds,
                                   "images": result.n_computed, "features": features, "label": result.weights_label}
                print(f"{backbone} {pooling} {size} {precision}: {result.images_per_second:.2f} img/s "
                      f"({result.n_computed} images in {result.seconds:.1f} s)")
            reference = runs.get("float32", {})
            for precision, run in runs.items():
                row = {"backbone": backbone, "pooling": pooling, "image_size": size, "precision": precision,
                       "weights": run.get("label", weights), "batch_size": args.batch_size}
                if "error" in run:
                    rows.append({**row, "error": run["error"]})
                    continue
                row.update(images=run["images"], seconds=round(run["seconds"], 2),
                           images_per_second=round(run["images_per_second"], 2))
                if precision != "float32" and "features" in reference:
                    row["speedup_vs_float32"] = round(run["images_per_second"] / reference["images_per_second"], 2)
                    row.update({k: float(f"{v:.6g}") for k, v in
                                feature_differences(reference["features"], run["features"]).items()})
                    print(f"  {precision} vs float32: {row['speedup_vs_float32']}x; features: max |diff| "
                          f"{row['max_abs_diff']:.4g}, mean |diff| {row['mean_abs_diff']:.4g} (mean |value| "
                          f"{row['mean_feature_magnitude']:.4g}), relative L2 per image mean "
                          f"{row['mean_relative_l2']:.4g} max {row['max_relative_l2']:.4g}, lowest cosine "
                          f"{row['min_cosine_similarity']:.6f}")
                rows.append(row)

    report = {"benchmark": "precision through extract", "images_from": source, "images": args.images,
              "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": about, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
