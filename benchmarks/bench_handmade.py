"""Hand-made forensic features (issue 8): speed, and a linear probe on the shared faces.

Decodes the shared faces at their own 256 px with featurekit's own scanner and decoder, computes SPAM
(threshold 3, second order) and the azimuthal spectrum, fits StandardScaler + LogisticRegression on the
train split and reports valid and test accuracy / ROC AUC. Two probes per feature: C = 1 (sklearn's
default) and C chosen on the valid split from a small grid. Speed is features only (images already
decoded, in memory), measured in this run; the CPU count is printed with it. JSON in benchmarks/results/.

    .venv/bin/python benchmarks/bench_handmade.py [--variants] [--data ../shared/data/ffhq_stylegan_140k_sample]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
FACES = REPO.parent / "shared" / "data" / "ffhq_stylegan_140k_sample"
C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)
# (label, registry name, parameter overrides): the registered defaults first, then the paper's variants.
VARIANTS = (
    ("spam", "spam", {}),
    ("spam-transition", "spam", {"normalisation": "transition"}),
    ("spam-order1-T4", "spam", {"order": 1, "threshold": 4}),
    ("spectrum", "spectrum", {}),
    ("spectrum-none", "spectrum", {"normalisation": "none"}),
    ("spectrum-corners", "spectrum", {"include_corners": True}),
)


def decode_all(folder: Path, image_size: int):
    from featurekit.data import load_image, scan_image_folder

    scanned = scan_image_folder(folder)
    images = np.stack([load_image(folder / s.path, image_size) for s in scanned.samples])
    labels = np.array([s.label for s in scanned.samples])
    splits = np.array([s.split for s in scanned.samples])
    return images, labels, splits


def probe(features: np.ndarray, labels: np.ndarray, splits: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train = splits == "train"
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    model.fit(features[train], labels[train])
    scores = {}
    for split in ("valid", "test"):
        rows = splits == split
        probability = model.predict_proba(features[rows])[:, 1]
        scores[split] = {"accuracy": round(float(accuracy_score(labels[rows], probability >= 0.5)), 4),
                         "roc_auc": round(float(roc_auc_score(labels[rows], probability)), 4)}
    return scores


def main() -> None:
    from featurekit.handmade import get_handmade

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=FACES)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--variants", action="store_true", help="also the paper's variants (transition, order 1, ...)")
    args = parser.parse_args()
    if not args.data.exists():
        sys.exit(f"shared faces not found at {args.data}: pass --data DIR")

    started = time.perf_counter()
    images, labels, splits = decode_all(args.data, args.image_size)
    decode_seconds = time.perf_counter() - started
    counts = {split: int((splits == split).sum()) for split in ("train", "valid", "test")}
    print(f"decoded {len(images)} images {counts} in {decode_seconds:.1f} s; {os.cpu_count()} CPUs, {platform.processor()}")

    report = {"data": str(args.data.name), "image_size": args.image_size, "n_images": len(images), "splits": counts,
              "decode_seconds": round(decode_seconds, 2), "cpu_count": os.cpu_count(), "features": {}}
    for name, registered, overrides in VARIANTS[: None if args.variants else 1] + (() if args.variants else VARIANTS[3:4]):
        spec = get_handmade(registered).with_parameters(**overrides)
        spec.extract(images[:8])  # warm-up
        started = time.perf_counter()
        features = spec.extract(images)
        feature_seconds = time.perf_counter() - started
        started = time.perf_counter()
        default = probe(features, labels, splits, 1.0)
        by_c = {c: probe(features, labels, splits, c) for c in C_GRID}
        best_c = max(C_GRID, key=lambda c: by_c[c]["valid"]["roc_auc"])
        probe_seconds = time.perf_counter() - started
        row = {"describe": spec.describe(args.image_size), "feature_seconds": round(feature_seconds, 2),
               "images_per_second": round(len(images) / feature_seconds, 1),
               "probe_c1": default, "best_c_on_valid": best_c, "probe_best_c": by_c[best_c],
               "probe_seconds_all_c": round(probe_seconds, 1)}
        report["features"][name] = row
        print(f"{name}: D={features.shape[1]}  {row['images_per_second']} img/s ({feature_seconds:.1f} s)  "
              f"C=1 {default}  C={best_c} (best on valid) {by_c[best_c]}  probes {probe_seconds:.1f} s")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "handmade.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
