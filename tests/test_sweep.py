"""The sweep: chosen on valid, tested once, valid-only tables; the top-k fusion candidate; the learning curve;
the command end to end on a tiny backbone (one extraction per [[sweep.backbone]] entry)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import QUIET, make_cache, make_image_folder, separable_cache
from featurekit.errors import FeaturekitError
from featurekit.report.sweep import plot_learning_curve, sweep_markdown as render_markdown
from featurekit.jobs.sweep import learning_curve, select_on_valid
from featurekit.rows import VALID_ROW_KEYS


def _splits(n: int) -> np.ndarray:
    return np.repeat(np.array(["train"] * 3 + ["valid", "test"]), 2)[np.arange(n) % 10]


def shifted_cache(path: Path, shift: dict[str, float], n: int = 600, seed: int = 0) -> Path:
    """Two Gaussian classes whose separation differs by split."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    splits = _splits(n)
    amount = np.array([shift[s] for s in splits])
    features = rng.normal(size=(n, 4)) + (amount * labels)[:, None]
    return make_cache(path, features.astype(np.float32), labels, splits)


@pytest.fixture
def rankings_differ(tmp_path: Path) -> tuple[Path, Path]:
    """`valid_best.h5` separates on valid but not on test; `test_best.h5` the other way round."""
    return (shifted_cache(tmp_path / "valid_best.h5", {"train": 1.5, "valid": 1.5, "test": 0.0}, seed=1),
            shifted_cache(tmp_path / "test_best.h5", {"train": 1.5, "valid": 0.1, "test": 1.5}, seed=2))


def test_the_sweep_chooses_on_valid_even_where_test_would_rank_otherwise(rankings_differ, tmp_path: Path,
                                                                          monkeypatch):
    import featurekit.evaluation.fitting
    from featurekit.evaluation.compare import compare

    valid_best, test_best = rankings_differ
    scored = []
    real_split_scores = featurekit.evaluation.fitting.split_scores

    def counting(fitted, cache, split, *args, **kwargs):
        scored.append(split)
        return real_split_scores(fitted, cache, split, *args, **kwargs)

    monkeypatch.setattr(featurekit.evaluation.fitting, "split_scores", counting)
    result = select_on_valid([test_best, valid_best], ["logreg"], top_k=0, runs_dir=tmp_path / "runs", n_boot=0, **QUIET)
    assert scored.count("test") == 1  # the test split is scored once, for the choice only
    assert [row["cache"] for row in result.rows] == ["valid_best.h5", "test_best.h5"]
    assert result.chosen is result.rows[0] and result.chosen["cache"] == "valid_best.h5" and result.fusion is None
    # On test the ranking is the other way round: a table ranked on test would have chosen the other cache.
    on_test = {row["cache"]: row["roc_auc"]
               for row in compare([valid_best, test_best], ["logreg"], runs_dir=tmp_path / "runs", n_boot=0, **QUIET)}
    assert on_test["test_best.h5"] > 0.8 > 0.65 > on_test["valid_best.h5"]
    assert result.test["roc_auc"] == pytest.approx(on_test["valid_best.h5"])
    # No test column anywhere in the table of all rows: not in the rows, the JSON rows, or the Markdown table.
    assert not [key for key in VALID_ROW_KEYS if "test" in key]
    as_json = result.to_dict()
    assert all(not [k for k in row if "test" in k] for row in as_json["rows"])
    assert set(as_json["test_of_chosen"]) >= {"accuracy", "accuracy_ci_low", "roc_auc", "average_precision",
                                              "accuracy_real", "accuracy_fake"}
    markdown = render_markdown(result)
    header = markdown.split("## every configuration, on the valid split only")[1].strip().splitlines()[0]
    assert "valid ROC AUC" in header and "test" not in header.lower()
    assert "test figures (reported once)" in markdown


