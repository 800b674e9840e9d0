"""sweep and run check their whole grid before extracting anything; a sweep's name is a name; an entry whose
weights cannot be had is skipped (or, when asked, an error naming the file and the entry); the sweep names the
chosen model's folder and the predict command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import make_image_folder


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("data") / "faces", per_class=30, size=32)


def _sweep_config(tmp_path: Path, faces: Path, entries: str, sweep: str = "") -> Path:
    config = tmp_path / "grid.toml"
    config.write_text(f'data = "{faces}"\ncache_dir = "{tmp_path / "cache"}"\nruns_dir = "{tmp_path / "runs"}"\n'
                      f'[sweep]\nprobe = ["logreg"]\nboot = 0\ntop_k = 0\nresults_dir = "{tmp_path / "results"}"\n'
                      f'{sweep}\n{entries}')
    return config


GOOD = '[[sweep.backbone]]\nbackbone = "test_tiny"\npooling = "avg"\n'
MISSING_WEIGHTS = '[[sweep.backbone]]\nbackbone = "test_tiny"\npooling = "max"\nweights = "nowhere/tiny.weights.h5"\n'


def _invoke(*args: str):
    from featurekit.cli import app

    return CliRunner().invoke(app, [*args, "--no-progress"])


@pytest.mark.parametrize("bad_entry, named", [
    ('[[sweep.backbone]]\nbackbone = "no_such_net"\n', "no_such_net"),
    ('[[sweep.backbone]]\nbackbone = "test_tiny"\npooling = ["avg", "maxx"]\n', "maxx"),
])
def test_a_bad_entry_anywhere_stops_the_sweep_before_any_extraction(bad_entry, named, faces, tmp_path: Path):
    config = _sweep_config(tmp_path, faces, GOOD + bad_entry)
    result = _invoke("sweep", "--config", str(config))
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert f"[[sweep.backbone]] entry 2" in output and str(config) in output and named in output
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.h5"))  # entry 1 not extracted


def test_a_bad_probe_stops_the_sweep_before_any_extraction(faces, tmp_path: Path):
    config = _sweep_config(tmp_path, faces, GOOD)
    result = _invoke("sweep", "--config", str(config), "--probe", "logreg", "--probe", "lgoreg")
    assert result.exit_code == 2 and "lgoreg" in result.output, result.output
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.h5"))


def test_a_bad_entry_stops_run_before_any_extraction(faces, tmp_path: Path):
    config = tmp_path / "job.toml"
    config.write_text(f'data = "{faces}"\ncache_dir = "{tmp_path / "cache"}"\nruns_dir = "{tmp_path / "runs"}"\n'
                      '[compare]\nprobe = ["logreg"]\n'
                      '[[run.extract]]\nbackbone = "test_tiny"\npooling = "avg"\n'
                      '[[run.extract]]\nbackbone = "test_tiny"\npooling = "meanstdd"\n')
    result = _invoke("run", "--config", str(config))
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "[[run.extract]] entry 2" in output and "meanstdd" in output and str(config) in output
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.h5"))
    config.write_text(config.read_text().replace('"meanstdd"', '"max"').replace('["logreg"]', '["logreg", "nope"]'))
    result = _invoke("run", "--config", str(config))
    output = " ".join(result.output.split())
    assert result.exit_code == 2 and "`probe` in" in output and '"nope"' in output and "head, logreg" in output, output
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.h5"))


@pytest.mark.parametrize("name", ["../../../escape", "a/b", ".hidden", "..", "x\\y"])
def test_a_sweep_name_that_is_a_path_is_refused(name, faces, tmp_path: Path):
    config = _sweep_config(tmp_path, faces, GOOD)
    result = _invoke("sweep", "--config", str(config), "--name", name)
    assert result.exit_code == 2 and "plain name" in result.output, result.output
    assert not (tmp_path / "cache").exists()  # refused before any work
    assert not list(tmp_path.parent.glob("**/sweep-escape*"))


def test_an_entry_without_its_weights_is_skipped_and_the_choice_names_its_model(faces, tmp_path: Path):
    config = _sweep_config(tmp_path, faces, MISSING_WEIGHTS + GOOD)
    result = _invoke("sweep", "--config", str(config))
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "skipped [[sweep.backbone]] entry 1 (backbone test_tiny) of " + str(config) in output
    assert "tiny.weights.h5" in output and "weights = [" in output and "--weights" not in output
    report = json.loads((tmp_path / "results" / "sweep-grid.json").read_text())
    assert [row["pooling"] for row in report["rows"]] == ["avg"]  # the grid ran with what it had
    assert any("skipped [[sweep.backbone]] entry 1" in note for note in report["notes"])
    model_dir = report["chosen"]["model_dir"]
    assert report["model_dir"] == model_dir and (Path(model_dir) / "fitted.json").is_file()
    command = f"python cli.py predict IMAGES_OR_FOLDER --model {model_dir}"
    assert report["predict_command"] == command
    assert command in output.replace(" ", "") or command.replace(" ", "") in output.replace(" ", "")
    assert command in (tmp_path / "results" / "sweep-grid.md").read_text()


def test_on_missing_weights_error_stops_naming_the_file_and_the_entry(faces, tmp_path: Path):
    config = _sweep_config(tmp_path, faces, GOOD + MISSING_WEIGHTS, sweep='on_missing_weights = "error"')
    result = _invoke("sweep", "--config", str(config))
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert "[[sweep.backbone]] entry 2 (backbone test_tiny) of " + str(config) in output
    assert "tiny.weights.h5" in output and "--weights" not in output and "weights = [" in output


def test_an_error_while_running_an_entry_of_run_names_the_file_and_the_entry(faces, tmp_path: Path):
    config = tmp_path / "job.toml"
    config.write_text(f'data = "{faces}"\ncache_dir = "{tmp_path / "cache"}"\nruns_dir = "{tmp_path / "runs"}"\n'
                      '[compare]\nprobe = ["logreg"]\n'
                      '[[run.extract]]\nbackbone = "test_tiny"\npooling = "avg"\nweights = "gone/tiny.weights.h5"\n')
    result = _invoke("run", "--config", str(config))
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert f"[[run.extract]] entry 1 (backbone test_tiny) of {config}" in output and "gone/tiny.weights.h5" in output
    assert "--weights" not in output  # the entry's keys, not flags `run` does not have


def test_plain_names_are_kept():
    from featurekit.jobs.sweep import check_name

    for name in ("shared_faces", "faces v2.1", "grid-3"):
        assert check_name(name) == name
