from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_cache, separable_cache
from featurekit.cache import open_cache
from featurekit.evaluation.compare import ROW_KEYS, compare
from featurekit.errors import FeaturekitError
from featurekit.evaluation.fitting import fit_probe, load_fitted
from featurekit.report import render_rows

FAST_HEAD = {"epochs": 15, "batch_size": 32}


def test_fit_saves_model_threshold_and_provenance(tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5")
    fitted = fit_probe(cache, "logreg", runs_dir=tmp_path / "runs", log=lambda m: None)
    assert fitted.directory == tmp_path / "runs" / "sep" / "logreg"
    meta = json.loads((fitted.directory / "fitted.json").read_text())
    with open_cache(cache) as reader:
        assert meta["cache_fingerprint"] == reader.fingerprint
    assert meta["class_names"] == ["real", "fake"] and 0 < meta["threshold"] < 1
    assert meta["embedding"]["backbone"] == "test_tiny" and meta["n_train"] == 144
    assert not list((tmp_path / "runs" / "sep").glob(".*tmp*"))


def test_compare_rows_have_every_metric_and_reuse_fits(tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5")
    runs = tmp_path / "runs"
    rows = compare([cache], ["head", "logreg", "knn"], probe_params={"head": FAST_HEAD}, runs_dir=runs,
                   n_boot=200, log=lambda m: None)
    assert [r["probe"] for r in rows] == ["head", "logreg", "knn"]
    for row in rows:
        assert set(ROW_KEYS) <= set(row)
        assert row["accuracy"] > 0.85 and row["roc_auc"] > 0.9 and not row["collapsed"]
        assert row["accuracy_ci_low"] <= row["accuracy"] <= row["accuracy_ci_high"]
        assert row["random_features"] is True and row["n_test"] == 48
    again = compare([cache], ["head", "logreg", "knn"], probe_params={"head": FAST_HEAD}, runs_dir=runs,
                    n_boot=200, log=lambda m: None)
    assert all(r["reused"] for r in again)
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]
    changed = compare([cache], ["head"], probe_params={"head": {**FAST_HEAD, "units": 16}}, runs_dir=runs,
                      n_boot=0, log=lambda m: None)
    assert not changed[0]["reused"]


def test_threshold_comes_from_valid_not_test(tmp_path: Path):
    # Valid and test are drawn from different score ranges: a threshold tuned on test would differ.
    rng = np.random.default_rng(1)
    n = 300
    labels = np.arange(n) % 2
    splits = np.repeat(np.array(["train"] * 3 + ["valid", "test"]), 2)[np.arange(n) % 10]
    features = rng.normal(size=(n, 4)).astype(np.float32) + labels[:, None]
    features[splits == "test"] += 0.7
    cache = make_cache(tmp_path / "shift.h5", features, labels, splits)
    fitted = fit_probe(cache, "logreg", runs_dir=tmp_path / "runs", log=lambda m: None)
    from featurekit.evaluation.fitting import split_scores
    from featurekit.metrics import choose_threshold

    with open_cache(cache) as reader:
        valid_scores, valid_labels = split_scores(fitted, reader, "valid")
        test_scores, test_labels = split_scores(fitted, reader, "test")
    assert fitted.threshold == pytest.approx(choose_threshold(valid_labels, valid_scores))
    assert fitted.threshold != pytest.approx(choose_threshold(test_labels, test_scores))


def test_collapsed_probe_is_flagged(tmp_path: Path):
    # Constant features, like a dead backbone: the probe can only output one score (the study's ln 2 case).
    n = 200
    labels = np.arange(n) % 2
    splits = np.repeat(np.array(["train"] * 3 + ["valid", "test"]), 2)[np.arange(n) % 10]
    cache = make_cache(tmp_path / "dead.h5", np.ones((n, 4), np.float32), labels, splits)
    rows = compare([cache], ["logreg"], runs_dir=tmp_path / "runs", n_boot=0, log=lambda m: None)
    assert rows[0]["collapsed"]


def test_streaming_path_is_used_beyond_the_memory_budget(tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5", n=2000, d=16)
    messages: list[str] = []
    rows = compare([cache], ["head", "logreg"], probe_params={"head": FAST_HEAD}, runs_dir=tmp_path / "runs",
                   n_boot=0, memory_budget_gb=1e-5, log=messages.append)
    assert all(r["streamed"] for r in rows)
    assert any("streaming" in m for m in messages)
    assert all(r["accuracy"] > 0.85 for r in rows)


@pytest.mark.parametrize("case,message", [
    ("no-valid", "no 'valid' split"),
    ("one-class-test", "holds one class only"),
    ("nan", "NaN or infinite"),
])
def test_bad_caches_are_refused_and_nothing_is_written(tmp_path: Path, case: str, message: str):
    n = 100
    labels = np.arange(n) % 2
    splits = np.repeat(np.array(["train"] * 3 + ["valid", "test"]), 2)[np.arange(n) % 10]
    features = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    if case == "no-valid":
        splits = np.where(splits == "valid", "train", splits)
    elif case == "one-class-test":
        labels = np.where(splits == "test", 1, labels)
    else:
        features[3, 2] = np.nan
    cache = make_cache(tmp_path / f"{case}.h5", features, labels, splits)
    with pytest.raises(FeaturekitError, match=message):
        fit_probe(cache, "logreg", runs_dir=tmp_path / "runs", log=lambda m: None)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("fitted.json"))


def test_model_fitted_on_another_cache_is_refused(tmp_path: Path):
    first = separable_cache(tmp_path / "a.h5", seed=0)
    second = separable_cache(tmp_path / "b.h5", seed=1, n=200)
    fitted = fit_probe(first, "logreg", runs_dir=tmp_path / "runs", log=lambda m: None)
    with open_cache(second) as other, pytest.raises(FeaturekitError, match="another cache"):
        load_fitted(fitted.directory, other)
    third = make_cache(tmp_path / "c.h5", np.zeros((20, 8), np.float32), np.arange(20) % 2, ["train"] * 20,
                       class_names=("cat", "dog"))
    with open_cache(third) as other, pytest.raises(FeaturekitError, match="classes"):
        load_fitted(fitted.directory, other)


def test_outputs_in_every_format(tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5")
    rows = compare([cache], ["logreg"], runs_dir=tmp_path / "runs", n_boot=50, log=lambda m: None)
    data = json.loads(render_rows(rows, "json"))
    assert isinstance(data, list) and data[0]["probe"] == "logreg"
    for key in ("accuracy", "balanced_accuracy", "roc_auc", "average_precision", "eer", "tpr_at_1pct_fpr", "f1",
                "accuracy_ci_low", "roc_auc_ci_high", "threshold", "fit_seconds", "collapsed", "random_features"):
        assert key in data[0]
    csv_text = render_rows(rows, "csv")
    assert csv_text.splitlines()[0].startswith("cache,data,backbone,weights_label")
    assert "| test_tiny pool2/avg 32px | random-init | logreg |" in render_rows(rows, "md")
    from featurekit.report import plot_roc

    assert plot_roc(rows, tmp_path / "roc.png").stat().st_size > 1000


# -- saving a fit: atomic swap, concurrent fits, streamed probes ---------------------------------------


def test_a_crash_before_the_swap_keeps_the_old_fit(tmp_path: Path, monkeypatch):
    import featurekit.evaluation.fitting as fitting

    cache = separable_cache(tmp_path / "sep.h5")
    old = fit_probe(cache, "logreg", runs_dir=tmp_path / "runs", log=lambda m: None)
    seen = []

    def crash(new, final, **_):
        # The new folder is complete at this point: only the swap is missing.
        seen.append(sorted(p.name for p in Path(new).iterdir()))
        raise KeyboardInterrupt  # a crash the process does not survive as far as this fit is concerned

    monkeypatch.setattr(fitting, "replace_directory", crash)
    with pytest.raises(KeyboardInterrupt):
        fit_probe(cache, "logreg", {"C": 0.01}, runs_dir=tmp_path / "runs", log=lambda m: None)
    assert seen == [["fitted.json", "model"]]
    kept = load_fitted(old.directory)
    assert kept.meta["params"] == {} and kept.threshold == old.threshold
    assert sorted(p.name for p in old.directory.parent.iterdir()) == ["logreg"]  # no half-written folder left


def test_two_fits_into_one_folder_both_succeed(tmp_path: Path, monkeypatch):
    import threading

    import featurekit.evaluation.fitting as fitting
    from featurekit.fsutil import replace_directory

    cache = separable_cache(tmp_path / "sep.h5")
    out = tmp_path / "runs" / "shared"
    fit_probe(cache, "logreg", out=out, log=lambda m: None)  # an old fit to replace, as in a rerun
    both_ready = threading.Barrier(2, timeout=60)

    def swap_together(new, final, **marker):
        both_ready.wait()  # both fits reach the swap at the same moment
        return replace_directory(new, final, **marker)

    monkeypatch.setattr(fitting, "replace_directory", swap_together)
    errors: list[BaseException] = []

    def fit(C: float) -> None:
        try:
            fit_probe(cache, "logreg", {"C": C}, out=out, log=lambda m: None)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=fit, args=(C,)) for C in (0.5, 2.0)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    final = load_fitted(out)
    assert final.meta["params"] in ({"C": 0.5}, {"C": 2.0})  # one whole fit, the last one swapped in
    assert final.estimator.named_steps["clf"].C == final.meta["params"]["C"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["shared"]


@pytest.mark.parametrize("probe, params", [("logreg", {}), ("linsvm", {}), ("head", {"epochs": 3, "batch_size": 64})])
def test_fit_with_a_zero_memory_budget_streams_and_records_the_loss(probe, params, tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5", n=600)
    fitted = fit_probe(cache, probe, params, runs_dir=tmp_path / "runs", memory_budget_gb=0, log=lambda m: None)
    assert fitted.meta["streamed"]
    history = fitted.estimator.history_
    assert len(history["loss"]) == len(history["val_auc"]) >= 1  # one loss per epoch run
    assert 0 <= fitted.estimator.best_epoch_ < len(history["loss"])
    loaded = load_fitted(fitted.directory)
    with open_cache(cache) as reader:
        x, y = reader.load("test")
    np.testing.assert_allclose(loaded.estimator.predict_proba(x), fitted.estimator.predict_proba(x))
    assert (loaded.estimator.predict(x) == y).mean() > 0.85
