"""Forensic metrics for a binary real-vs-fake probe, the positive class being `fake` = 1.

Every function takes the true labels and a *score* (higher means more likely fake: a probability,
a logit or an SVM margin), so one code path serves every probe; `fake_scores` is that score for any
fitted probe, P(fake). Hard decisions come from a threshold that `choose_threshold` picks on the VALID
split; the test split is only ever scored with it. The convention everywhere: predict fake when
`score >= threshold`.

Point metrics come from `sklearn.metrics`. The bootstrap intervals count instead: the AUC of a
resample is the Mann-Whitney statistic over the sample's distinct scores, computed for a block of
resamples at once with NumPy (tests check it equals scikit-learn's AUC, ties included), so a
1000-resample interval costs a fraction of a second instead of 1000 calls to `roc_auc_score`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Callable

import numpy as np
from sklearn import metrics as skm

from featurekit.errors import FeaturekitError

POSITIVE_LABEL = 1  # `fake`


def fake_scores(estimator: Any, X: np.ndarray) -> np.ndarray:
    """P(fake) for every row: column 1 of `predict_proba`, one definition for every probe.

    Requires the probe to be fitted on labels 0 (real) / 1 (fake), so column 1 is fake.
    """
    classes = np.asarray(estimator.classes_)
    if classes.tolist() != [0, POSITIVE_LABEL]:
        raise FeaturekitError("Scores are defined for probes trained on labels 0 (real) and 1 (fake).",
                              received=f"classes_ {classes.tolist()}",
                              fix="Train on the cache's integer labels, not on class names.")
    return estimator.predict_proba(X)[:, 1]


def _as_binary(y_true: np.ndarray, score: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise FeaturekitError(f"Labels and scores of the {where} split differ in length.",
                              received=f"{y.size} labels and {s.size} scores",
                              fix="Score every row of the split exactly once, in the order of its labels.")
    present = set(np.unique(y).tolist())
    if not present <= {0, 1}:
        raise FeaturekitError(f"Labels of the {where} split must be 0 (real) and 1 (fake).",
                              received=f"labels {sorted(present)}",
                              fix="Map class names to 0/1 with the cache's class_names before scoring.")
    if np.isnan(s).any():
        raise FeaturekitError(f"Scores of the {where} split contain NaN; the probe diverged.",
                              received=f"{int(np.isnan(s).sum())} NaN scores out of {s.size}",
                              fix="Lower the learning rate or standardise the features, then retrain.")
    if np.unique(y).size < 2:
        raise FeaturekitError(f"The {where} split holds one class only, so ROC-based metrics are undefined.",
                              received=f"{y.size} samples, all labelled {int(y[0]) if y.size else 'nothing'}",
                              fix="Re-split the dataset so every split has both real and fake images.")
    return y.astype(np.int64), s


def accuracy(y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of correct decisions at `score >= threshold`."""
    return float(skm.accuracy_score(y_true, np.asarray(score) >= threshold))


