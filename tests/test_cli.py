from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from featurekit.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Long tmp paths must not wrap the lines the tests read."""
    from rich.console import Console

    monkeypatch.setattr("featurekit.cli.console", Console(width=300))
    monkeypatch.setattr("featurekit.cli.error_console", Console(width=300, stderr=True))


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("extract", "info", "backbones"):
        assert command in result.output


def test_extract_then_info(image_folder: Path, tmp_path: Path):
    cache = tmp_path / "c.h5"
    result = invoke("extract", "--backbone", "test_tiny", "--data", image_folder, "--pooling", "meanstd",
                    "--cache", cache, "--no-progress")
    assert result.exit_code == 0, result.output
    assert "extracted" in result.output and "24 images" in result.output
    info = invoke("info", cache)
    assert info.exit_code == 0 and "meanstd" in info.output and "random-init" in info.output


def test_config_file_gives_defaults_and_flags_win(image_folder: Path, tmp_path: Path):
    config = tmp_path / "x.toml"
    config.write_text(f'data = "{image_folder}"\n[extract]\nbackbone = "test_tiny"\npooling = "max"\n')
    result = invoke("extract", "--config", config, "--pooling", "avg", "--cache", tmp_path / "c.h5", "--no-progress")
    assert result.exit_code == 0, result.output
    from featurekit.cache import open_cache

    with open_cache(tmp_path / "c.h5") as cache:
        assert cache.attrs["pooling"] == "avg"
        assert cache.attrs["config"]["backbone"] == "test_tiny" and cache.attrs["config"]["pooling"] == "avg"


@pytest.mark.parametrize("args,message", [
    (["--backbone", "resnet9000"], "Unknown backbone 'resnet9000'"),
    (["--backbone", "test_tiny", "--pooling", "median"], "median"),
    (["--backbone", "test_tiny", "--layer", "nope"], "no layer 'nope'"),
    (["--backbone", "test_tiny", "--weights", "missing.weights.h5"], "missing.weights.h5"),
    (["--backbone", "test_tiny", "--dtype", "int8"], "--dtype must be one of: float32, float16"),
])
def test_bad_options_exit_2_with_a_clear_message(image_folder: Path, tmp_path: Path, args, message):
    result = invoke("extract", "--data", image_folder, "--cache", tmp_path / "c.h5", "--no-progress", *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_missing_data_folder_and_missing_option(tmp_path: Path):
    result = invoke("extract", "--backbone", "test_tiny", "--data", tmp_path / "nowhere")
    assert result.exit_code == 2 and "does not exist" in result.output
    result = invoke("extract", "--backbone", "test_tiny")
    assert result.exit_code == 2 and "Missing option --data" in result.output


def test_unknown_config_key_is_refused(tmp_path: Path):
    config = tmp_path / "x.toml"
    config.write_text("[extract]\npoolin = 'avg'\n")
    result = invoke("extract", "--config", config)
    assert result.exit_code == 2 and "Unknown key `poolin`" in result.output and "Did you mean `pooling`?" in result.output


def test_backbones_lists_the_registry_with_feature_sizes():
    result = invoke("backbones")
    assert result.exit_code == 0, result.output
    vgg_row = next(line for line in result.output.splitlines() if " vgg16 " in line)
    assert "224" in vgg_row and "caffe" in vgg_row and "25088 / 512 / 512 / 1024" in vgg_row and "imagenet" in vgg_row
    inception_row = next(line for line in result.output.splitlines() if " inceptionv3 " in line)
    assert "299" in inception_row and " tf " in inception_row
    assert "test_tiny" not in result.output


def test_fit_head_compare_predict_end_to_end(tmp_path: Path):
    from conftest import make_image_folder

    data = make_image_folder(tmp_path / "faces", per_class=40)
    caches, runs = tmp_path / "cache", tmp_path / "runs"
    assert invoke("extract", "--backbone", "test_tiny", "--data", data, "--pooling", "meanstd", "--cache-dir", caches,
                  "--no-progress").exit_code == 0
    cache = next(caches.glob("*.h5"))
    fitted = invoke("fit-head", "--cache", cache, "--epochs", "5", "--runs-dir", runs)
    assert fitted.exit_code == 0, fitted.output
    assert "threshold" in fitted.output and "chosen on valid" in fitted.output
    model = runs / cache.stem / "head"
    assert (model / "fitted.json").exists()
    assert invoke("fit", "--cache", cache, "--probe", "logreg", "--runs-dir", runs).exit_code == 0

    table = invoke("compare", "--cache-dir", caches, "--runs-dir", runs, "--probe", "head", "--probe", "logreg",
                   "--head-epochs", "5", "--boot", "100", "--plot", tmp_path / "roc.png")
    assert table.exit_code == 0, table.output
    assert "(reused)" in table.output and "RANDOM FEATURES" in table.output and (tmp_path / "roc.png").exists()
    as_json = invoke("compare", "--cache", cache, "--runs-dir", runs, "--probe", "logreg", "--boot", "50",
                     "--format", "json", "--out", tmp_path / "r.json")
    assert as_json.exit_code == 0, as_json.output
    import json

    rows = json.loads((tmp_path / "r.json").read_text())
    assert rows[0]["probe"] == "logreg" and "tpr_at_1pct_fpr" in rows[0]

    predicted = invoke("predict", "--model", model, data / "fake", "--format", "csv")
    assert predicted.exit_code == 0, predicted.output
    lines = predicted.output.strip().splitlines()
    assert lines[0] == "path,p_fake,label,threshold,error" and len(lines) == 41


def test_compare_refuses_bad_requests(tmp_path: Path):
    result = invoke("compare", "--cache-dir", tmp_path)
    assert result.exit_code == 2 and "No cache files" in result.output
    result = invoke("compare", "--cache-dir", tmp_path, "--format", "xml")
    assert result.exit_code == 2 and "--format must be one of: table, csv, json, md" in result.output
    result = invoke("compare", "--cache-dir", tmp_path, "--out", tmp_path / "x.md")
    assert result.exit_code == 2 and "--out needs a file format" in result.output
    result = invoke("fit-head", "--cache", tmp_path / "missing.h5")
    assert result.exit_code == 2 and "not found" in result.output


def test_run_does_the_whole_job_of_a_config(tmp_path: Path):
    from conftest import make_image_folder

    data = make_image_folder(tmp_path / "faces", per_class=40)
    config = tmp_path / "job.toml"
    config.write_text(f"""
