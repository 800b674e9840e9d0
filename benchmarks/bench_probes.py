"""Probe benchmarks (issue 3), results as JSON in benchmarks/results/.

speedup: the head for 30 epochs on a cached, pooled VGG16 embedding of the shared faces, versus the
    original study's way (the frozen backbone inside the training loop, recomputed every epoch).
    Both are measured in this run on the same images; the study's way is timed for --study-epochs
    full epochs and its per-epoch time multiplied up to 30 epochs (every epoch costs the same: one
    backbone pass over the train split), which the JSON says.
memory: one epoch of the head on synthetic caches written with featurekit's cache writer: a
    100,000 x 512 pooled cache (in memory), and flattened VGG16-sized caches (25,088 features) of two
    sizes, streamed with a small memory budget; peak RSS of a fresh process for each, so memory that
    grows with the cache would show.

    .venv/bin/python benchmarks/bench_probes.py speedup [--images 400] [--study-epochs 1]
    .venv/bin/python benchmarks/bench_probes.py memory [--flat-rows 15000,30000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
RESULTS = REPO / "benchmarks" / "results"


def speedup(args: argparse.Namespace) -> dict:
    from bench_extract import FACES, WEIGHTS, subset_folder

    import keras

    from featurekit.data import scan_image_folder
    from featurekit.embedder import build_embedder
    from featurekit.extract import extract
    from featurekit.fitting import fit_probe
    from featurekit.training.batches import ImageBatches

    weights = str(WEIGHTS["vgg16"]) if WEIGHTS["vgg16"].exists() else "none"
    with tempfile.TemporaryDirectory() as scratch:
        folder = subset_folder(args.images, Path(scratch) / "faces") if args.images else FACES
        started = time.perf_counter()
        result = extract(folder, "vgg16", weights=weights, pooling="avg", cache=Path(scratch) / "c.h5",
                         progress=False, log=lambda m: None)
        extract_seconds = time.perf_counter() - started
        started = time.perf_counter()
        fitted = fit_probe(result.cache_path, "head", {"epochs": 30, "patience": 30}, out=Path(scratch) / "head",
                           log=lambda m: None)
        head_seconds = time.perf_counter() - started
        epochs_run = len(fitted.estimator.history_["loss"])

        # The study's way: backbone + head in one Keras model, backbone frozen, images decoded every epoch.
        samples = [s for s in scan_image_folder(folder).samples if s.split == "train"]
        embedder = build_embedder("vgg16", weights=weights, pooling="avg")
        inputs = keras.Input((224, 224, 3))
        features = keras.layers.GlobalAveragePooling2D()(embedder.backbone(keras.layers.Lambda(
            lambda x: keras.applications.vgg16.preprocess_input(x))(inputs), training=False))
        hidden = keras.layers.Dropout(0.5)(keras.layers.Dense(512, activation="relu")(features))
        model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(hidden))
        model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["accuracy"])
        train = ImageBatches(folder, [s.path for s in samples], np.array([s.label for s in samples]), 224, 32,
                             train=True, augment=False)
        model.fit(ImageBatches(folder, [s.path for s in samples[:32]], np.array([s.label for s in samples[:32]]),
                               224, 32, train=False), epochs=1, verbose=0)  # compile outside the clock, as extract does
        started = time.perf_counter()
        model.fit(train, epochs=args.study_epochs, verbose=0)
        study_epoch_seconds = (time.perf_counter() - started) / args.study_epochs

    featurekit_total = extract_seconds + head_seconds
    study_30 = 30 * study_epoch_seconds
    return {
        "benchmark": "head 30 epochs: cached features vs backbone in the loop",
        "backbone": "vgg16 avg 224", "weights": result.weights_label, "images": result.n_images,
        "train_images": len(samples), "extract_seconds_all_splits": round(extract_seconds, 1),
        "head_seconds_30_epochs": round(head_seconds, 2), "head_epochs_run": epochs_run,
        "featurekit_total_seconds": round(featurekit_total, 1),
        "study_way_seconds_per_epoch": round(study_epoch_seconds, 1), "study_way_epochs_timed": args.study_epochs,
        "study_way_seconds_30_epochs": round(study_30, 1), "study_way_30_epochs_is": "per-epoch time x 30",
        "speedup_total": round(study_30 / featurekit_total, 1),
        "speedup_per_epoch": round(study_epoch_seconds / (head_seconds / epochs_run), 1),
    }


def _write_synthetic_cache(path: Path, rows: int, dim: int, batch_rows: int = 2000) -> None:
    from featurekit.cache import PartialCache, finalize_cache
    from featurekit.data import Sample

    rng = np.random.default_rng(0)
    labels = np.arange(rows) % 2
    pair = (np.arange(rows) // 2) % 10  # a real and a fake row share each split: both classes everywhere
    splits = np.where(pair < 8, "train", np.where(pair == 8, "valid", "test"))
    partial = PartialCache(path)
    partial.start({"n_batches": -(-rows // batch_rows)})
    direction = rng.normal(size=dim).astype(np.float32) * 0.05
    for index, start in enumerate(range(0, rows, batch_rows)):
        stop = min(rows, start + batch_rows)
        x = rng.normal(size=(stop - start, dim)).astype(np.float32) + labels[start:stop, None] * direction
        partial.write_batch(index, np.arange(start, stop), x, np.array([], int), [], "float32")
    samples = [Sample(f"x/{i}.jpg", int(labels[i]), str(splits[i]), "0" * 64) for i in range(rows)]
    finalize_cache(partial, samples, dict(
        backbone="synthetic", weights="none", weights_label="synthetic", weights_sha256="", random_features=True,
        layer="", pooling="flatten" if dim > 4096 else "avg", image_size=0, preprocessing="tf", feature_dim=dim,
        dtype="float32", data_fingerprint=f"synthetic-{rows}x{dim}", class_names=["real", "fake"], versions={},
        config={}, created_utc=""))


def one_epoch(cache: str, budget_gb: float) -> None:
    """Child process: one head epoch on a cache, then print seconds and peak RSS as JSON."""
    import tensorflow  # noqa: F401  (so the baseline below includes it)

    from featurekit.fitting import fit_probe

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    fitted = fit_probe(cache, "head", {"epochs": 1}, out=Path(cache).with_suffix(".head"), memory_budget_gb=budget_gb,
                       log=lambda m: None)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_bytes": peak, "rss_after_imports_bytes": baseline,
                      "streamed": fitted.meta["streamed"]}))


def memory(args: argparse.Namespace) -> dict:
    rows = []
    scratch = Path(tempfile.mkdtemp(dir=args.scratch))
    try:
        cases = [(100_000, 512, 4.0)] + [(int(n), 25088, args.budget_gb) for n in args.flat_rows.split(",")]
        for n, dim, budget in cases:
            path = scratch / f"synthetic-{n}x{dim}.h5"
            _write_synthetic_cache(path, n, dim)
            child = subprocess.run([sys.executable, __file__, "one-epoch", str(path), str(budget)],
                                   capture_output=True, text=True, check=True)
            measured = json.loads(child.stdout.strip().splitlines()[-1])
            row = {"rows": n, "features": dim, "cache_bytes": path.stat().st_size, "memory_budget_gb": budget,
                   **measured, "peak_rss_above_imports_vs_cache": round(
                       (measured["peak_rss_bytes"] - measured["rss_after_imports_bytes"]) / path.stat().st_size, 3)}
            print(json.dumps(row), flush=True)
            rows.append(row)
            path.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"benchmark": "one head epoch: seconds and peak RSS", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fast = commands.add_parser("speedup")
    fast.add_argument("--images", type=int, default=0, help="subset size (0 = all shared faces)")
    fast.add_argument("--study-epochs", type=int, default=1)
    mem = commands.add_parser("memory")
    mem.add_argument("--flat-rows", default="15000,30000")
    mem.add_argument("--budget-gb", type=float, default=0.5)
    mem.add_argument("--scratch", default=None)
    child = commands.add_parser("one-epoch")
    child.add_argument("cache")
    child.add_argument("budget", type=float)
    args = parser.parse_args()
    if args.command == "one-epoch":
        one_epoch(args.cache, args.budget)
        return
    result = {"cpu_count": os.cpu_count(), **(speedup(args) if args.command == "speedup" else memory(args))}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"probes_{args.command}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
