"""`predict` cannot be silently wrong: every fitted.json field it uses is checked; no input stops the run."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import make_image_folder
from featurekit.errors import FeaturekitError
from featurekit.extraction.extract import extract
from featurekit.evaluation.fitting import fit_probe
from featurekit.predict import predict


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust-predict")
    data = make_image_folder(root / "faces", per_class=24)
    result = extract(data, "test_tiny", pooling="avg", cache=root / "c.h5", progress=False, log=lambda m: None)
    return data, fit_probe(result.cache_path, "logreg", runs_dir=root / "runs", log=lambda m: None)


def _edited(fitted, tmp_path: Path, cache_gone: bool = False, **changes) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(fitted.directory, copy)
    meta = json.loads((copy / "fitted.json").read_text())
    meta.update(changes)
    if cache_gone:
        meta["cache"] = str(tmp_path / "gone.h5")
    (copy / "fitted.json").write_text(json.dumps(meta))
    return copy


@pytest.mark.parametrize("cache_gone", [False, True])
def test_swapped_class_names_are_refused(fitted, tmp_path: Path, cache_gone):
    data, model = fitted
    edited = _edited(model, tmp_path, cache_gone, class_names=list(reversed(model.meta["class_names"])))
    with pytest.raises(FeaturekitError, match="class_names"):
        predict(edited, [data / "real" / "img_00.png"])


@pytest.mark.parametrize("changes", [{"threshold": float("nan")}, {"threshold": 5}, {"threshold": -0.5},
                                     {"threshold": "0.5"}, {"class_names": ["real"]}, {"class_names": ["fake", "fake"]}])
def test_a_threshold_or_class_names_that_would_mislabel_are_refused_naming_the_field(fitted, tmp_path: Path, changes):
    data, model = fitted
    edited = _edited(model, tmp_path, **changes)
    with pytest.raises(FeaturekitError, match=next(iter(changes))):
        predict(edited, [data / "real" / "img_00.png"])


def test_the_cli_refuses_a_nan_threshold_with_exit_code_2(fitted, tmp_path: Path):
    from typer.testing import CliRunner

    from featurekit.cli import app

    data, model = fitted
    edited = _edited(model, tmp_path, threshold=float("nan"))
    result = CliRunner().invoke(app, ["predict", "--model", str(edited), str(data / "real" / "img_00.png")])
    assert result.exit_code == 2 and "threshold" in result.output


def test_unreadable_named_inputs_get_error_rows_and_the_run_goes_on(fitted, tmp_path: Path, monkeypatch):
    import featurekit.predict as predict_module

    data, model = fitted
    good = data / "fake" / "img_01.png"
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    dangling = tmp_path / "gone.png"
    dangling.symlink_to(tmp_path / "nowhere.png")
    locked = tmp_path / "locked.png"
    shutil.copy(good, locked)
    real_stat = os.stat

    def stat(path, *args, **kwargs):  # as root, permissions are not enforced: simulate the refusal
        if Path(path).name == "locked.png":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(predict_module.os, "stat", stat)
    rows = predict(model.directory, [fifo, good, dangling, locked])
    assert [row["path"] for row in rows] == [str(fifo), str(good), str(dangling), str(locked)]
    assert rows[1]["p_fake"] is not None and rows[1]["label"] in ("real", "fake") and "error" not in rows[1]
    errors = [rows[i]["error"] for i in (0, 2, 3)]
    assert errors == ["not a regular file (a FIFO): not read", "a dangling symbolic link (its target does not exist)",
                      "cannot read the file: permission denied"]
    assert all(rows[i]["p_fake"] is None and rows[i]["label"] is None for i in (0, 2, 3))


def test_a_folder_gives_a_row_to_fifos_and_dangling_links(fitted, tmp_path: Path):
    data, model = fitted
    folder = tmp_path / "inputs"
    folder.mkdir()
    shutil.copy(data / "real" / "img_00.png", folder / "a.png")
    os.mkfifo(folder / "b.png")
    (folder / "c.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (folder / "notes.txt").write_text("not an image: not listed")
    rows = predict(model.directory, [folder])
    assert [Path(row["path"]).name for row in rows] == ["a.png", "b.png", "c.jpg"]
    assert rows[0]["p_fake"] is not None
    assert [row.get("error", "") for row in rows[1:]] == ["not a regular file (a FIFO): not read",
                                                          "a dangling symbolic link (its target does not exist)"]


def test_an_unreadable_subfolder_gets_a_row(fitted, tmp_path: Path, monkeypatch):
    data, model = fitted
    folder = tmp_path / "inputs"
    (folder / "locked").mkdir(parents=True)
    shutil.copy(data / "real" / "img_00.png", folder / "a.png")
    shutil.copy(data / "real" / "img_01.png", folder / "locked" / "b.png")
    real_scandir = os.scandir

    def scandir(path="."):  # as root, permissions are not enforced: simulate the refusal
        if Path(path).name == "locked":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    rows = predict(model.directory, [folder])
    assert [Path(row["path"]).name for row in rows] == ["a.png", "locked"]
    assert rows[0]["p_fake"] is not None
    assert rows[1]["error"] == "a folder that cannot be read: Permission denied"
