"""Probes fitted on the clean train split plus cached degraded views of it (fit/compare --train-views): more
training rows, valid and test clean, view caches extracted once and reused, a probe's training views part of its
identity, wrong view texts refused before any work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import QUIET, make_image_folder
from featurekit.cache import open_cache
from featurekit.cli import app
from featurekit.evaluation.compare import compare_from_options
from featurekit.errors import FeaturekitError
from featurekit.extraction.extract import extract
from featurekit.evaluation.fitting import fit_probe
from featurekit.evaluation.train_views import open_training_source, parse_train_views


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    data = make_image_folder(tmp_path / "faces", per_class=24, size=40)
    return extract(data, "test_tiny", pooling="avg", batch_size=16, cache_dir=tmp_path / "cache", **QUIET).cache_path


def _stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.h5")}


def test_views_are_parsed_comma_separated_with_their_seed():
    views = parse_train_views("jpeg:30-95, blur:0-2,jpeg:30-95")
    assert [v.name for v in views] == ["jpeg:30-95@0", "blur:0-2@0"]
    assert [v.name for v in parse_train_views(["jpeg:50+blur:1", "none"])] == ["jpeg:50+blur:1"]
    assert parse_train_views(None) == [] and parse_train_views("none") == []
    assert [v.name for v in parse_train_views("jpeg:30-95, ")] == ["jpeg:30-95@0"]  # an empty item is left out


def test_fit_trains_on_clean_plus_views_and_reuses_the_view_caches(clean: Path, tmp_path: Path):
    with open_cache(clean) as reader:
        n_train, n_valid = len(reader.split_indices("train")), len(reader.split_indices("valid"))
    messages: list[str] = []
    fitted = fit_probe(clean, "logreg", runs_dir=tmp_path / "runs", log=messages.append, train_views="jpeg:30-95")
    view_cache = clean.with_name(f"{clean.stem}-view-jpeg30to95-s0-only-train.h5")
    assert view_cache.is_file() and any("extracting view jpeg:30-95@0" in m for m in messages)
    with open_cache(view_cache) as view:
        assert view.attrs["view"] == "jpeg:30-95@0" and view.attrs["subset"] == "train" and view.n_rows == n_train
    meta = json.loads((fitted.directory / "fitted.json").read_text())
    assert meta["n_train"] == 2 * n_train and meta["n_valid"] == n_valid
    assert meta["train_views"] == ["jpeg:30-95@0"] and meta["train_view_caches"][0]["caches"] == [str(view_cache)]
    assert fitted.directory.parent.name.startswith(f"{clean.stem}-tv-")  # not the folder of the clean probe

    # Nothing is extracted again on the next run; a second view adds its own cache and rows.
    stamps, messages = _stamps(clean.parent), []
    again = fit_probe(clean, "logreg", runs_dir=tmp_path / "runs", log=messages.append, train_views="jpeg:30-95")
    assert _stamps(clean.parent) == stamps and not any("extracting" in m for m in messages)
    assert again.directory == fitted.directory
    both = fit_probe(clean, "logreg", runs_dir=tmp_path / "runs", train_views="jpeg:30-95,blur:0-2", log=print)
    assert both.meta["n_train"] == 3 * n_train and both.meta["n_valid"] == n_valid
    assert both.directory != fitted.directory
    assert {p.name for p in clean.parent.glob("*.h5")} == {clean.name, view_cache.name,
                                                          f"{clean.stem}-view-blur0to2-s0-only-train.h5"}


def test_the_views_add_train_rows_only_loaded_or_streamed(clean: Path):
    view_cache = clean.with_name(f"{clean.stem}-view-blur0to2-s0-only-train.h5")
    with open_training_source(clean, "blur:0-2", log=lambda m: None) as source, open_cache(clean) as reader, \
            open_cache(view_cache) as view:
        x_train, y_train = source.load("train")
        clean_x, clean_y = reader.load("train")
        view_x, view_y = view.load("train")
        np.testing.assert_array_equal(x_train, np.concatenate([clean_x, view_x]))
        np.testing.assert_array_equal(y_train, np.concatenate([clean_y, view_y]))
        assert not np.allclose(view_x, clean_x)  # degraded copies, not the clean features again
        for split in ("valid", "test"):
            np.testing.assert_array_equal(source.load(split)[0], reader.load(split)[0])
        streamed = np.concatenate([x for x, _ in source.iter_batches("train", 7, shuffle=True, seed=3)])
        assert sorted(map(tuple, streamed)) == sorted(map(tuple, x_train))
        assert source.fingerprint == reader.fingerprint and source.train_views == ("blur:0-2@0",)


def test_compare_reuses_a_probe_only_with_the_same_training_views(clean: Path, tmp_path: Path):
    def compare(**options):
        return compare_from_options({"cache": [clean], "probe": ["logreg"], "boot": 0, "audit": False,
                                     "runs_dir": tmp_path / "runs", **options}, log=lambda m: None)

    plain = compare()[0]
    jpeg = compare(train_views="jpeg:30-95", view=["blur:1"])
    assert not jpeg[0]["reused"] and jpeg[0]["model_dir"] != plain["model_dir"]
    assert [(r["view"], r["model_dir"]) for r in jpeg] == [("", jpeg[0]["model_dir"]), ("blur:1", jpeg[0]["model_dir"])]
    assert jpeg[0]["n_test"] == plain["n_test"]  # the test split stays clean
    stamps = _stamps(clean.parent)
    again = compare(train_views="jpeg:30-95", view=["blur:1"])
    assert again[0]["reused"] and _stamps(clean.parent) == stamps
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in jpeg]
    blur = compare(train_views="blur:0-2")[0]
    assert not blur["reused"] and blur["model_dir"] not in (plain["model_dir"], jpeg[0]["model_dir"])
    assert compare()[0]["reused"]  # the clean probe is still the clean one


def test_a_probe_recorded_with_other_training_views_is_refitted(clean: Path, tmp_path: Path):
    options = {"cache": [clean], "probe": ["logreg"], "boot": 0, "audit": False, "runs_dir": tmp_path / "runs",
               "train_views": "jpeg:30-95"}
    first = compare_from_options(options, log=lambda m: None)[0]
    record = Path(first["model_dir"]) / "fitted.json"
    meta = json.loads(record.read_text())
    record.write_text(json.dumps(meta | {"train_views": [], "train_view_caches": []}))  # as a clean fit records
    assert not compare_from_options(options, log=lambda m: None)[0]["reused"]
    assert compare_from_options(options, log=lambda m: None)[0]["reused"]


@pytest.mark.parametrize("text", ["jpeg:300", "blur:2-1", "sharpen:1", "jpeg:50,blur"])
def test_a_wrong_view_text_is_refused_before_any_work(clean: Path, tmp_path: Path, text: str):
    before = _stamps(clean.parent)
    with pytest.raises(FeaturekitError) as error:
        fit_probe(clean, "logreg", runs_dir=tmp_path / "runs", train_views=text, log=lambda m: None)
    assert "train_views" in error.value.received
    with pytest.raises(FeaturekitError):
        compare_from_options({"cache": [clean], "probe": ["logreg"], "boot": 0, "runs_dir": tmp_path / "runs",
                              "train_views": text}, log=lambda m: None)
    assert _stamps(clean.parent) == before and not (tmp_path / "runs").exists()


def test_the_command_line_takes_comma_separated_views_and_refuses_a_wrong_one(clean: Path, tmp_path: Path):
    runner = CliRunner()
    wrong = runner.invoke(app, ["fit", "--cache", str(clean), "--train-views", "jpeg:30-95,blur:-1",
                                "--runs-dir", str(tmp_path / "runs")])
    assert wrong.exit_code == 2 and "--train-views" in wrong.output and not (tmp_path / "runs").exists()
    right = runner.invoke(app, ["fit", "--cache", str(clean), "--train-views", "jpeg:30-95,blur:0-2",
                                "--runs-dir", str(tmp_path / "runs")])
    assert right.exit_code == 0, right.output
    meta = json.loads(next((tmp_path / "runs").glob("*-tv-*/logreg/fitted.json")).read_text())
    assert meta["train_views"] == ["jpeg:30-95@0", "blur:0-2@0"]


def test_a_fusion_trains_on_its_members_views_fused_in_its_column_order(clean: Path, tmp_path: Path):
    other = extract(clean.parent.parent / "faces", "test_tiny", pooling="max", batch_size=16,
                    cache_dir=clean.parent, **QUIET).cache_path
    fitted = fit_probe([other, clean], "logreg", runs_dir=tmp_path / "runs", train_views="blur:0-2",
                       log=lambda m: None)
    with open_training_source([clean, other], "blur:0-2", log=lambda m: None) as source:
        n_train = len(source.clean.split_indices("train"))
        x_train = source.load("train")[0]
        members = source.clean.member_paths  # the fusion's column order
        views = [open_cache(m.with_name(f"{m.stem}-view-blur0to2-s0-only-train.h5")) for m in members]
        expected = np.concatenate([view.load("train")[0] for view in views], axis=1)
        for view in views:
            view.close()
        np.testing.assert_array_equal(x_train[n_train:], expected)
        np.testing.assert_array_equal(source.load("valid")[0], source.clean.load("valid")[0])
        assert fitted.directory.parent.name == source.run_name and source.run_name.startswith("fuse-")
    assert fitted.meta["n_train"] == 2 * n_train and len(fitted.meta["members"]) == 2


def test_view_columns_follow_the_clean_members_order():
    from types import SimpleNamespace

    from featurekit.evaluation.train_views import _columns_in_member_order

    a, b = Path("a.h5"), Path("b.h5")
    view = SimpleNamespace(members=[SimpleNamespace(path=b, feature_dim=2), SimpleNamespace(path=a, feature_dim=3)])
    assert _columns_in_member_order(view, [a, b]).tolist() == [2, 3, 4, 0, 1]
    assert _columns_in_member_order(view, [b, a]) is None


def test_the_sweep_fits_every_candidate_on_views_and_says_so(clean: Path, tmp_path: Path):
    from featurekit.jobs.sweep import select_on_valid

    other = extract(clean.parent.parent / "faces", "test_tiny", pooling="max", batch_size=16,
                    cache_dir=clean.parent, **QUIET).cache_path
    result = select_on_valid([clean, other], ["logreg"], top_k=2, runs_dir=tmp_path / "runs", n_boot=0, audit=False,
                             train_views="blur:0-2", log=lambda m: None)
    assert all("-tv-" in row["model_dir"] for row in result.rows)
    assert result.fusion is not None and "fuse-" in result.fusion["model_dir"] and "-tv-" in result.fusion["model_dir"]
    assert any("blur:0-2@0" in note for note in result.notes)
    assert clean.with_name(f"{clean.stem}-view-blur0to2-s0-only-train.h5").is_file()
    assert other.with_name(f"{other.stem}-view-blur0to2-s0-only-train.h5").is_file()


def test_a_probe_fitted_on_views_predicts_like_any_fitted_probe(clean: Path, tmp_path: Path):
    from featurekit.evaluation.fitting import load_fitted, split_scores
    from featurekit.predict import predict

    fitted = fit_probe(clean, "logreg", runs_dir=tmp_path / "runs", train_views="jpeg:30-95", log=lambda m: None)
    with open_cache(clean) as reader:
        scores, _ = split_scores(load_fitted(fitted.directory, reader), reader, "test")
        images = [Path(reader.attrs["data_root"]) / reader.paths[i] for i in reader.split_indices("test")]
    predicted = predict(fitted.directory, images)
    np.testing.assert_allclose([row["p_fake"] for row in predicted], scores, rtol=1e-4, atol=1e-5)
