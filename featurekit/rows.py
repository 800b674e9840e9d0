"""The rows that compare, shifted scoring and sweep return, and that every renderer reads: their keys, as data.

A row is a plain dict: public keys (the ROW_KEYS, plain values for CSV/JSON) and private ones starting
with "_" (the scores, labels and image paths behind the pictures), which never reach a results file.
A sweep returns a `SweepResult` of such rows. This module sits below both the library that makes rows
(`featurekit.evaluation`, `featurekit.jobs`) and the renderers that read them (`featurekit.report`).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# `test_set` of rows scored on the training cache's own test split.
OWN_TEST_SPLIT = "test"
# A test set that pairs one class's folder with the other class of the test split: "fake=DIR", "real=DIR1,fake=DIR2".
PAIRED_TEST_SET = re.compile(r"^(real|fake)=([^,]+?)(?:,(real|fake)=([^,]+))?$")

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


def scored_elsewhere(row: dict[str, Any]) -> bool:
    """Whether a row was scored on a view or another test set rather than its own clean test split."""
    return bool(row.get("view")) or (row.get("test_set") or OWN_TEST_SPLIT) != OWN_TEST_SPLIT


def public_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without private keys, with NumPy scalars as plain Python values (for CSV/JSON)."""
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items() if not k.startswith("_")}
            for row in rows]


def plain(value: Any) -> Any:
    """NumPy scalars and arrays, tuples and paths as plain JSON values, recursively."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return plain(value.tolist())
    if isinstance(value, Path):
        return str(value)
    return value


def image_keys(cache: Any, split: str) -> dict[str, Any]:
    """The private keys behind a row's pictures (the gallery of mistakes), for an open cache or fusion:
    `_paths` of the split's images in row order (relative to `_image_root`, the data folder) and `_class_names`."""
    return {"_paths": [cache.paths[i] for i in cache.split_indices(split)],
            "_image_root": str(cache.attrs.get("data_root") or ""), "_class_names": list(cache.class_names)}


# --------------------------------------------------------------------------------------------------
# What a sweep returns (`featurekit.jobs.sweep`), and what its renderers (`featurekit.report.sweep`) read

SELECTION_RULE = ("chosen on valid ROC AUC (ties: fewer features, then name); the fused caches of the top-k rows, "
                  "under every probe, are more candidates; test reported once, for the chosen configuration only")
# Columns of a sweep row: valid figures only. No test column may ever be added here.
VALID_ROW_KEYS = (
    "rank", "cache", "backbone", "weights_label", "random_features", "layer", "pooling", "image_size",
    "preprocessing", "feature_dim", "probe", "n_valid", "valid_roc_auc", "valid_roc_auc_ci_low",
    "valid_roc_auc_ci_high", "valid_average_precision", "valid_accuracy", "valid_balanced_accuracy", "threshold",
    "fit_seconds", "reused", "streamed", "leaks", "model_dir",
)
TEST_KEYS = ("n", "n_fake", "threshold", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "roc_auc",
             "roc_auc_ci_low", "roc_auc_ci_high", "average_precision", "accuracy_real", "accuracy_fake",
             "balanced_accuracy", "eer", "tpr_at_1pct_fpr", "f1", "collapsed",
             # Reported beside the figures at the valid threshold, never used to choose (`evaluation.scoring.shift_figures`):
             "oracle_accuracy", "mean_p_fake_real", "mean_p_fake_fake")
_WHERE_KEYS = ("test_set", "view", "scored_cache")  # where a row of the choice elsewhere was scored


@dataclass
class SweepResult:
    """What a sweep found.

    Attributes:
        name: The sweep's name (results file names).
        rows: One row per cache x probe with VALID metrics only, best first (`rank` 1).
        fusion: The best of the top-k fusion's rows (valid metrics), or None when there was none.
        chosen: The chosen row (one of `rows`, or `fusion`).
        test: Test metrics of the chosen configuration (the TEST_KEYS), computed once, after the choice, with the
            private keys behind its pictures (`_scores`, `_labels` and `image_keys`).
        learning_curve: Points of the learning curve (test figures by training size), or None.
        notes: What the reader should know (leaks, a fusion that left rows out ...).
        fusion_rows: The fusion under every probe, best first.
        test_sets: The choice on views and other test sets.
        threshold_on: "valid", or "valid+views": where the threshold of the test figures was chosen.
    """

    name: str
    rows: list[dict[str, Any]]
    fusion: dict[str, Any] | None
    chosen: dict[str, Any]
    test: dict[str, Any]
    learning_curve: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)
    fusion_rows: list[dict[str, Any]] = field(default_factory=list)
    test_sets: list[dict[str, Any]] = field(default_factory=list)
    threshold_on: str = "valid"

    @property
    def model_dir(self) -> str:
        """The chosen fitted probe's folder: what `predict` takes."""
        return str(self.chosen["model_dir"])

    @property
    def predict_command(self) -> str:
        """The exact command that scores new images with the chosen configuration."""
        return f"python cli.py predict IMAGES_OR_FOLDER --model {shlex.quote(self.model_dir)}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the valid table, the fusion candidate, the choice, and the test figures apart."""
        def public(row: dict[str, Any]) -> dict[str, Any]:
            return {key: plain(row.get(key)) for key in VALID_ROW_KEYS}

        return {
            "name": self.name, "selection": SELECTION_RULE,
            "rows": [public(row) for row in self.rows],
            "fusion_candidate": public(self.fusion) if self.fusion else None,
            "fusion_rows": [public(row) for row in self.fusion_rows],
            "chosen": public(self.chosen), "model_dir": self.model_dir, "predict_command": self.predict_command,
            "test_of_chosen": {key: self.test.get(key) for key in TEST_KEYS},
            "threshold_on": self.threshold_on,
            "other_test_sets_of_chosen": [{key: row.get(key) for key in (*_WHERE_KEYS, *TEST_KEYS)}
                                          for row in self.test_sets],
            "learning_curve": self.learning_curve, "notes": self.notes,
        }


def gain_per_doubling(points: Sequence[dict[str, Any]]) -> float | None:
    """Least-squares slope of mean test ROC AUC against log2(training images): the gain per doubling."""
    points = [p for p in points if "error" not in p]
    if len(points) < 2:
        return None
    x = np.log2([p["n_train"] for p in points])
    y = np.array([p["test_roc_auc_mean"] for p in points])
    return float(np.polyfit(x, y, 1)[0])
