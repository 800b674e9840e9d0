"""Forensic metrics against values worked out by hand on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from featurekit import metrics
from featurekit.errors import FeaturekitError

# Six faces, three real (0) and three fake (1). Ranked by score: 0.9 F, 0.8 F, 0.4 R, 0.35 R, 0.3 F, 0.1 R.
Y6 = np.array([0, 0, 0, 1, 1, 1])
S6 = np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.9])


def test_roc_auc_counts_correctly_ordered_pairs():
    # Fake-over-real pairs: 0.8 beats 3 reals, 0.3 beats 1 (0.1), 0.9 beats 3: 7 of 9.
    assert metrics.roc_auc(Y6, S6) == pytest.approx(7 / 9)


def test_average_precision_by_hand():
    # Recall steps of 1/3 at ranks 1, 2, 5 with precisions 1, 1, 3/5.
    assert metrics.average_precision(Y6, S6) == pytest.approx((1 + 1 + 3 / 5) / 3)


def test_eer_at_an_operating_point():
    # Threshold 0.4 flags one real of three (0.4) and misses one fake of three (0.3).
    assert metrics.eer(Y6, S6) == pytest.approx(1 / 3)


def test_eer_interpolates_between_operating_points():
    # One real between fakes: ROC points (FPR, TPR) go (0, 2/3) -> (1, 2/3). FNR stays 1/3 on that
    # segment, so FPR = FNR at FPR = 1/3, which no threshold reaches exactly.
    y = np.array([0, 1, 1, 1])
    s = np.array([0.5, 0.9, 0.7, 0.2])
    assert metrics.eer(y, s) == pytest.approx(1 / 3)
    assert metrics.eer(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 0.0


def test_tpr_at_1pct_fpr_allows_one_real_in_a_hundred():
    reals = np.arange(100) / 100.0  # 0.00 ... 0.99
    fakes = np.array([1.5, 1.2, 0.985, 0.5])
    y = np.r_[np.zeros(100), np.ones(4)]
    s = np.r_[reals, fakes]
    # At threshold 0.985 only the real 0.99 is flagged (FPR 0.01) and 3 of 4 fakes are caught.
    assert metrics.tpr_at_fpr(y, s) == pytest.approx(0.75)  # the default: FPR <= 1 %
    assert metrics.evaluate(y, s, 0.5, n_boot=0)["tpr_at_1pct_fpr"] == pytest.approx(0.75)
    assert metrics.tpr_at_fpr(y, s, max_fpr=0.0) == pytest.approx(0.5)


def test_threshold_metrics_by_hand():
    # At 0.5: predictions 0 0 0 1 0 1 -> TP 2, FN 1, TN 3, FP 0.
    assert metrics.accuracy(Y6, S6, 0.5) == pytest.approx(5 / 6)
    assert metrics.balanced_accuracy(Y6, S6, 0.5) == pytest.approx((2 / 3 + 1) / 2)
    assert metrics.f1(Y6, S6, 0.5) == pytest.approx(2 * 1 * (2 / 3) / (1 + 2 / 3))


def test_choose_threshold_maximises_balanced_accuracy_between_scores():
    y = np.array([0, 0, 1, 1])
    assert metrics.choose_threshold(y, np.array([0.6, 0.65, 0.8, 0.85])) == pytest.approx(0.725)
    # On S6 the best balanced accuracy (5/6) is reached by flagging 0.8 and up, or 0.3 and up;
    # ties go to the higher threshold, placed halfway to the next lower score.
    t = metrics.choose_threshold(Y6, S6)
    assert t == pytest.approx((0.8 + 0.4) / 2)
    assert metrics.balanced_accuracy(Y6, S6, t) == pytest.approx(5 / 6)


def test_evaluate_uses_the_given_threshold_and_never_retunes_on_test():
    y_valid, s_valid = np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])
    t = metrics.choose_threshold(y_valid, s_valid)  # 0.25
    y_test, s_test = np.array([0, 0, 1, 1]), np.array([0.3, 0.35, 0.6, 0.7])  # drifted scores
    out = metrics.evaluate(y_test, s_test, t, n_boot=0)
    assert out["threshold"] == pytest.approx(0.25)
    assert out["accuracy"] == pytest.approx(0.5)  # a test-tuned threshold would give 1.0
    assert out["roc_auc"] == pytest.approx(1.0)


def test_evaluate_reports_every_metric_with_intervals():
    out = metrics.evaluate(Y6, S6, 0.5, n_boot=100, seed=1)
    for key in metrics.METRIC_KEYS + ("accuracy_ci_low", "accuracy_ci_high", "roc_auc_ci_low", "roc_auc_ci_high"):
        assert key in out
    assert out["accuracy"] == pytest.approx(5 / 6)
    assert out["roc_auc"] == pytest.approx(7 / 9)
    assert out["eer"] == pytest.approx(1 / 3)
    assert out["tpr_at_1pct_fpr"] == pytest.approx(2 / 3)
    assert out["accuracy_ci_low"] <= out["accuracy"] <= out["accuracy_ci_high"]
    assert out["roc_auc_ci_low"] <= out["roc_auc"] <= out["roc_auc_ci_high"]
    assert out["n"] == 6 and out["n_fake"] == 3
    assert out["collapsed"] == ""


def _noisy_scores(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(int)
    return y, y * 1.0 + rng.normal(0, 1.0, n)


def _interval(metric, y, s, **options):
    """The interval of one metric through `bootstrap_intervals`."""
    return metrics.bootstrap_intervals({"metric": metric}, y, s, **options)["metric"]


def test_bootstrap_ci_contains_estimate_and_is_reproducible():
    y, s = _noisy_scores()
    auc = metrics.roc_auc(y, s)
    low, high = _interval(metrics.resampled_roc_auc, y, s, n_boot=100, seed=7)
    assert low < auc < high
    assert high - low < 0.3  # 200 samples pin the AUC down to a few hundredths
    assert (low, high) == _interval(metrics.resampled_roc_auc, y, s, n_boot=100, seed=7)
    assert (low, high) != _interval(metrics.resampled_roc_auc, y, s, n_boot=100, seed=8)


def _sklearn_loop_interval(metric_fn, y, s, n_boot, seed):
    """The bootstrap as featurekit computed it before vectorising: one resample and one sklearn call at a time."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in (0, 1)]
    values = []
    for _ in range(n_boot):
        idx = np.concatenate([rng.choice(g, size=g.size, replace=True) for g in groups])
        values.append(metric_fn(y[idx], s[idx]))
    return tuple(np.percentile(values, [2.5, 97.5]))


