"""The rows that compare, transfer and sweep return, and that every renderer reads: their keys, as data.

A row is a plain dict: public keys (the ROW_KEYS, plain values for CSV/JSON) and private ones starting
with "_" (the scores, labels and image paths behind the pictures), which never reach a results file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# `test_set` of rows scored on the training cache's own test split.
OWN_TEST_SPLIT = "test"

# Columns every compare row has, in display order (snake_case keys of the JSON output).
ROW_KEYS = (
    "cache", "data", "backbone", "weights_label", "random_features", "layer", "pooling", "image_size", "preprocessing",
    "feature_dim", "probe", "test_set", "view", "n_test", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
    "accuracy_real", "accuracy_fake", "balanced_accuracy",
    "roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", "average_precision", "eer", "tpr_at_1pct_fpr", "f1",
    "oracle_accuracy", "mean_p_fake_real", "mean_p_fake_fake",
    "threshold", "threshold_on", "fit_seconds", "reused", "streamed", "collapsed", "model_dir", "scored_cache", "leaks",
    "train_overlap", "backend", "precision",
)


def public_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without private keys, with NumPy scalars as plain Python values (for CSV/JSON)."""
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items() if not k.startswith("_")}
            for row in rows]


def image_keys(cache: Any, split: str) -> dict[str, Any]:
    """The private keys behind a row's pictures (the gallery of mistakes), for an open cache or fusion:
    `_paths` of the split's images in row order (relative to `_image_root`, the data folder) and `_class_names`."""
    return {"_paths": [cache.paths[i] for i in cache.split_indices(split)],
            "_image_root": str(cache.attrs.get("data_root") or ""), "_class_names": list(cache.class_names)}