def test_ties_go_to_fewer_features_then_name(tmp_path: Path):
    from featurekit.jobs.sweep import _rank_key

    rows = [{"valid_roc_auc": 0.9, "feature_dim": 64, "name": "a"}, {"valid_roc_auc": 0.9, "feature_dim": 8, "name": "b"},
            {"valid_roc_auc": 0.9, "feature_dim": 8, "name": "a2"}, {"valid_roc_auc": 0.91, "feature_dim": 999, "name": "z"}]
    assert [r["name"] for r in sorted(rows, key=_rank_key)] == ["z", "a2", "b", "a"]


def split_signal(tmp_path: Path, n: int = 1000) -> list[Path]:
    """Each cache alone is near chance; fused, B - A gives the class (as in test_fusion)."""
    rng = np.random.default_rng(0)
    labels = np.arange(n) % 2
    nuisance = rng.normal(scale=20.0, size=n)
    a = np.column_stack([nuisance, rng.normal(size=n)])
    b = np.column_stack([nuisance + (labels - 0.5) + rng.normal(scale=0.05, size=n), rng.normal(size=n)])
    return [make_cache(tmp_path / f"{name}.h5", x.astype(np.float32), labels, _splits(n), layer=name)
            for name, x in (("a", a), ("b", b))]


def test_the_top_k_fusion_is_one_more_candidate_and_can_win(tmp_path: Path):
    caches = split_signal(tmp_path)
    result = select_on_valid(caches, ["logreg"], {"logreg": {"C": 1e4}}, top_k=3, runs_dir=tmp_path / "runs",
                             n_boot=0, **QUIET)
    assert result.fusion is not None and result.fusion["rank"] is None
    assert result.fusion["cache"] == "fuse(a.h5+b.h5)" or result.fusion["cache"] == "fuse(b.h5+a.h5)"
    assert result.fusion["valid_roc_auc"] > 0.95 > 0.65 > max(r["valid_roc_auc"] for r in result.rows)
    assert result.chosen is result.fusion and result.test["roc_auc"] > 0.95
    assert Path(result.fusion["model_dir"]).parent.name.startswith("fuse-")
    alone = select_on_valid(caches, ["logreg"], {"logreg": {"C": 1e4}}, top_k=1, runs_dir=tmp_path / "runs",
                            n_boot=0, **QUIET)
    assert alone.fusion is None and alone.chosen is alone.rows[0]


def test_the_fusion_is_fitted_with_every_probe_and_the_best_on_valid_is_its_candidate(tmp_path: Path):
    """The fused caches are one more cache: each probe of the grid is fitted on them, ranked on valid."""
    caches = split_signal(tmp_path)
    result = select_on_valid(caches, ["knn", "logreg"], {"logreg": {"C": 1e4}}, top_k=3, runs_dir=tmp_path / "runs",
                             n_boot=0, **QUIET)
    assert sorted(row["probe"] for row in result.fusion_rows) == ["knn", "logreg"]
    assert result.fusion is result.fusion_rows[0]
    assert result.fusion["valid_roc_auc"] == max(row["valid_roc_auc"] for row in result.fusion_rows)
    assert all(row["rank"] is None for row in result.fusion_rows)


