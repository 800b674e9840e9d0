"""Figures that separate ranking from calibration: accuracy at the best threshold for the test set itself (oracle,
reported, never used to choose) and the mean P(fake) of real and of fake images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import make_cache
from featurekit.evaluation.compare import compare
from featurekit.evaluation.scoring import shift_figures


def _brute_force_oracle(labels: np.ndarray, scores: np.ndarray) -> float:
    thresholds = np.append(np.unique(scores), np.inf)
    return max(float(np.mean((scores >= t) == labels)) for t in thresholds)


def test_the_oracle_is_the_best_accuracy_over_every_threshold():
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.array([0.1, 0.2, 0.6, 0.5, 0.8, 0.9])
    figures = shift_figures(labels, scores)
    assert figures["oracle_accuracy"] == pytest.approx(5 / 6)
    assert figures["mean_p_fake_real"] == pytest.approx(0.3) and figures["mean_p_fake_fake"] == pytest.approx(2.2 / 3)
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 2, 50)
        labels[:2] = (0, 1)
        scores = np.round(rng.random(50) + 0.3 * labels, 2)  # ties included
        assert shift_figures(labels, scores)["oracle_accuracy"] == pytest.approx(_brute_force_oracle(labels, scores))


def test_a_shifted_test_split_keeps_its_ranking_while_the_valid_threshold_fails(tmp_path: Path):
    """Test features shifted towards "fake": accuracy at the valid threshold drops, the oracle does not."""
    rng = np.random.default_rng(3)
    n = 600
    labels = np.arange(n) % 2
    splits = np.repeat(np.array(["train"] * 3 + ["valid", "test"]), 2)[np.arange(n) % 10]
    features = rng.normal(size=(n, 4)).astype(np.float32) + 3 * labels[:, None]
    features[splits == "test"] += 2.5
    cache = make_cache(tmp_path / "shift.h5", features, labels, splits)
    [row] = compare([cache], ["logreg"], runs_dir=tmp_path / "runs", n_boot=0, audit=False, log=lambda m: None)
    assert row["oracle_accuracy"] > 0.9 and row["accuracy"] < row["oracle_accuracy"] - 0.15
    assert row["oracle_accuracy"] == pytest.approx(_brute_force_oracle(row["_labels"], row["_scores"]))
    assert row["mean_p_fake_real"] > 0.5  # the real test images now look fake on average: a calibration failure
    assert row["mean_p_fake_real"] == pytest.approx(row["_scores"][row["_labels"] == 0].mean())
    assert row["mean_p_fake_fake"] == pytest.approx(row["_scores"][row["_labels"] == 1].mean())


def test_a_threshold_chosen_on_valid_plus_its_views(tmp_path: Path):
    from conftest import make_image_folder
    from featurekit.cache import open_cache
    from featurekit.evaluation.compare import compare_from_options
    from featurekit.errors import FeaturekitError
    from featurekit.extraction.extract import extract
    from featurekit.evaluation.fitting import load_fitted, split_scores
    from featurekit.metrics import choose_threshold, evaluate

    data = make_image_folder(tmp_path / "faces", per_class=30, size=40)
    cache_dir = tmp_path / "cache"
    clean = extract(data, "test_tiny", pooling="avg", batch_size=16, cache_dir=cache_dir, progress=False,
                    log=lambda m: None).cache_path
    options = {"cache": [clean], "probe": ["logreg"], "boot": 0, "runs_dir": tmp_path / "runs", "cache_dir": cache_dir,
               "audit": False}
    plain = compare_from_options({**options, "view": ["blur:2"]}, log=lambda m: None)
    rows = compare_from_options({**options, "view": ["blur:2"], "threshold_on": "valid+views"}, log=lambda m: None)
    view_valid = cache_dir / f"{clean.stem}-view-blur2-only-valid.h5"
    fitted = load_fitted(rows[0]["model_dir"])
    with open_cache(clean) as training, open_cache(view_valid) as degraded:
        assert set(degraded.splits) == {"valid"} and degraded.attrs["view"] == "blur:2"
        parts = [split_scores(fitted, training, "valid"), split_scores(fitted, degraded, "valid")]
    expected = choose_threshold(np.concatenate([y for _, y in parts]), np.concatenate([s for s, _ in parts]))
    assert [row["threshold_on"] for row in plain] == ["valid", "valid"] and plain[0]["threshold"] == fitted.threshold
    assert [row["threshold_on"] for row in rows] == ["valid+views", "valid+views"]
    assert all(row["threshold"] == pytest.approx(expected) for row in rows) and expected != fitted.threshold
    for row in rows:  # every figure at the new threshold; the ranking figures unchanged
        at_new = evaluate(row["_labels"], row["_scores"], expected, n_boot=0)
        assert row["accuracy"] == pytest.approx(at_new["accuracy"])
    assert [row["roc_auc"] for row in rows] == [row["roc_auc"] for row in plain]
    with pytest.raises(FeaturekitError, match="needs at least one view"):
        compare_from_options({**options, "threshold_on": "valid+views"}, log=lambda m: None)


def test_the_sweep_reports_its_choice_on_views_at_a_threshold_chosen_on_valid_plus_views(tmp_path: Path):
    from typer.testing import CliRunner

    from conftest import make_image_folder
    from featurekit.cli import app
    from featurekit.evaluation.fitting import load_fitted, split_scores
    from featurekit.cache.fusion import open_source
    from featurekit.metrics import choose_threshold

    import json

    data = make_image_folder(tmp_path / "faces", per_class=30, size=40)
    config = tmp_path / "s.toml"
    config.write_text(f'data = "{data}"\ncache_dir = "{tmp_path / "cache"}"\nruns_dir = "{tmp_path / "runs"}"\n'
                      f'[sweep]\nprobe = ["logreg"]\nboot = 0\ntop_k = 2\nresults_dir = "{tmp_path / "results"}"\n'
                      'view = ["blur:2"]\nthreshold_on = "valid+views"\n'
                      '[[sweep.backbone]]\nbackbone = "test_tiny"\npooling = ["avg", "max"]\n')
    result = CliRunner().invoke(app, ["sweep", "--config", str(config), "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "results" / "sweep-s.json").read_text())
    chosen = report["chosen"]
    assert report["threshold_on"] == "valid+views" and chosen["threshold"] != report["test_of_chosen"]["threshold"]
    fitted = load_fitted(chosen["model_dir"])
    members = fitted.meta.get("members") or [fitted.meta["cache"]]
    views = [Path(m).with_name(f"{Path(m).stem}-view-blur2-only-valid.h5") for m in members]
    parts = []
    for source in (members, views):
        with open_source(source if len(source) > 1 else source[0]) as reader:
            parts.append(split_scores(fitted, reader, "valid"))
    expected = choose_threshold(np.concatenate([y for _, y in parts]), np.concatenate([s for s, _ in parts]))
    assert report["test_of_chosen"]["threshold"] == pytest.approx(expected)
    [on_view] = report["other_test_sets_of_chosen"]
    assert on_view["view"] == "blur:2" and on_view["threshold"] == pytest.approx(expected)
    assert "threshold (chosen on valid+views)" in (tmp_path / "results" / "sweep-s.md").read_text()
    assert "test split, blur:2" in " ".join(result.output.split())
