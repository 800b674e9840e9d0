"""Probe benchmarks, results as JSON in benchmarks/results/.

speedup: the head for 30 epochs on a cached, pooled VGG16 embedding of the shared faces, versus the
    original study's way (the frozen backbone inside the training loop, recomputed every epoch).
    Both are measured in this run on the same images; the study's way is timed for --study-epochs
    full epochs and its per-epoch time multiplied up to 30 epochs (every epoch costs the same: one
    backbone pass over the train split), which the JSON says.
memory: the head on synthetic caches written with featurekit's cache writer: a 100,000 x 512 pooled
    cache (in memory), and flattened VGG16-sized caches (25,088 features) streamed with a small memory
    budget. Each measurement is a fresh process running `fit_probe`: "seconds" is a whole 1-epoch fit
    (load, statistics, build, one epoch, valid scores, threshold, save), with the peak RSS of that
    process; for the 512-d cache "epoch_seconds" is the cost of one more epoch ((3-epoch fit - 1-epoch
    fit) / 2). With
    --baseline-ref REF the 100,000 x 512 case is also run with the featurekit package of git REF
    (e.g. the commit before the backend-agnostic head), in the same run, for a before/after ratio.
bootstrap: seconds per compare row for the 95% intervals (accuracy and ROC AUC, 1000 stratified
    resamples): scikit-learn's AUC per resample in a Python loop (the implementation before
    vectorising, kept here as the reference) vs `metrics.bootstrap_intervals`, same seed, same run.
batch: does the head's batch_size="auto" (1024 on 80,000 training rows) learn as well as the study's
    256? Fits both on one synthetic 100,000 x 512 cache with a weak linear signal (Bayes accuracy
    about 0.71) and reports test accuracy, ROC AUC, epochs run and seconds.

    .venv/bin/python benchmarks/bench_probes.py speedup [--images 400] [--study-epochs 1]
    .venv/bin/python benchmarks/bench_probes.py memory [--flat-rows 15000,30000] [--baseline-ref a8bf250]
    .venv/bin/python benchmarks/bench_probes.py bootstrap [--rows 2000,20000] [--boot 1000]
    .venv/bin/python benchmarks/bench_probes.py batch [--epochs 30] [--sizes 256,auto]
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
# FEATUREKIT_SRC points a child process at another copy of the package (the --baseline-ref checkout).
sys.path.insert(0, os.environ.get("FEATUREKIT_SRC") or str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
RESULTS = REPO / "benchmarks" / "results"


def speedup(args: argparse.Namespace) -> dict:
    from bench_extract import FACES, WEIGHTS, subset_folder

    import keras

    from featurekit.data import scan_image_folder
    from featurekit.backbones.embedder import build_embedder
    from featurekit.extraction.extract import extract
    from featurekit.evaluation.fitting import fit_probe
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


def one_epoch(cache: str, budget_gb: float, epochs: int = 1) -> None:
    """Child process: one head fit of `epochs` epochs on a cache, then print seconds and peak RSS as JSON."""
    import keras  # noqa: F401  (so the baseline below includes the backend)

    from featurekit.evaluation.fitting import fit_probe

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    fitted = fit_probe(cache, "head", {"epochs": epochs, "patience": 30}, out=Path(cache).with_suffix(".head"),
                       memory_budget_gb=budget_gb, log=lambda m: None)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_bytes": peak, "rss_after_imports_bytes": baseline,
                      "streamed": fitted.meta["streamed"], "epochs_run": len(fitted.estimator.history_["loss"]),
                      "batch_size": getattr(fitted.estimator, "batch_size_", fitted.estimator.batch_size)}))


def _child(path: Path, budget: float, epochs: int, source: Path | None = None) -> dict:
    env = {**os.environ, **({"FEATUREKIT_SRC": str(source)} if source else {})}
    child = subprocess.run([sys.executable, __file__, "one-epoch", str(path), str(budget), "--epochs", str(epochs)],
                           capture_output=True, text=True, check=True, env=env)
    return json.loads(child.stdout.strip().splitlines()[-1])


def _head_epoch(path: Path, budget: float, source: Path | None = None, marginal: bool = True) -> dict:
    """A 1-epoch fit (time, memory) and, if `marginal`, a 3-epoch fit: their difference / 2 is the cost of one epoch."""
    one = _child(path, budget, 1, source)
    if not marginal:
        return one
    three = _child(path, budget, 3, source)
    return {**one, "seconds_3_epochs": three["seconds"], "epoch_seconds": round((three["seconds"] - one["seconds"]) / 2, 2)}


def _baseline_checkout(ref: str, scratch: Path) -> Path:
    """The featurekit package of git `ref`, extracted into `scratch` (nothing in the work tree changes)."""
    target = scratch / f"featurekit-{ref}"
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref, "featurekit"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    return target


def memory(args: argparse.Namespace) -> dict:
    rows = []
    scratch = Path(tempfile.mkdtemp(dir=args.scratch))
    try:
        flat = [int(n) for n in args.flat_rows.split(",") if n.strip()]
        cases = [(100_000, 512, 4.0)] + [(n, 25088, args.budget_gb) for n in flat]
        for n, dim, budget in cases:
            path = scratch / f"synthetic-{n}x{dim}.h5"
            _write_synthetic_cache(path, n, dim)
            measured = _head_epoch(path, budget, marginal=dim == 512)  # streamed flat caches: memory, one epoch
            row = {"code": "this checkout", "rows": n, "features": dim, "cache_bytes": path.stat().st_size,
                   "memory_budget_gb": budget, **measured, "peak_rss_above_imports_vs_cache": round(
                       (measured["peak_rss_bytes"] - measured["rss_after_imports_bytes"]) / path.stat().st_size, 3)}
            if args.baseline_ref and dim == 512:
                before = _head_epoch(path, budget, _baseline_checkout(args.baseline_ref, scratch))
                row["baseline"] = {"code": f"git {args.baseline_ref}", **before}
                row["speedup_epoch"] = round(before["epoch_seconds"] / measured["epoch_seconds"], 2)
                row["speedup_1_epoch_fit"] = round(before["seconds"] / measured["seconds"], 2)
            print(json.dumps(row), flush=True)
            rows.append(row)
            path.unlink()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"benchmark": "head epochs: seconds and peak RSS", "rows": rows}


def _sklearn_loop_intervals(y: np.ndarray, s: np.ndarray, threshold: float, n_boot: int, seed: int) -> dict:
    """The intervals as compare computed them before vectorising: per resample, sklearn's AUC and accuracy."""
    import sklearn
    from sklearn.metrics import accuracy_score, roc_auc_score

    out = {}
    for name, metric in (("accuracy", lambda yy, ss: accuracy_score(yy, ss >= threshold)), ("roc_auc", roc_auc_score)):
        rng = np.random.default_rng(seed)  # each interval drew its own resamples from the same seed
        groups = [np.flatnonzero(y == c) for c in (0, 1)]
        values = []
        with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
            for _ in range(n_boot):
                idx = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups])
                values.append(metric(y[idx], s[idx]))
        out[name] = tuple(float(v) for v in np.percentile(values, [2.5, 97.5]))
    return out


