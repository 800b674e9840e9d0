"""Clear errors, exit code 2 and nothing lost: huge features, a full disk, outputs that cannot be written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import make_cache, quiet, separable_cache
from featurekit.cli import app
from featurekit.errors import FeaturekitError
from featurekit.evaluation.fitting import fit_probe, load_fitted


def huge_cache(path: Path, n: int = 60, d: int = 256) -> Path:
    """Finite features of 3e38 (float32's top): their float32 sums and squares overflow."""
    labels = np.arange(n) % 2
    splits = np.repeat(np.array(["train"] * 3 + ["valid", "test"]), 2)[np.arange(n) % 10]
    return make_cache(path, np.full((n, d), 3e38, np.float32), labels, splits)


@pytest.mark.parametrize("memory_budget_gb", [4.0, 1e-9])  # in memory, and streamed from disk
def test_huge_finite_features_are_refused_before_fitting(tmp_path: Path, memory_budget_gb):
    cache = huge_cache(tmp_path / "huge.h5")
    with pytest.raises(FeaturekitError, match="L2 norm up to 4.8e\\+39"):
        fit_probe(cache, "logreg", out=tmp_path / "fit", memory_budget_gb=memory_budget_gb, log=quiet)
    assert not (tmp_path / "fit").exists()


@pytest.mark.parametrize("command", [["compare", "--probe", "logreg"], ["fit-head"], ["fit", "--probe", "knn"]])
def test_huge_finite_features_exit_2_on_the_command_line(tmp_path: Path, command):
    cache = huge_cache(tmp_path / "huge.h5")
    result = CliRunner().invoke(app, [*command, "--cache", str(cache), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2, result.output
    assert "L2 norm" in result.output and "Traceback" not in result.output


def _full_disk(monkeypatch) -> None:
    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)


@pytest.mark.parametrize("probe, params", [("logreg", {}), ("head", {"epochs": 2})])
def test_a_full_disk_while_saving_a_fit_is_clear_and_keeps_the_old_fit(tmp_path: Path, monkeypatch, probe, params):
    cache = separable_cache(tmp_path / "sep.h5")
    out = tmp_path / "runs" / "fit"
    old = fit_probe(cache, probe, params, out=out, log=quiet)
    _full_disk(monkeypatch)
    with pytest.raises(FeaturekitError, match="the disk is full") as caught:
        fit_probe(cache, probe, params, out=out, log=quiet)
    assert "previous fit" in str(caught.value)
    monkeypatch.undo()
    assert load_fitted(out).meta["created_utc"] == old.meta["created_utc"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["fit"]


def test_a_full_disk_while_writing_the_plot_is_exit_2(tmp_path: Path, monkeypatch):
    import featurekit.fsutil as fsutil

    cache = separable_cache(tmp_path / "sep.h5")
    real_open = fsutil.open_new_file

    def no_space_for_png(path, *args, **kwargs):
        if ".png." in Path(path).name:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(fsutil, "open_new_file", no_space_for_png)
    plot = tmp_path / "roc.png"
    result = CliRunner().invoke(app, ["compare", "--cache", str(cache), "--probe", "logreg", "--runs-dir",
                                      str(tmp_path / "runs"), "--plot", str(plot)])
    assert result.exit_code == 2, result.output
    assert "the disk is full" in result.output and not plot.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("where", ["folder", "under_a_file", "unwritable"])
@pytest.mark.parametrize("command", ["info", "compare"])
def test_an_output_file_that_cannot_be_written_is_refused_before_work(tmp_path: Path, monkeypatch, where, command):
    cache = separable_cache(tmp_path / "sep.h5")
    (tmp_path / "a_file").write_text("mine")
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "keep.txt").write_text("mine")
    (tmp_path / "locked").mkdir()
    out = {"folder": tmp_path / "existing", "under_a_file": tmp_path / "a_file" / "out.md",
           "unwritable": tmp_path / "locked" / "sub" / "out.md"}[where]
    real_access = os.access
    # As root, permissions are not enforced: the folder reads as unwritable, as it would for a user.
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p).name != "locked" and real_access(p, mode, **kw))
    arguments = ["info", str(cache)] if command == "info" else ["compare", "--cache", str(cache), "--probe", "logreg",
                                                                "--runs-dir", str(tmp_path / "runs")]
    result = CliRunner().invoke(app, [*arguments, "--format", "md", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and str(out.name) in result.output
    assert not (tmp_path / "runs").exists()  # refused before any work
    assert (tmp_path / "a_file").read_text() == "mine" and (tmp_path / "existing" / "keep.txt").read_text() == "mine"