data = "{data}"
cache_dir = "{tmp_path / 'cache'}"
runs_dir = "{tmp_path / 'runs'}"
[extract]
pooling = "avg"
[compare]
probe = ["logreg", "knn"]
boot = 50
[run]
results = "{tmp_path / 'results' / 'job'}"
[[run.extract]]
backbone = "test_tiny"
[[run.extract]]
backbone = "test_tiny"
pooling = "meanstd"
preprocessing = "rescale"
""")
    result = invoke("run", "--config", config, "--no-progress")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "results" / "job.md").exists() and (tmp_path / "results" / "job-roc.png").exists()
    import json

    rows = json.loads((tmp_path / "results" / "job.json").read_text())
    assert [(r["pooling"], r["preprocessing"], r["probe"]) for r in rows] == [
        ("avg", "tf", "logreg"), ("avg", "tf", "knn"), ("meanstd", "rescale", "logreg"), ("meanstd", "rescale", "knn")]
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.h5")) == [
        "faces-test_tiny-avg-32-random.h5", "faces-test_tiny-meanstd-32-rescale-random.h5"]
    again = invoke("run", "--config", config, "--no-progress")
    assert again.exit_code == 0 and "up-to-date" in again.output and "(reused)" in again.output


def test_extract_several_layers_and_poolings_in_one_command(image_folder: Path, tmp_path: Path):
    result = invoke("extract", "--backbone", "test_tiny", "--data", image_folder, "--layer", "pool1,pool2",
                    "--pooling", "avg,max", "--cache-dir", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.glob("*.h5")) == [
        "faces-test_tiny-pool1-avg-32-random.h5", "faces-test_tiny-pool1-max-32-random.h5",
        "faces-test_tiny-pool2-avg-32-random.h5", "faces-test_tiny-pool2-max-32-random.h5"]
    assert result.output.count("extracted:") == 4


def test_train_backbone_refuses_a_pretrained_backbone(image_folder: Path, tmp_path: Path):
    result = invoke("train-backbone", "vgg16", "--data", image_folder, "--out", tmp_path / "run")
    assert result.exit_code == 2 and "inceptionv1" in result.output and "Traceback" not in result.output


def test_compare_table_is_not_squeezed_on_a_narrow_console(tmp_path: Path, monkeypatch):
    import re

    from rich.console import Console

    from conftest import separable_cache

    cache = separable_cache(tmp_path / "sep.h5")
    monkeypatch.setattr("featurekit.cli.console", Console(width=80))
    result = invoke("compare", "--cache", cache, "--runs-dir", tmp_path / "runs", "--probe", "logreg", "--boot", "20")
    assert result.exit_code == 0, result.output
    assert re.search(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", result.output), result.output
