"""Forensic metrics for a binary real-vs-fake probe, the positive class being `fake` = 1.

Every function takes the true labels and a *score* (higher means more likely fake: a probability,
a logit or an SVM margin), so one code path serves every probe. Hard decisions come from a threshold
that `choose_threshold` picks on the VALID split; the test split is only ever scored with it. The
convention everywhere: predict fake when `score >= threshold`.

All rank metrics come from `sklearn.metrics`; nothing here re-implements an AUC.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import sklearn
from sklearn import metrics as skm

from featurekit.errors import FeaturekitError

POSITIVE_LABEL = 1  # `fake`

# Keys of `evaluate`'s result, in the order a report shows them.
METRIC_KEYS = (
    "accuracy",
    "balanced_accuracy",
    "roc_auc",
    "average_precision",
    "eer",
    "tpr_at_1pct_fpr",
    "f1",
)


def _as_binary(y_true: np.ndarray, score: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true).ravel()
    s = np.asarray(score, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise FeaturekitError(
            f"Labels and scores of the {where} split differ in length.",
            received=f"{y.size} labels and {s.size} scores",
            fix="Score every row of the split exactly once, in the order of its labels.",
        )
    present = set(np.unique(y).tolist())
    if not present <= {0, 1}:
        raise FeaturekitError(
            f"Labels of the {where} split must be 0 (real) and 1 (fake).",
            received=f"labels {sorted(present)}",
            fix="Map class names to 0/1 with the cache's class_names before scoring.",
        )
    if np.isnan(s).any():
        raise FeaturekitError(
            f"Scores of the {where} split contain NaN; the probe diverged.",
            received=f"{int(np.isnan(s).sum())} NaN scores out of {s.size}",
            fix="Lower the learning rate or standardise the features, then retrain.",
        )
    return y.astype(np.int64), s


def _require_both_classes(y: np.ndarray, where: str) -> None:
    if np.unique(y).size < 2:
        raise FeaturekitError(
            f"The {where} split holds one class only, so ROC-based metrics are undefined.",
            received=f"{y.size} samples, all labelled {int(y[0]) if y.size else 'nothing'}",
            fix="Re-split the dataset so every split has both real and fake images.",
        )


def accuracy(y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of correct decisions at `score >= threshold`."""
    return float(skm.accuracy_score(y_true, np.asarray(score) >= threshold))


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
    fnr = 1.0 - tpr
    diff = fnr - fpr  # starts at 1 (threshold +inf), ends at -1, never increases
    i = int(np.flatnonzero(diff <= 0)[0])  # first point at or past the crossing
    if diff[i] == 0 or i == 0:
        return float(fpr[i])
    # Crossing inside segment (i-1, i): solve diff(t) = 0 for t in [0, 1].
    t = diff[i - 1] / (diff[i - 1] - diff[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tpr_at_fpr(y_true: np.ndarray, score: np.ndarray, max_fpr: float = 0.01) -> float:
    """Best true-positive rate among operating points whose false-positive rate is <= max_fpr.

    Operating points only (no interpolation): a threshold that is actually reachable.
    """
    fpr, tpr, _ = skm.roc_curve(y_true, score, drop_intermediate=False)
    return float(tpr[fpr <= max_fpr].max())


def tpr_at_1pct_fpr(y_true: np.ndarray, score: np.ndarray) -> float:
    """TPR at FPR <= 1 %: how many fakes are caught when at most 1 in 100 real faces is flagged."""
    return tpr_at_fpr(y_true, score, max_fpr=0.01)


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
    _require_both_classes(y, "valid")
    fpr, tpr, thresholds = skm.roc_curve(y, s, drop_intermediate=False)
    best = int(np.argmax(tpr - fpr))
    if best == 0:  # threshold +inf: predicting nothing fake is best (useless scores)
        return float(np.nextafter(thresholds[1], np.inf))
    if best == len(thresholds) - 1:  # lowest score: predicting everything fake is best
        return float(thresholds[best])
    return float((thresholds[best] + thresholds[best + 1]) / 2.0)


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    y: np.ndarray,
    score: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    stratified: bool = True,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of `metric_fn(y, score)`.

    Stratified resampling (the default) draws each class with replacement to its own size, so every
    resample has both classes and the class balance of the test split, which is what the split
    actually measures. With `stratified=False`, plain resampling may draw one class only; such
    resamples are skipped because AUC-like metrics are undefined there.

    Args:
        metric_fn: Called as `metric_fn(y_resampled, score_resampled)`; bind a threshold with a
            lambda for threshold metrics.
        y: True labels, 0/1.
        score: Scores, higher meaning more likely fake.
        n_boot: Number of resamples.
        seed: Seed of the resampling; the same seed gives the same interval.
        alpha: 1 - confidence level (0.05 gives a 95 % interval).
        stratified: Resample within each class (True) or over all samples (False).

    Returns:
        (low, high), the alpha/2 and 1 - alpha/2 percentiles of the resampled metric.
    """
    y, s = _as_binary(y, score, "scored")
    _require_both_classes(y, "scored")
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in (0, 1)] if stratified else [np.arange(y.size)]
    values = []
    # Inputs were validated above; skipping sklearn's per-call validation saves about a third of
    # the time (a resample costs a few ms for AUC, so n_boot=1000 takes seconds).
    with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
        for _ in range(n_boot):
            idx = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups])
            if not stratified and np.unique(y[idx]).size < 2:
                continue
            values.append(metric_fn(y[idx], s[idx]))
    if not values:
        raise FeaturekitError(
            "Every bootstrap resample held one class only.",
            received=f"{y.size} samples, n_boot={n_boot}",
            fix="Use stratified=True or a larger split.",
        )
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def is_collapsed(
    y_pred: np.ndarray,
    score: np.ndarray,
    auc: float | None = None,
    auc_margin: float = 0.05,
    score_tol: float = 1e-4,
) -> str:
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


def evaluate(
    y_test: np.ndarray,
    score_test: np.ndarray,
    threshold: float,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict:
    """All forensic metrics of one probe on the test split, at a threshold chosen on valid.

    Args:
        y_test: Test labels, 0 real / 1 fake.
        score_test: Test scores, higher meaning more likely fake.
        threshold: From `choose_threshold` on the valid split (0.5 for probabilities if no valid).
        n_boot: Bootstrap resamples for the intervals (0 skips them, giving NaN bounds).
        seed: Bootstrap seed.
        alpha: 1 - confidence level of the intervals.

    Returns:
        A flat dict: n, n_fake, threshold, the METRIC_KEYS, accuracy_ci_low/high,
        roc_auc_ci_low/high, and `collapsed` (a reason from `is_collapsed`, "" when healthy).
    """
    y, s = _as_binary(y_test, score_test, "test")
    _require_both_classes(y, "test")
    out: dict = {"n": int(y.size), "n_fake": int(y.sum()), "threshold": float(threshold)}
    out["accuracy"] = accuracy(y, s, threshold)
    out["balanced_accuracy"] = balanced_accuracy(y, s, threshold)
    out["roc_auc"] = roc_auc(y, s)
    out["average_precision"] = average_precision(y, s)
    out["eer"] = eer(y, s)
    out["tpr_at_1pct_fpr"] = tpr_at_1pct_fpr(y, s)
    out["f1"] = f1(y, s, threshold)
    nan = float("nan")
    out["accuracy_ci_low"], out["accuracy_ci_high"] = (
        bootstrap_ci(lambda yy, ss: accuracy(yy, ss, threshold), y, s, n_boot, seed, alpha)
        if n_boot
        else (nan, nan)
    )
    out["roc_auc_ci_low"], out["roc_auc_ci_high"] = (
        bootstrap_ci(roc_auc, y, s, n_boot, seed, alpha) if n_boot else (nan, nan)
    )
    out["collapsed"] = is_collapsed(s >= threshold, s, out["roc_auc"])
    return out
