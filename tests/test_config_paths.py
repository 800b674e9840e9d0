"""Config files: paths relative to the file, the shipped configs resolve, config paths that are no file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from featurekit.config import PATH_KEYS, load_config_file, resolve_config
from featurekit.errors import FeaturekitError

REPO = Path(__file__).resolve().parents[1]


def test_relative_paths_are_relative_to_the_config_file_at_every_depth(tmp_path: Path, monkeypatch):
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    config = folder / "job.toml"
    config.write_text('data = "../faces"\ncache_dir = "cache"\n[compare]\ncache = ["../c/a.h5", "/abs/b.h5"]\n'
                      '[[compare.fuse]]\ncaches = ["x.h5", "y.h5"]\n'
                      '[[run.extract]]\nbackbone = "vgg16"\nweights = ["imagenet", "w/v.weights.h5"]\n'
                      '[[run.extract]]\nbackbone = "vgg16"\nweights = "none"\n')
    monkeypatch.chdir(tmp_path)  # the command runs elsewhere: the file's folder decides
    loaded = load_config_file(Path("project/configs/job.toml"))
    assert loaded["data"] == os.path.join("project", "faces")
    assert loaded["cache_dir"] == os.path.join("project", "configs", "cache")
    assert loaded["compare"]["cache"] == [os.path.join("project", "c", "a.h5"), "/abs/b.h5"]
    assert loaded["compare"]["fuse"] == [{"caches": [os.path.join("project", "configs", "x.h5"),
                                                     os.path.join("project", "configs", "y.h5")]}]
    steps = loaded["run"]["extract"]
    assert steps[0]["weights"] == ["imagenet", os.path.join("project", "configs", "w", "v.weights.h5")]
    assert steps[1]["weights"] == "none" and steps[0]["backbone"] == "vgg16"
    options = resolve_config("extract", loaded, {"data": "flag/wins"})
    assert options["data"] == "flag/wins" and options["cache_dir"] == os.path.join("project", "configs", "cache")


def test_a_key_that_is_a_path_for_one_command_is_a_path_for_every_command():
    """Paths are resolved by key: a key must not name a path under one command and a string under another."""
    from featurekit.options import BOOL, FUSION, OPTIONS, PATH, PATHS, WEIGHTS

    for option in OPTIONS:
        is_path = option.kind in (PATH, PATHS, WEIGHTS, FUSION)
        assert (option.name in PATH_KEYS) == is_path or option.kind is BOOL, option.name  # `fuse = true` stays


def test_an_error_about_a_config_path_shows_the_resolved_path(tmp_path: Path):
    from featurekit.cli import app

    folder = tmp_path / "configs"
    folder.mkdir()
    config = folder / "job.toml"
    config.write_text('data = "../no_such_folder"\n[extract]\nbackbone = "test_tiny"\n')
    result = CliRunner().invoke(app, ["extract", "--config", str(config), "--cache", str(tmp_path / "c.h5")])
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert str(tmp_path / "no_such_folder") in output and f"(in {config})" in output, output


def test_the_shipped_configs_resolve_from_the_checkout():
    """Every input path of every shipped config exists (outputs, templates and files an earlier step writes into
    runs/ aside); outputs stay in the checkout."""
    outputs = {"cache_dir", "runs_dir", "results", "results_dir", "out", "plot", "cache"}
    for path in sorted((REPO / "configs").glob("*.toml")):
        config = load_config_file(path)
        for key, value in _paths(config):
            absolute = Path(value)
            made_by_an_earlier_step = absolute.resolve().is_relative_to(REPO / "runs")  # e.g. a fine-tuned backbone
            if key in outputs or "{" in value or made_by_an_earlier_step:
                assert absolute.resolve().is_relative_to(REPO), (path.name, key, value)
            elif absolute.resolve().is_relative_to(REPO) or absolute.parent.parent.exists():
                assert absolute.exists(), (path.name, key, value)  # ../shared may be absent outside this project


def _paths(config, key=None):
    if isinstance(config, dict):
        for k, v in config.items():
            yield from _paths(v, k if k != "caches" else "cache")
    elif isinstance(config, list):
        for item in config:
            yield from _paths(item, key)
    elif key in PATH_KEYS and isinstance(config, str) and config not in ("default", "imagenet", "none"):
        for part in config.split(",") if key == "test_data" else [config]:  # real=DIR1,fake=DIR2
            yield key, part.split("=", 1)[1] if part.startswith(("real=", "fake=")) else part


def test_default_config_runs_from_the_repository_root(monkeypatch):
    """`python cli.py run --config configs/default.toml` from the root: the paths land where they always did."""
    monkeypatch.chdir(REPO)
    config = load_config_file("configs/default.toml")
    assert (config["data"], config["cache_dir"], config["runs_dir"]) == ("data/faces_sample", "cache", "runs")
    assert config["run"]["results"] == os.path.join("results", "default")
    assert Path(config["data"]).is_dir()


def test_a_config_path_that_is_a_folder_or_a_fifo_gets_its_own_message(tmp_path: Path):
    (tmp_path / "x.toml").write_text("")
    with pytest.raises(FeaturekitError, match=r"is a folder, not a TOML file \(it holds x\.toml\)"):
        load_config_file(tmp_path)
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    with pytest.raises(FeaturekitError, match=r"not a regular file \(a FIFO"):  # and no blocking read
        load_config_file(fifo)
    with pytest.raises(FeaturekitError, match="Config file not found"):
        load_config_file(tmp_path / "absent.toml")
