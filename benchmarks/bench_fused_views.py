"""A fitted fused probe (e.g. the sweep's choice) scored on robustness views of the test split.

`compare --view` scores the probes of single caches on views; a fused probe needs a view of every member
cache, concatenated in the member order its fitted.json records. This script extracts those views (test split
only, each member's embedder rebuilt from its record, cached beside the others so a rerun reuses them) and
scores the probe fitted on clean features at its valid threshold.

    .venv/bin/python benchmarks/bench_fused_views.py --model runs/fuse-XXXX/logreg \\
        --data ../shared/data/ffhq_stylegan_140k_sample [--cache-dir cache] [--views jpeg:75,jpeg:50,blur:1,blur:2] \\
        [--out benchmarks/results/fused_views.json]
"""

from __future__ import annotations

import argparse
import os
import json
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a fitted fused probe folder (runs/fuse-*/PROBE)")
    parser.add_argument("--data", type=Path, required=True, help="the data folder the member caches were made from")
    parser.add_argument("--cache-dir", type=Path, default=Path("cache"))
    parser.add_argument("--views", default="jpeg:75,jpeg:50,blur:1,blur:2")
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "fused_views.json")
    args = parser.parse_args()

    from featurekit.cache import open_cache
    from featurekit.extraction.extract import extract_many
    from featurekit.evaluation.fitting import load_fitted
    from featurekit.metrics import evaluate
    from featurekit.probes import fake_scores

    fitted = load_fitted(args.model)
    members = fitted.meta.get("members")
    if not members:
        raise SystemExit(f"{args.model} is not a fused model (its fitted.json lists no members)")
    rows = []
    for view in [v.strip() for v in args.views.split(",") if v.strip()]:
        blocks, paths, labels = [], None, None
        for member in members:  # the fused columns follow this order
            record = member["embedding"]
            made = extract_many(args.data, record["backbone"], weights=record["weights"],
                                image_size=record["image_size"], layers=[record.get("layer")],
                                poolings=[record["pooling"]], preprocessing=record.get("preprocessing"),
                                precision=record.get("precision") or "float32", view=view, subset="test",
                                cache_dir=args.cache_dir, log=lambda message: None, progress=False)[0]
            with open_cache(made.cache_path) as cache:
                features, labels_here = cache.load("test")
                if paths is not None and cache.paths != paths:
                    raise SystemExit(f"view caches of {view} do not hold the same images in the same order")
                paths, labels = cache.paths, labels_here
            blocks.append(features)
        scores = fake_scores(fitted.estimator, np.hstack(blocks))
        metrics = evaluate(labels, scores, fitted.threshold, n_boot=args.boot)
        row = {"view": view, **{key: metrics[key] for key in (
            "n", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "roc_auc", "roc_auc_ci_low", "roc_auc_ci_high",
            "average_precision", "accuracy_real", "accuracy_fake", "collapsed")}}
        rows.append(row)
        print(f"{view:>8}: accuracy {row['accuracy']:.3f} [{row['accuracy_ci_low']:.3f}, {row['accuracy_ci_high']:.3f}]"
              f"  ROC AUC {row['roc_auc']:.3f}  real {row['accuracy_real']:.3f}  fake {row['accuracy_fake']:.3f}"
              f"{'  COLLAPSED: ' + row['collapsed'] if row['collapsed'] else ''}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": os.path.relpath(args.model), "threshold": fitted.threshold, "rows": rows},
                                   indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