def test_resampled_auc_equals_sklearn_with_ties():
    # Scores rounded to one decimal: many ties within and across classes.
    rng = np.random.default_rng(4)
    y = (rng.random(300) < 0.3).astype(int)
    s = np.round(rng.normal(size=300) + y, 1)
    assert len(np.unique(s)) < 100
    whole = np.arange(y.size)[None, :]
    assert metrics.resampled_roc_auc(y, s, whole)[0] == pytest.approx(roc_auc_score(y, s), rel=1e-14, abs=0)
    assert metrics.resampled_roc_auc(Y6, S6, np.arange(6)[None, :])[0] == pytest.approx(7 / 9, rel=1e-15)
    # Ten arbitrary resamples, one call: each equals sklearn on that resample.
    idx = rng.integers(0, y.size, size=(10, y.size))
    expected = [roc_auc_score(y[i], s[i]) for i in idx]
    np.testing.assert_allclose(metrics.resampled_roc_auc(y, s, idx), expected, rtol=1e-13)
    one_class = np.flatnonzero(y == 0)[None, :]
    assert np.isnan(metrics.resampled_roc_auc(y, s, one_class)[0])


def test_vectorised_intervals_equal_the_sklearn_loop():
    # The same seed draws the same resamples, so the intervals agree to rounding, not just to Monte-Carlo noise.
    y, s = _noisy_scores(n=150, seed=5)
    s = np.round(s, 1)
    for vectorised, reference in [
        (metrics.resampled_roc_auc, roc_auc_score),
        (metrics.resampled_accuracy(0.5), lambda yy, ss: metrics.accuracy(yy, ss, 0.5)),
    ]:
        expected = _sklearn_loop_interval(reference, y, s, n_boot=300, seed=3)
        got = _interval(vectorised, y, s, n_boot=300, seed=3)
        np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_bootstrap_blocks_cover_every_resample(monkeypatch):
    # Blocks of 7 resamples (the memory bound): the same intervals as one block.
    y, s = _noisy_scores(n=100, seed=6)
    whole = metrics.bootstrap_intervals({"auc": metrics.resampled_roc_auc}, y, s, n_boot=50, seed=1)
    monkeypatch.setattr(metrics, "BOOTSTRAP_BLOCK_ELEMENTS", 7 * 100)
    assert len(list(metrics.bootstrap_resamples(y, 50, seed=1))) == 8
    assert metrics.bootstrap_intervals({"auc": metrics.resampled_roc_auc}, y, s, n_boot=50, seed=1) == whole


