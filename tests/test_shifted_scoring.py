"""Probes fitted on clean features, scored on views of the test split and on other test sets (compare --view,
--test-data): rows, thresholds, caches found or extracted, identity mismatches refused."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import QUIET, make_image_folder
from featurekit.cache import open_cache
from featurekit.evaluation.compare import compare_from_options
from featurekit.errors import FeaturekitError
from featurekit.extraction.extract import extract
from featurekit.evaluation.fitting import load_fitted, split_scores
from featurekit.metrics import evaluate


def split_folder(root: Path, per_split_class: int = 5, size: int = 40) -> Path:
    """DIR/{train,test}/{real,fake}/: a test set laid out in splits (all of it must become test images)."""
    for split in ("train", "test"):
        make_image_folder(root / split, per_class=per_split_class, size=size)
    return root


@pytest.fixture
def setup(tmp_path: Path):
    data = make_image_folder(tmp_path / "faces", per_class=24, size=40)
    other = split_folder(tmp_path / "other", size=48)
    cache_dir = tmp_path / "cache"
    clean = extract(data, "test_tiny", pooling="avg", batch_size=16, cache_dir=cache_dir, **QUIET).cache_path
    return data, other, cache_dir, clean


def _compare(clean: Path, cache_dir: Path, runs: Path, **options):
    return compare_from_options({"cache": [clean], "probe": ["logreg"], "boot": 0, "runs_dir": runs,
                                 "cache_dir": cache_dir, **options}, log=lambda m: None)


def test_probes_are_scored_on_each_view_and_each_test_set(setup, tmp_path: Path):
    data, other, cache_dir, clean = setup
    rows = _compare(clean, cache_dir, tmp_path / "runs", view=["jpeg:50", "blur:1"], test_data=[other])
    assert [(r["test_set"], r["view"]) for r in rows] == [("test", ""), ("test", "jpeg:50"), ("test", "blur:1"),
                                                          (str(other), "")]
    own = rows[0]
    assert {r["threshold"] for r in rows} == {own["threshold"]}  # chosen once, on the training cache's valid split
    assert all(r["cache"] == clean.name and r["model_dir"] == own["model_dir"] for r in rows)
    fitted = load_fitted(own["model_dir"])
    for row in rows[1:]:
        with open_cache(cache_dir / row["scored_cache"]) as scored:
            scores, labels = split_scores(fitted, scored, "test")
            expected = evaluate(labels, scores, fitted.threshold, n_boot=0)
            attrs = dict(scored.attrs)
            n_rows, splits = scored.n_rows, set(scored.splits)
        for key in ("accuracy", "accuracy_real", "accuracy_fake", "roc_auc", "eer"):
            assert row[key] == pytest.approx(expected[key]), key
        assert row["n_test"] == expected["n"] and splits == {"test"}
        if row["view"]:
            assert attrs["view"] == row["view"] and attrs["subset"] == "test" and n_rows == own["n_test"]
            assert row["scored_cache"] == clean.stem + f"-view-{row['view'].replace(':', '')}-only-test.h5"
        else:
            assert attrs["subset"] == "all-as-test" and n_rows == 20  # train/ and test/ of the other folder
            assert attrs["weights_label"] == own["weights_label"] and attrs["layer"] == own["layer"]
    # The degraded images give other scores than the clean ones (the rows are not copies).
    assert not np.allclose(rows[1]["_scores"], own["_scores"])
    # Nothing is extracted or refitted again.
    stamps = {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("*.h5")}
    again = _compare(clean, cache_dir, tmp_path / "runs", view=["jpeg:50", "blur:1"], test_data=[other])
    assert {p.name: p.stat().st_mtime_ns for p in cache_dir.glob("*.h5")} == stamps
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows] and again[0]["reused"]


def test_a_view_cache_is_found_by_its_identity_under_any_name(setup, tmp_path: Path):
    data, _, cache_dir, clean = setup
    extract(data, "test_tiny", pooling="avg", batch_size=16, cache=cache_dir / "my-own-name.h5", view="blur:1",
            **QUIET)
    # A cache of another view, or of another pooling, must not be taken for it.
    extract(data, "test_tiny", pooling="max", batch_size=16, cache=cache_dir / "wrong-pooling.h5", view="blur:1",
            **QUIET)
    before = sorted(p.name for p in cache_dir.glob("*.h5"))
    rows = _compare(clean, cache_dir, tmp_path / "runs", view=["blur:1"])
    assert rows[1]["scored_cache"] == "my-own-name.h5"
    assert sorted(p.name for p in cache_dir.glob("*.h5")) == before


def test_a_missing_view_without_its_data_gives_the_exact_extract_command(setup, tmp_path: Path):
    data, _, cache_dir, clean = setup
    moved = data.with_name("faces-moved")
    data.rename(moved)
    with pytest.raises(FeaturekitError) as info:
        _compare(clean, cache_dir, tmp_path / "runs", view=["jpeg:40"])
    message = str(info.value)
    assert "No cache of view 'jpeg:40'" in message and "is not here to extract one" in message
    command = message.split("Extract it where the images are: `", 1)[1].rsplit("`", 1)[0]
    moved.rename(data)
    from featurekit.cli import app

    arguments = shlex.split(command)
    assert arguments[:3] == ["python", "cli.py", "extract"]
    result = CliRunner().invoke(app, arguments[2:] + ["--no-progress"])
    assert result.exit_code == 0, result.output
    before = sorted(p.name for p in cache_dir.glob("*.h5"))
    rows = _compare(clean, cache_dir, tmp_path / "runs", view=["jpeg:40"])
    assert rows[1]["view"] == "jpeg:40" and sorted(p.name for p in cache_dir.glob("*.h5")) == before


def test_weights_changed_since_the_training_cache_are_refused_naming_the_difference(tmp_path: Path):
    from featurekit.backbones import create_backbone

    data = make_image_folder(tmp_path / "faces", per_class=24, size=40)
    other = make_image_folder(tmp_path / "other", per_class=6, size=40)
    weights = tmp_path / "tiny.weights.h5"
    create_backbone("test_tiny", weights="none", seed=0).save_weights(weights)
    clean = extract(data, "test_tiny", weights=str(weights), pooling="avg", cache_dir=tmp_path / "cache",
                    **QUIET).cache_path
    _compare(clean, tmp_path / "cache", tmp_path / "runs")
    weights.unlink()
    create_backbone("test_tiny", weights="none", seed=1).save_weights(weights)  # same name, other weights
    for options in ({"test_data": [other]}, {"view": ["jpeg:50"]}):
        with pytest.raises(FeaturekitError) as info:
            _compare(clean, tmp_path / "cache", tmp_path / "runs", **options)
        message = str(info.value)
        assert "does not give the features its probes were fitted on" in message
        assert "weights_sha256 is" in message and "in the training cache but" in message
    assert sorted(p.name for p in (tmp_path / "cache").glob("*") if p.suffix != ".lock") == [clean.name]


def test_images_changed_since_the_training_cache_refuse_a_view(setup, tmp_path: Path):
    data, _, cache_dir, clean = setup
    with open_cache(clean) as cache:
        victim = data / cache.paths[int(cache.split_indices("test")[0])]
    Image.new("RGB", (40, 40), (1, 2, 3)).save(victim)
    with pytest.raises(FeaturekitError) as info:
        _compare(clean, cache_dir, tmp_path / "runs", view=["jpeg:50"])
    assert "the images (or their split) differ from those the training cache was made from" in str(info.value)


def test_a_test_set_whose_images_changed_is_extracted_again(setup, tmp_path: Path):
    _, other, cache_dir, clean = setup
    first = _compare(clean, cache_dir, tmp_path / "runs", test_data=[other])[1]
    shutil.rmtree(other / "train")
    second = _compare(clean, cache_dir, tmp_path / "runs", test_data=[other])[1]
    assert (first["n_test"], second["n_test"]) == (20, 10) and first["scored_cache"] == second["scored_cache"]


def test_view_and_test_set_caches_are_not_fitted_on(setup, tmp_path: Path):
    _, other, cache_dir, clean = setup
    _compare(clean, cache_dir, tmp_path / "runs", view=["jpeg:50"], test_data=[other])
    messages = []
    rows = compare_from_options({"probe": ["logreg"], "boot": 0, "runs_dir": tmp_path / "runs",
                                 "cache_dir": cache_dir}, log=messages.append)
    assert [r["cache"] for r in rows] == [clean.name]
    assert any("not fitting on 2 view or test-set cache(s)" in m for m in messages)
    only_view = cache_dir / f"{clean.stem}-view-jpeg50-only-test.h5"
    with pytest.raises(FeaturekitError) as info:
        compare_from_options({"cache": [only_view], "probe": ["logreg"], "boot": 0, "runs_dir": tmp_path / "runs"},
                             log=lambda m: None)
    assert "No training cache to compare" in str(info.value)


def test_cli_shows_where_each_row_was_scored(setup, tmp_path: Path, monkeypatch):
    from rich.console import Console

    from featurekit.cli import app

    monkeypatch.setattr("featurekit.cli.console", Console(width=400))
    _, other, cache_dir, clean = setup
    common = ["compare", "--cache", str(clean), "--probe", "logreg", "--boot", "0", "--runs-dir", str(tmp_path / "r"),
              "--view", "jpeg:50", "--test-data", str(other)]
    result = CliRunner().invoke(app, common + ["--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout[result.stdout.index("["):])
    assert [(r["test_set"], r["view"]) for r in rows] == [("test", ""), ("test", "jpeg:50"), (str(other), "")]
    assert all("accuracy_real" in r and "accuracy_fake" in r for r in rows)
    table = CliRunner().invoke(app, common + ["--wide"])
    assert table.exit_code == 0, table.output
    for text in ("scored on", "test split, jpeg:50", "other (all images)", "acc real", "acc fake"):
        assert text in table.output
    refused = CliRunner().invoke(app, common[:-4] + ["--view", "jpeg:500"])
    assert refused.exit_code == 2 and "Received: --view jpeg:500." in refused.output.replace("\n", " ")


def test_run_configs_carry_views_and_test_sets(setup, tmp_path: Path):
    from featurekit.config import load_config_file
    from featurekit.jobs.workflow import run_job

    data, other, cache_dir, clean = setup
    config = tmp_path / "job.toml"
    config.write_text(
        f'data = "{data}"\ncache_dir = "{cache_dir}"\n'
        '[[run.extract]]\nbackbone = "test_tiny"\npooling = "avg"\nbatch_size = 16\n'
        '[[run.extract]]\nbackbone = "test_tiny"\npooling = "avg"\nbatch_size = 16\nview = ["blur:2"]\n'
        'views_split = "test"\n'
        f'[compare]\nprobe = ["logreg"]\nboot = 0\nruns_dir = "{tmp_path / "runs"}"\nview = ["blur:2", "jpeg:50"]\n'
        f'test_data = ["{other}"]\n')
    rows = run_job(load_config_file(config), {"progress": False}, log=lambda m: None)
    assert [(r["test_set"], r["view"]) for r in rows] == [("test", ""), ("test", "blur:2"), ("test", "jpeg:50"),
                                                          (str(other), "")]
    assert rows[1]["scored_cache"] == f"{clean.stem}-view-blur2-only-test.h5"  # the run's own view cache


def test_a_view_cache_of_every_split_named_as_a_training_cache_says_its_view(setup, tmp_path: Path):
    data, _, cache_dir, _ = setup
    degraded = extract(data, "test_tiny", pooling="avg", batch_size=16, cache_dir=cache_dir, view="jpeg:50",
                       **QUIET).cache_path
    rows = compare_from_options({"cache": [degraded], "probe": ["logreg"], "boot": 0, "runs_dir": tmp_path / "runs",
                                 "view": ["blur:1"]}, log=lambda m: None)
    # Fitted and scored on JPEG 50 images; views of views are not scored.
    assert [(r["test_set"], r["view"]) for r in rows] == [("test", "jpeg:50")]
