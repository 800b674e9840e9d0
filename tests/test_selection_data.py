"""compare never mixes data sets silently: rows of caches of two data folders carry a data column (table, md,
json, csv), and `compare --data DIR` keeps that folder's caches."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import QUIET, make_cache
from featurekit.evaluation.compare import compare_from_options
from featurekit.errors import FeaturekitError


def _cache(path: Path, data_root: Path, fingerprint: str, seed: int, layer: str = "pool2") -> Path:
    rng = np.random.default_rng(seed)
    n = 200
    labels = np.arange(n) % 2
    splits = np.repeat(np.array(["train"] * 3 + ["valid", "test"]), 2)[np.arange(n) % 10]
    features = (rng.normal(size=(n, 4)) + labels[:, None]).astype(np.float32)
    return make_cache(path, features, labels, splits, data_root=str(data_root), data_fingerprint=fingerprint,
                      layer=layer)


@pytest.fixture
def two_data_sets(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Two caches of the same backbone, layer and pooling, made from two data folders."""
    cache_dir = tmp_path / "cache"
    mine, theirs = tmp_path / "mydata", tmp_path / "faces"
    mine.mkdir(), theirs.mkdir()
    _cache(cache_dir / "a.h5", mine, "1a2b3c4d" + "0" * 56, seed=0)
    _cache(cache_dir / "b.h5", theirs, "9f8e7d6c" + "0" * 56, seed=1)
    return cache_dir, mine, theirs


def _options(cache_dir: Path, tmp_path: Path, **extra) -> dict:
    return {"cache_dir": cache_dir, "probe": ["logreg"], "boot": 0, "runs_dir": tmp_path / "runs", "audit": False,
            **extra}


def test_rows_of_two_data_sets_say_which_is_which(two_data_sets, tmp_path: Path):
    from rich.console import Console

    from featurekit.report import render_rows, results_table

    cache_dir, _, _ = two_data_sets
    rows = compare_from_options(_options(cache_dir, tmp_path), **QUIET)
    assert sorted(row["data"] for row in rows) == ["faces 9f8e7d6c", "mydata 1a2b3c4d"]
    assert {row["cache"]: row["data"] for row in rows} == {"a.h5": "mydata 1a2b3c4d", "b.h5": "faces 9f8e7d6c"}
    assert [row["data"] for row in json.loads(render_rows(rows, "json"))] == [row["data"] for row in rows]
    assert render_rows(rows, "csv").splitlines()[1].split(",")[1] == rows[0]["data"]
    markdown = render_rows(rows, "md")
    assert markdown.splitlines()[0].startswith("| data |") and "mydata 1a2b3c4d" in markdown
    console = Console(width=400, record=True, file=open(os.devnull, "w"))
    console.print(results_table(rows))
    table = console.export_text()
    assert "mydata 1a2b3c4d" in table and "faces 9f8e7d6c" in table


def test_one_data_set_has_no_data_column_in_the_table(two_data_sets, tmp_path: Path):
    from featurekit.report import render_rows

    cache_dir, mine, _ = two_data_sets
    rows = compare_from_options(_options(cache_dir, tmp_path, data=mine), **QUIET)
    assert [row["cache"] for row in rows] == ["a.h5"] and rows[0]["data"] == "mydata 1a2b3c4d"
    assert not render_rows(rows, "md").startswith("| data |")


def test_compare_data_keeps_that_folders_caches_from_the_command_line(two_data_sets, tmp_path: Path):
    from featurekit.cli import app

    cache_dir, _, theirs = two_data_sets
    common = ["compare", "--cache-dir", str(cache_dir), "--probe", "logreg", "--boot", "0", "--runs-dir",
              str(tmp_path / "runs"), "--format", "json"]
    result = CliRunner().invoke(app, [*common, "--data", str(theirs)])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout[result.stdout.index("["):])
    assert [(row["cache"], row["data"]) for row in rows] == [("b.h5", "faces 9f8e7d6c")]
    missing = CliRunner().invoke(app, [*common, "--data", str(tmp_path / "elsewhere")])
    assert missing.exit_code != 0 and "No cache was made from the data folder" in missing.output
    assert str(theirs) in missing.output  # names the folders the caches were made from


def test_a_fusion_row_names_its_members_data_set(two_data_sets, tmp_path: Path):
    from featurekit.evaluation.compare import compare

    cache_dir, mine, _ = two_data_sets
    twin = _cache(cache_dir.parent / "twin.h5", mine, "1a2b3c4d" + "0" * 56, seed=2, layer="pool1")
    rows = compare([[cache_dir / "a.h5", twin]], ["logreg"], runs_dir=tmp_path / "runs", n_boot=0, audit=False,
                   **QUIET)
    assert rows[0]["data"] == "mydata 1a2b3c4d"


def test_no_cache_of_the_folder_is_refused(two_data_sets, tmp_path: Path):
    cache_dir, _, _ = two_data_sets
    with pytest.raises(FeaturekitError, match="No cache was made"):
        compare_from_options(_options(cache_dir, tmp_path, data=tmp_path / "nowhere"), **QUIET)
