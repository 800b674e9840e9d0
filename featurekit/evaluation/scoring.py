"""One fitted probe scored on one split of one open cache: its metrics at a threshold, and the figures that tell
a ranking that holds from a threshold that fails."""

from __future__ import annotations

from typing import Any

import numpy as np

from featurekit.cache import SplitAccess
from featurekit.evaluation import fitting


def scored(fitted: fitting.FittedProbe, reader: SplitAccess, split: str, n_boot: int,
           threshold: float | None = None) -> dict[str, Any]:
    """A fitted probe's metrics on one split of an open cache, at its own threshold (chosen on valid) unless
    another is given, with the figures that separate ranking from calibration (`shift_figures`) and private
    `_scores`/`_labels`."""
    scores, labels = fitting.split_scores(fitted, reader, split)
    return {**metrics_at(labels, scores, fitted.threshold if threshold is None else threshold, n_boot),
            "_scores": scores, "_labels": labels}


def metrics_at(labels: np.ndarray, scores: np.ndarray, threshold: float, n_boot: int) -> dict[str, Any]:
    """The metrics of scores at a threshold (`featurekit.metrics.evaluate`) and their `shift_figures`."""
    from featurekit.metrics import evaluate

    return {**evaluate(labels, scores, threshold, n_boot=n_boot), **shift_figures(labels, scores)}


def shift_figures(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Figures that tell a ranking that holds from a threshold that fails (never used to choose anything).

    Returns:
        `oracle_accuracy`: the accuracy at the best threshold for THESE labels (as UnivFD reports it: an
        optimistic bound, known only after seeing the answers); `mean_p_fake_real` and `mean_p_fake_fake`: the
        mean P(fake) of the real and of the fake images.
    """
    from sklearn.metrics import roc_curve

    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    n_fake, n_real = int(labels.sum()), int(labels.size - labels.sum())
    false_positive, true_positive, _ = roc_curve(labels, scores)
    # Every threshold between distinct scores, and "all fake" / "all real": correct = TP + TN.
    correct = true_positive * n_fake + (1 - false_positive) * n_real
    return {"oracle_accuracy": float(correct.max() / labels.size),
            "mean_p_fake_real": float(scores[labels == 0].mean()),
            "mean_p_fake_fake": float(scores[labels == 1].mean())}
