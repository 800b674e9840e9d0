"""What a cache holds and what made it, as plain data: `info` renders it (`featurekit.report.cache_info`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from featurekit.cache.reader import open_cache
from featurekit.rows import plain

# What computed a cache (featurekit.engines): recorded, never part of its identity (the features are the same).
ENGINE_ATTRIBUTES = ("engine", "engine_workers", "cluster_nodes", "cluster_cpus", "cluster_gpus")
CACHE_ATTRIBUTES = ("backbone", "weights", "weights_label", "weights_sha256", "random_features", "layer", "pooling",
                    "image_size", "preprocessing", "precision", "backend", "architecture_variant", "dtype",
                    "feature_dim", "view", "subset", "resize", "handmade", "n_rows", "n_skipped", "class_names",
                    "positive_class", "data_root", "layout", "data_fingerprint", "fingerprint", "train_overlap_valid",
                    "train_overlap_test", "created_utc", "schema_version", "versions",
                    *ENGINE_ATTRIBUTES)


def describe_cache(path: str | Path) -> dict[str, Any]:
    """What a cache holds and what made it, as plain data (for `info` in every format)."""
    with open_cache(path) as cache:
        names = cache.class_names
        counts = {split: {name: int(np.sum(cache.labels[cache.splits == split] == i)) for i, name in enumerate(names)}
                  for split in ("train", "valid", "test")}
        return plain({
            "path": str(cache.path), "size_mib": round(cache.path.stat().st_size / 2**20, 3),
            "attributes": {**{key: cache.attrs[key] for key in CACHE_ATTRIBUTES if key in cache.attrs},
                           "positive_class": cache.positive_class},
            "class_names": names, "counts": counts,
            "skipped": [{"path": p, "reason": r} for p, r in cache.skipped],
            "ignored": [{"path": p, "reason": r} for p, r in cache.ignored],
        })