def accuracy_real(y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of real images (label 0) called real at `score >= threshold`: the true-negative rate.

    Reported beside `accuracy_fake` because a detector's errors on a new generator (or a new camera)
    show up on one side only; NaN when the split has no real image.
    """
    return float(skm.recall_score(y_true, np.asarray(score) >= threshold, pos_label=0, zero_division=np.nan))


def accuracy_fake(y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of fake images (label 1) called fake at `score >= threshold`: the true-positive rate.

    NaN when the split has no fake image.
    """
    return float(skm.recall_score(y_true, np.asarray(score) >= threshold, zero_division=np.nan))


def balanced_accuracy(y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> float:
    """Mean of the true-positive and true-negative rates at `score >= threshold`."""
    return float(skm.balanced_accuracy_score(y_true, np.asarray(score) >= threshold))


def f1(y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> float:
    """F1 of the fake class at `score >= threshold` (0 when nothing is predicted fake)."""
    return float(skm.f1_score(y_true, (np.asarray(score) >= threshold).astype(int), zero_division=0))


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (threshold-free ranking quality)."""
    return float(skm.roc_auc_score(y_true, score))


def average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve of the fake class, as sklearn's step-wise sum."""
    return float(skm.average_precision_score(y_true, score))


def eer(y_true: np.ndarray, score: np.ndarray) -> float:
    """Equal error rate: where the false-positive rate meets the false-negative rate.

    The ROC curve is piecewise linear between its operating points; the crossing of FPR and
    FNR = 1 - TPR is found on the segment where their difference changes sign and linearly
    interpolated, so the value does not depend on how coarse the scores are.

    Returns:
        The EER in [0, 1]; 0 for perfectly separated scores, about 0.5 for random ones.
    """
    fpr, tpr, _ = skm.roc_curve(y_true, score, drop_intermediate=False)
    diff = (1.0 - tpr) - fpr  # FNR - FPR: starts at 1 (threshold +inf), ends at -1, never increases
    i = int(np.flatnonzero(diff <= 0)[0])  # first point at or past the crossing
    if diff[i] == 0 or i == 0:
        return float(fpr[i])
    # Crossing inside segment (i-1, i): solve diff(t) = 0 for t in [0, 1].
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tpr_at_fpr(y_true: np.ndarray, score: np.ndarray, max_fpr: float = 0.01) -> float:
    """Best true-positive rate among operating points whose false-positive rate is <= max_fpr.

    Operating points only (no interpolation): a threshold that is actually reachable. At the default 1 %, how
    many fakes are caught when at most 1 in 100 real faces is flagged (`evaluate`'s "tpr_at_1pct_fpr").
    """
    fpr, tpr, _ = skm.roc_curve(y_true, score, drop_intermediate=False)
    return float(tpr[fpr <= max_fpr].max())


def choose_threshold(y_valid: np.ndarray, score_valid: np.ndarray) -> float:
    """The decision threshold that maximises balanced accuracy on the VALID split.

    Maximising balanced accuracy (TPR + TNR) / 2 is the same as maximising Youden's J = TPR - FPR,
    since BA = (J + 1) / 2; it ignores class imbalance, unlike plain accuracy. Among ties the
    highest threshold (fewest fake calls) wins. The threshold returned lies halfway between the
    chosen score and the next lower one, so small shifts of test scores do not flip decisions made
    right at a training value. Never call this on test scores: that leaks the test labels.

    Args:
        y_valid: Labels of the validation split, 0 real / 1 fake.
        score_valid: Scores of the validation split, higher meaning more likely fake.

    Returns:
        A threshold; predict fake when `score >= threshold`.
    """
    y, s = _as_binary(y_valid, score_valid, "valid")
    fpr, tpr, thresholds = skm.roc_curve(y, s, drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))
    if best == 0:  # threshold +inf: predicting nothing fake is best (useless scores)
        return float(np.nextafter(thresholds[1], np.inf))
    if best == len(thresholds) - 1:  # lowest score: predicting everything fake is best
        return float(thresholds[best])
    return float((thresholds[best] + thresholds[best + 1]) / 2.0)


# `evaluate`'s metrics in the order a report shows them: name -> (function, whether it takes the threshold).
_METRICS = {"accuracy": (accuracy, True), "accuracy_real": (accuracy_real, True),
            "accuracy_fake": (accuracy_fake, True), "balanced_accuracy": (balanced_accuracy, True),
            "roc_auc": (roc_auc, False), "average_precision": (average_precision, False), "eer": (eer, False),
            "tpr_at_1pct_fpr": (tpr_at_fpr, False), "f1": (f1, True)}
METRIC_KEYS = tuple(_METRICS)

# A resampled metric maps (labels, scores, index block of shape (resamples, n)) to one value per resample.
ResampledMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
# Resamples x rows per index block: bounds the memory of the vectorised bootstrap (about 100 MB at peak).
BOOTSTRAP_BLOCK_ELEMENTS = 2**21


def resampled_roc_auc(y: np.ndarray, score: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """ROC AUC of every resample in `idx` at once (Mann-Whitney, ties counted half).

    Scores become their rank among the sample's distinct values. Per resample, a histogram of the
    real rows over ranks and its running sum give, for every rank, twice the credit a fake row of that
    rank earns (2 x reals strictly below + reals tied); AUC = credit summed over the fake rows /
    (2 x reals x fakes). Integer counts throughout, so the only rounding is the final division.
    Resamples holding one class only get NaN.
    """
    _, codes = np.unique(score, return_inverse=True)
    levels = int(codes.max()) + 1 if codes.size else 1
    b = idx.shape[0]
    ranks = codes[idx]
    fake = y[idx] == POSITIVE_LABEL
    real_hist = np.bincount((ranks + levels * np.arange(b)[:, None])[~fake], minlength=b * levels).reshape(b, levels)
    credit = 2 * np.cumsum(real_hist, axis=1) - real_hist
    wins2 = np.where(fake, np.take_along_axis(credit, ranks, axis=1), 0).sum(axis=1)
    pairs = real_hist.sum(axis=1) * fake.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins2 / (2.0 * pairs), np.nan)


def resampled_accuracy(threshold: float) -> ResampledMetric:
    """Accuracy at `score >= threshold` of every resample at once (correct decisions averaged per resample)."""
    return lambda y, score, idx: ((score >= threshold) == (y == POSITIVE_LABEL))[idx].mean(axis=1)


def bootstrap_resamples(y: np.ndarray, n_boot: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Stratified bootstrap resamples as blocks of row indices, shape (resamples in the block, n).

    Each resample draws each class with replacement to its own size (reals first, then fakes), so it
    keeps the class balance of the split, which is what the split actually measures. The draws are those of
    `rng.choice(group, size=group.size)` per resample and class with `rng = default_rng(seed)`, so
    the same seed gives the same resamples as featurekit's earlier one-resample-at-a-time loop.
    """
    rng = np.random.default_rng(seed)
    n = y.size
    groups = [np.flatnonzero(y == c) for c in (0, 1)]
    per_block = max(1, BOOTSTRAP_BLOCK_ELEMENTS // max(1, n))
    for start in range(0, n_boot, per_block):
        rows = min(per_block, n_boot - start)
        yield np.array([np.concatenate([group[rng.integers(0, group.size, size=group.size)] for group in groups])
                        for _ in range(rows)], dtype=np.intp)


def bootstrap_intervals(metrics: dict[str, ResampledMetric], y: np.ndarray, score: np.ndarray, n_boot: int = 1000,
                        seed: int = 0) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap 95 % confidence intervals of several metrics, from one set of stratified resamples
    (`bootstrap_resamples`: every resample holds both classes, as the split does).

    Args:
        metrics: Name -> resampled metric, e.g. `{"roc_auc": resampled_roc_auc,
            "accuracy": resampled_accuracy(threshold)}`.
        y: True labels, 0/1.
        score: Scores, higher meaning more likely fake.
        n_boot: Number of resamples.
        seed: Seed of the resampling; the same seed gives the same intervals.

    Returns:
        Name -> (low, high), the 2.5th and 97.5th percentiles of the resampled metric.
    """
    y, s = _as_binary(y, score, "scored")
    values: dict[str, list[np.ndarray]] = {name: [] for name in metrics}
    for idx in bootstrap_resamples(y, n_boot, seed):
        for name, metric in metrics.items():
            values[name].append(metric(y, s, idx))
    return {name: tuple(float(v) for v in np.percentile(np.concatenate(parts), [2.5, 97.5]))
            for name, parts in values.items()}


def is_collapsed(y_pred: np.ndarray, score: np.ndarray, auc: float | None = None, auc_margin: float = 0.05,
                 score_tol: float = 1e-4) -> str:
    """Say why a probe looks collapsed (predicts one class or ranks at chance), or "" if it does not.

    A collapsed probe can still post a respectable accuracy on an imbalanced split, so reports must
    flag it instead of ranking it.

    Args:
        y_pred: Hard predictions on the split.
        score: Scores on the split.
        auc: ROC AUC on the split, if known (None or NaN skips that test).
        auc_margin: AUC within this distance of 0.5 counts as chance.
        score_tol: Scores whose standard deviation is below this count as constant.

    Returns:
        A short reason, e.g. "predicts one class only (1)", or "" when none applies.
    """
    reasons = []
    s = np.asarray(score, dtype=np.float64).ravel()
    classes = np.unique(np.asarray(y_pred).ravel())
    if classes.size == 1:
        reasons.append(f"predicts one class only ({classes[0]})")
    if not np.isfinite(s).all():
        reasons.append("scores contain NaN or inf")
    elif s.size and float(np.std(s)) < score_tol:
        reasons.append(f"scores nearly constant (std {np.std(s):.2e})")
    if auc is not None and np.isfinite(auc) and abs(auc - 0.5) <= auc_margin:
        reasons.append(f"ROC AUC {auc:.3f} is within {auc_margin} of chance")
    return "; ".join(reasons)


def evaluate(y_test: np.ndarray, score_test: np.ndarray, threshold: float, n_boot: int = 1000, seed: int = 0) -> dict:
    """All forensic metrics of one probe on the test split, at a threshold chosen on valid.

    Args:
        y_test: Test labels, 0 real / 1 fake.
        score_test: Test scores, higher meaning more likely fake.
        threshold: From `choose_threshold` on the valid split (0.5 for probabilities if no valid).
        n_boot: Bootstrap resamples for the 95 % intervals (0 skips them, giving NaN bounds).
        seed: Bootstrap seed.

    Returns:
        A flat dict: n, n_fake, threshold, the METRIC_KEYS (accuracy_real and accuracy_fake are the
        accuracies on each class at the threshold), accuracy_ci_low/high,
        roc_auc_ci_low/high, and `collapsed` (a reason from `is_collapsed`, "" when healthy).
    """
    y, s = _as_binary(y_test, score_test, "test")
    out: dict = {"n": int(y.size), "n_fake": int(y.sum()), "threshold": float(threshold)}
    out.update({key: metric(y, s, threshold) if at_threshold else metric(y, s)
                for key, (metric, at_threshold) in _METRICS.items()})
    resampled = {"accuracy": resampled_accuracy(threshold), "roc_auc": resampled_roc_auc}
    intervals = (bootstrap_intervals(resampled, y, s, n_boot, seed) if n_boot
                 else dict.fromkeys(resampled, (float("nan"), float("nan"))))
    for name, (low, high) in intervals.items():
        out[f"{name}_ci_low"], out[f"{name}_ci_high"] = low, high
    out["collapsed"] = is_collapsed((s >= threshold).astype(np.int64), s, out["roc_auc"])
    return out