def test_accuracy_on_real_and_on_fake_at_the_threshold():
    # At 0.5: reals 0.1, 0.4, 0.35 all called real; fakes 0.8, 0.9 caught, 0.3 missed.
    assert metrics.accuracy_real(Y6, S6, 0.5) == pytest.approx(1.0)
    assert metrics.accuracy_fake(Y6, S6, 0.5) == pytest.approx(2 / 3)
    # At 0.35 the real at 0.4 and at 0.35 are flagged (score >= threshold means fake).
    assert metrics.accuracy_real(Y6, S6, 0.35) == pytest.approx(1 / 3)
    assert metrics.accuracy_fake(Y6, S6, 0.35) == pytest.approx(2 / 3)
    out = metrics.evaluate(Y6, S6, 0.5, n_boot=0)
    assert (out["accuracy_real"], out["accuracy_fake"]) == (pytest.approx(1.0), pytest.approx(2 / 3))
    # Balanced accuracy is their mean, by definition.
    assert out["balanced_accuracy"] == pytest.approx((out["accuracy_real"] + out["accuracy_fake"]) / 2)


def test_is_collapsed_flags_constant_and_chance_scorers():
    y, s = _noisy_scores()
    assert metrics.is_collapsed(s > 0.5, s, metrics.roc_auc(y, s)) == ""
    constant = np.full(y.size, 0.37)
    reason = metrics.is_collapsed(constant >= 0.5, constant, metrics.roc_auc(y, constant))
    assert "one class" in reason and "constant" in reason and "chance" in reason
    rng = np.random.default_rng(3)
    random_scores = rng.random(y.size)
    auc = metrics.roc_auc(y, random_scores)
    assert abs(auc - 0.5) < 0.05  # the premise: this seed gives a chance-level scorer
    assert "chance" in metrics.is_collapsed(random_scores > 0.5, random_scores, auc)


def test_evaluate_flags_a_collapsed_scorer():
    y, _ = _noisy_scores()
    out = metrics.evaluate(y, np.zeros(y.size), threshold=0.5, n_boot=0)
    assert out["accuracy"] == pytest.approx(1 - y.mean())  # looks fine on imbalanced data ...
    assert "one class" in out["collapsed"]  # ... but is flagged


def test_metrics_refuse_one_class_and_nan():
    with pytest.raises(FeaturekitError, match="one class"):
        metrics.evaluate(np.ones(5), np.linspace(0, 1, 5), 0.5)
    with pytest.raises(FeaturekitError, match="NaN"):
        metrics.choose_threshold(Y6, np.r_[S6[:-1], np.nan])
    with pytest.raises(FeaturekitError, match="differ in length"):
        metrics.evaluate(Y6, S6[:5], 0.5)


def test_a_collapsed_probe_names_the_label_it_predicts():
    from featurekit.metrics import evaluate

    y = np.array([0, 1] * 20)
    scores = np.linspace(0.0, 0.4, 40)  # every score below the threshold: all predicted real (0)
    assert evaluate(y, scores, threshold=0.5, n_boot=0)["collapsed"].startswith("predicts one class only (0)")