def bootstrap(args: argparse.Namespace) -> dict:
    from featurekit import metrics

    rows = []
    for n in (int(r) for r in args.rows.split(",")):
        rng = np.random.default_rng(n)
        y = (np.arange(n) % 2).astype(int)
        s = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + 1.5 * y)))  # probabilities, continuous
        started = time.perf_counter()
        before = _sklearn_loop_intervals(y, s, 0.5, args.boot, 0)
        before_seconds = time.perf_counter() - started
        started = time.perf_counter()
        after = metrics.bootstrap_intervals({"accuracy": metrics.resampled_accuracy(0.5),
                                             "roc_auc": metrics.resampled_roc_auc}, y, s, args.boot, 0)
        after_seconds = time.perf_counter() - started
        difference = max(abs(a - b) for name in after for a, b in zip(after[name], before[name]))
        row = {"n_test": n, "n_boot": args.boot, "sklearn_loop_seconds": round(before_seconds, 3),
               "vectorised_seconds": round(after_seconds, 3), "speedup": round(before_seconds / after_seconds, 1),
               "max_interval_difference": difference, "intervals": after}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return {"benchmark": "bootstrap intervals per compare row (accuracy + ROC AUC)", "rows": rows}


def batch(args: argparse.Namespace) -> dict:
    from featurekit.cache import open_cache
    from featurekit.metrics import choose_threshold, evaluate
    from featurekit.probes import make_probe

    rows = []
    scratch = Path(tempfile.mkdtemp(dir=args.scratch))
    try:
        path = scratch / "synthetic-100000x512.h5"
        _write_synthetic_cache(path, 100_000, 512)
        with open_cache(path) as cache:
            (x, y), (xv, yv), (xt, yt) = (cache.load(split) for split in ("train", "valid", "test"))
        for batch_size in [int(b) if b.isdigit() else b for b in args.sizes.split(",")]:
            started = time.perf_counter()
            head = make_probe("head", epochs=args.epochs, batch_size=batch_size).fit(x, y, X_val=xv, y_val=yv)
            seconds = time.perf_counter() - started
            threshold = choose_threshold(yv, head.predict_proba(xv)[:, 1])
            scores = evaluate(yt, head.predict_proba(xt)[:, 1], threshold, n_boot=200)
            row = {"batch_size": batch_size, "batch_size_used": head.batch_size_, "train_rows": len(x),
                   "epochs_run": len(head.history_["loss"]), "best_epoch": head.best_epoch_ + 1,
                   "fit_seconds": round(seconds, 1),
                   "seconds_per_epoch": round(seconds / len(head.history_["loss"]), 2),
                   **{k: round(scores[k], 4) for k in ("accuracy", "accuracy_ci_low", "accuracy_ci_high", "roc_auc",
                                                       "roc_auc_ci_low", "roc_auc_ci_high")},
                   "best_val_loss": round(min(head.history_["val_loss"]), 4)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"benchmark": "head batch size 256 vs auto on a synthetic 100,000 x 512 cache", "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    fast = commands.add_parser("speedup")
    fast.add_argument("--images", type=int, default=0, help="subset size (0 = all shared faces)")
    fast.add_argument("--study-epochs", type=int, default=1)
    mem = commands.add_parser("memory")
    mem.add_argument("--flat-rows", default="15000,30000", help="rows of the flattened caches ('' for none)")
    mem.add_argument("--budget-gb", type=float, default=0.5)
    mem.add_argument("--baseline-ref", default=None, help="git ref whose featurekit is timed on the 512-d case too")
    mem.add_argument("--scratch", default=None)
    boot = commands.add_parser("bootstrap")
    boot.add_argument("--rows", default="2000,20000", help="test-split sizes")
    boot.add_argument("--boot", type=int, default=1000)
    sizes = commands.add_parser("batch")
    sizes.add_argument("--epochs", type=int, default=30)
    sizes.add_argument("--sizes", default="256,auto", help="batch sizes to compare (integers or auto)")
    sizes.add_argument("--scratch", default=None)
    child = commands.add_parser("one-epoch")
    child.add_argument("cache")
    child.add_argument("budget", type=float)
    child.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    if args.command == "one-epoch":
        one_epoch(args.cache, args.budget, args.epochs)
        return
    run = {"speedup": speedup, "memory": memory, "bootstrap": bootstrap, "batch": batch}[args.command]
    result = {"cpu_count": os.cpu_count(), "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow"),
              **run(args)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"probes_{args.command}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