def test_learning_curve_sizes_repeats_and_plot(tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5", n=480)
    points = learning_curve(cache, "logreg", repeats=2, seed=0, **QUIET)
    assert [p["n_train"] for p in points] == [36, 72, 144, 288]
    assert [p["fraction"] for p in points] == [0.125, 0.25, 0.5, 1.0]
    assert all(p["repeats"] == 2 and len(p["test_roc_auc"]) == 2 for p in points)
    assert points[0]["test_roc_auc"][0] != points[0]["test_roc_auc"][1]  # other subsamples
    assert points[-1]["test_roc_auc_sd"] == 0.0  # all of train, a deterministic probe: one value
    assert all(0.5 < p["test_roc_auc_mean"] <= 1 for p in points)
    again = learning_curve(cache, "logreg", repeats=2, seed=0, **QUIET)
    assert again == points  # seeded
    png = plot_learning_curve(points, tmp_path / "curve.png", "title")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(FeaturekitError, match="memory budget"):
        learning_curve(cache, "logreg", memory_budget_gb=1e-9, **QUIET)


def test_stratified_subsamples_keep_the_class_balance(tmp_path: Path, monkeypatch):
    import featurekit.evaluation.fitting

    cache = separable_cache(tmp_path / "sep.h5", n=480)
    seen = []
    real = featurekit.evaluation.fitting.fit_estimator

    def spy(probe, params, x, y, *rest):
        seen.append((len(y), int(y.sum())))
        return real(probe, params, x, y, *rest)

    monkeypatch.setattr(featurekit.evaluation.fitting, "fit_estimator", spy)
    learning_curve(cache, "logreg", repeats=1, **QUIET)
    assert seen == [(36, 18), (72, 36), (144, 72), (288, 144)]


def test_the_sweep_command_end_to_end(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    import featurekit.extraction.extract
    from featurekit.cli import app

    data = make_image_folder(tmp_path / "faces", per_class=30, size=32)
    config = tmp_path / "tiny_sweep.toml"
    config.write_text(f'data = "{data}"\ncache_dir = "{tmp_path / "cache"}"\nruns_dir = "{tmp_path / "runs"}"\n'
                      f'[sweep]\nprobe = ["logreg", "knn"]\nboot = 50\nrepeats = 2\nresults_dir = "{tmp_path / "results"}"\n'
                      '[[sweep.backbone]]\nbackbone = "test_tiny"\npooling = ["avg", "meanstd"]\n')
    passes = []
    real = featurekit.extraction.extract.extract_request

    def counting(request, *args, **kwargs):
        passes.append([tap.pooling for tap in request.taps])
        return real(request, *args, **kwargs)

    monkeypatch.setattr(featurekit.extraction.extract, "extract_request", counting)
    result = CliRunner().invoke(app, ["sweep", "--config", str(config), "--learning-curve", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert passes == [["avg", "meanstd"]]  # one forward pass for both poolings
    results = tmp_path / "results"
    report = json.loads((results / "sweep-tiny_sweep.json").read_text())
    assert len(report["rows"]) == 4 and report["fusion_candidate"] is not None
    assert report["chosen"]["valid_roc_auc"] == max(r["valid_roc_auc"] for r in report["rows"] +
                                                    [report["fusion_candidate"]])
    curve = report["learning_curve"]
    assert [p["fraction"] for p in curve] == [0.125, 0.25, 0.5, 1.0]
    assert "test_roc_auc_mean" in curve[-1]  # all of train always fits; kNN skips sizes below its 15 neighbours
    assert all(("error" in p) == (report["chosen"]["probe"] == "knn" and p["n_train"] < 15) for p in curve)
    assert (results / "sweep-tiny_sweep-learning-curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "sweep-tiny_sweep-learning-curve.png" in (results / "sweep-tiny_sweep.md").read_text()
    assert "VALID split only" in result.output and "reported once" in result.output
    again = CliRunner().invoke(app, ["sweep", "--config", str(config), "--no-progress"])
    assert again.exit_code == 0, again.output
    assert "(reused)" in again.output and "fitting" not in again.output


def test_a_misspelt_key_in_a_sweep_entry_is_refused(tmp_path: Path):
    from featurekit.config import load_config_file

    config = tmp_path / "s.toml"
    config.write_text('[[sweep.backbone]]\nbackbone = "test_tiny"\nlayers = ["a"]\n')
    with pytest.raises(FeaturekitError, match=r"Unknown key `layers` in .*\[\[sweep.backbone\]\] entry 1.*`layer`"):
        load_config_file(config)
    config.write_text('[sweep]\ntop_k = "3"\n')
    with pytest.raises(FeaturekitError, match=r"`top_k` in .*\[sweep\] must be an integer"):
        load_config_file(config)
