from __future__ import annotations

import types
from pathlib import Path

import pytest

from conftest import invoke
from featurekit.cli import app


@pytest.fixture(autouse=True)
def wide_console(monkeypatch):
    """Long tmp paths must not wrap the lines the tests read."""
    from rich.console import Console

    monkeypatch.setattr("featurekit.cli.console", Console(width=300))
    monkeypatch.setattr("featurekit.cli.error_console", Console(width=300, stderr=True))


def test_help_imports_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from featurekit.cli import app; "
            "r = CliRunner().invoke(app, ['extract', '--help']); assert r.exit_code == 0 and '--batch-size' in r.output; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_info_and_verbose_help_import_no_backend_and_quiet_start_is_the_default(tmp_path: Path):
    import subprocess
    import sys

    from conftest import separable_cache

    cache = separable_cache(tmp_path / "c.h5")
    code = ("import sys; from typer.testing import CliRunner; from featurekit.cli import app\n"
            "quiet = lambda: any(type(f).__name__ == '_QuietImport' for f in sys.meta_path)\n"
            "r = CliRunner().invoke(app, ['--verbose', 'extract', '--help']); assert r.exit_code == 0; v = quiet()\n"
            f"r = CliRunner().invoke(app, ['info', {str(cache)!r}]); assert r.exit_code == 0, r.output\n"
            "print(v, quiet(), sorted(m for m in ('tensorflow', 'keras', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False True []"


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


def test_backbones_lists_the_registry_with_feature_sizes(monkeypatch):
    from rich.console import Console

    monkeypatch.setattr("featurekit.cli.console", Console(width=60))  # `backbones | cat` gets 80 columns or fewer
    result = invoke("backbones")
    assert result.exit_code == 0, result.output
    assert "…" not in result.output and "14,714,688" in result.output and "21,802,784" in result.output
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
    assert f"fitted head on {cache.name}: " in " ".join(fitted.output.split())
    model = runs / cache.stem / "head"
    assert (model / "fitted.json").exists()
    logreg = invoke("fit", "--cache", cache, "--probe", "logreg", "--runs-dir", runs)
    assert logreg.exit_code == 0 and f"fitted logreg on {cache.name}: " in " ".join(logreg.output.split())

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
precision = "float32"  # the names below; "auto" names bfloat16 caches on a CPU with bfloat16 units
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
                    "--pooling", "avg,max", "--precision", "float32", "--cache-dir", tmp_path, "--no-progress")
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


@pytest.mark.parametrize("probe", ["logreg", "linsvm", "head"])
def test_fit_streams_from_disk_with_a_tiny_memory_budget(tmp_path: Path, probe: str):
    """Issue 9.13: a streamed fit used to fail with KeyError on history_['loss'] after saving."""
    from conftest import separable_cache

    cache = separable_cache(tmp_path / "sep.h5")
    result = invoke("fit", "--cache", cache, "--probe", probe, "--runs-dir", tmp_path / "runs",
                    "--memory-budget-gb", "1e-9")
    assert result.exit_code == 0, result.output
    assert "streaming" in result.output and "fitted" in result.output
    assert (tmp_path / "runs" / "sep" / probe / "fitted.json").is_file()


# ---- options declared once: Typer, TOML and the library agree


def test_typer_flags_are_generated_from_the_declarations():
    """Walk every command: its flags are its declared options, with the declared defaults."""
    import typer

    from featurekit.options import COMMANDS, options_for

    group = typer.main.get_command(app)
    for name in COMMANDS:
        click_command = group.commands[name.replace("_", "-")]
        params = {p.name: p for p in click_command.params if p.name not in ("help", "typer_context")}
        declared = options_for(name)
        assert set(params) == set(declared), name
        for option_name, option in declared.items():
            param = params[option_name]
            if option.argument and option.required:
                assert param.required, (name, option_name)
            else:
                assert param.default == option.default, (name, option_name)
            if not option.argument:
                assert option.flag in param.opts, (name, option_name)


def _capture(monkeypatch, target: str, returned=None) -> list:
    calls = []

    def fake(*args, **kwargs):
        calls.append((args, kwargs))
        if isinstance(returned, BaseException):
            raise returned
        return returned

    monkeypatch.setattr(target, fake)
    return calls


@pytest.mark.parametrize("command, target, args, required", [
    ("extract", "featurekit.extraction.extract.extract_from_options", ["--data", "D", "--backbone", "b"],
     {"data": Path("D"), "backbone": "b"}),
    ("fit_head", "featurekit.jobs.workflow.fit_head_from_options", ["--cache", "c.h5"], {"cache": Path("c.h5")}),
    ("fit", "featurekit.jobs.workflow.fit_from_options", ["--cache", "c.h5"], {"cache": [Path("c.h5")]}),
    ("compare", "featurekit.evaluation.compare.compare_from_options", [], {}),
    ("train_backbone", "featurekit.training.runner.train_from_options", ["--data", "D"], {"data": Path("D")}),
])
def test_commands_get_the_declared_defaults(monkeypatch, command, target, args, required):
    from featurekit.options import defaults

    calls = _capture(monkeypatch, target, returned=KeyboardInterrupt())
    result = invoke(command.replace("_", "-"), *args)
    assert result.exit_code == 130, result.output
    options = calls[0][0][0]
    assert options == {**defaults(command), **required}


def test_a_flag_given_with_its_default_value_still_beats_the_config_file(tmp_path: Path, monkeypatch):
    config = tmp_path / "x.toml"
    config.write_text('[extract]\nbatch_size = 8\noverwrite = true\n')
    calls = _capture(monkeypatch, "featurekit.extraction.extract.extract_from_options", returned=[])
    result = invoke("extract", "--config", config, "--data", "D", "--backbone", "b", "--batch-size", "32",
                    "--no-overwrite")
    assert result.exit_code == 0, result.output
    options = calls[0][0][0]
    assert options["batch_size"] == 32 and options["overwrite"] is False and options["config"] == config


def test_head_epochs_default_is_the_same_under_fit_fit_head_compare_and_run(tmp_path: Path, monkeypatch):
    import types

    from featurekit.options import head_params

    fits = _capture(monkeypatch, "featurekit.evaluation.fitting.fit_probe", returned=KeyboardInterrupt())
    assert invoke("fit", "--cache", "c.h5", "--probe", "head").exit_code == 130
    assert invoke("fit-head", "--cache", "c.h5").exit_code == 130
    assert [(args[1], args[2]) for args, _ in fits] == [("head", head_params()), ("head", head_params())]

    compares = _capture(monkeypatch, "featurekit.evaluation.compare.compare", returned=[])
    assert invoke("compare", "--cache", "c.h5", "--format", "json").exit_code == 0
    extracted = types.SimpleNamespace(status="extracted", cache_path=tmp_path / "c.h5", n_images=1, n_computed=0,
                                      images_per_second=0.0, weights_label="random-init")
    _capture(monkeypatch, "featurekit.extraction.extract.extract_from_options", returned=[extracted])
    config = tmp_path / "job.toml"
    config.write_text(f'data = "{tmp_path}"\n[[run.extract]]\nbackbone = "test_tiny"\n')
    assert invoke("run", "--config", config).exit_code == 0
    head = [kwargs["probe_params"]["head"] for _, kwargs in compares]
    assert head == [head_params(), head_params()] and head[0]["epochs"] == 30


# ---- config values are validated


def test_a_string_false_for_overwrite_is_refused_and_the_cache_kept(image_folder: Path, tmp_path: Path):
    cache = tmp_path / "c.h5"
    assert invoke("extract", "--backbone", "test_tiny", "--data", image_folder, "--cache", cache,
                  "--no-progress").exit_code == 0
    before = (cache.stat().st_mtime_ns, cache.read_bytes())
    config = tmp_path / "x.toml"
    config.write_text(f'data = "{image_folder}"\n[extract]\nbackbone = "test_tiny"\npooling = "avg"\n'
                      f'cache = "{cache}"\noverwrite = "false"\n')
    result = invoke("extract", "--config", config, "--no-progress")
    assert result.exit_code == 2, result.output
    assert "`overwrite` in" in result.output and str(config) in result.output and "true or false" in result.output
    assert (cache.stat().st_mtime_ns, cache.read_bytes()) == before


@pytest.mark.parametrize("command, text, expected", [
    ("extract", '[extract]\nbatch_size = "32"\n', ["`batch_size`", "[extract] must be an integer"]),
    ("extract", '[extract]\nsplit = 5\n', ["`split`", "[extract] must be three train,valid,test fractions"]),
    ("extract", 'dta = "faces"\n', ["Unknown top-level key `dta`", "Did you mean `data`?"]),
    ("run", 'data = "x"\n[[run.extract]]\nbackbone = "vgg16"\nlayers = "block2_pool"\n',
     ["Unknown key `layers`", "[[run.extract]] entry 1", "Did you mean `layer`?"]),
])
def test_bad_config_values_exit_2_naming_key_file_and_type(tmp_path: Path, command, text, expected):
    config = tmp_path / "job.toml"
    config.write_text(text)
    result = invoke(command, "--config", config)
    assert result.exit_code == 2, result.output
    assert str(config) in result.output and "Traceback" not in result.output
    for part in expected:
        assert part in result.output, result.output


def test_bad_flag_values_exit_2_with_the_flag_spelling():
    result = invoke("extract", "--data", "D", "--backbone", "b", "--batch-size", "0")
    assert result.exit_code == 2 and "--batch-size must be an integer (no quotes), >= 1" in result.output
    assert "Received: --batch-size 0" in result.output


# ---- whole tables, every format, names shown as they are


FAKE_BACKBONES = [
    {"name": "averyveryverylongbackbonename[x]", "input_size": 224, "preprocessing": "caffe",
     "output_layer": "block5_pool", "feature_dim": {"flatten": 25088, "avg": 512, "max": 512, "meanstd": 1024},
     "params": 123456789, "pretrained": ["imagenet"]},
    {"name": "tiny", "input_size": 32, "preprocessing": "tf", "output_layer": "pool2",
     "feature_dim": {"flatten": 64, "avg": 4, "max": 4, "meanstd": 8}, "params": 100, "pretrained": []},
]


@pytest.fixture
def fake_backbones(monkeypatch):
    summaries = {s["name"]: s for s in FAKE_BACKBONES}
    monkeypatch.setattr("featurekit.backbones.list_backbones", lambda include_test=False: list(summaries))
    monkeypatch.setattr("featurekit.backbones.get_spec", lambda name: types.SimpleNamespace(listing=lambda: summaries[name]))


def test_backbones_prints_whole_on_a_narrow_console(fake_backbones, monkeypatch):
    from rich.console import Console

    monkeypatch.setattr("featurekit.cli.console", Console(width=40))
    result = invoke("backbones")
    assert result.exit_code == 0, result.output
    assert "averyveryverylongbackbonename[x]" in result.output and "123,456,789" in result.output
    assert "…" not in result.output


def _parse_markdown(text: str) -> list[list[str]]:
    import re

    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = re.split(r"(?<!\\)\|", line.strip()[1:-1])
            rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows


def test_backbones_in_every_format(fake_backbones, tmp_path: Path):
    import csv
    import io
    import json

    as_json = json.loads(invoke("backbones", "--format", "json").output)
    assert [b["name"] for b in as_json] == ["averyveryverylongbackbonename[x]", "tiny"]
    rows = list(csv.DictReader(io.StringIO(invoke("backbones", "--format", "csv").output)))
    assert rows[0]["params"] == "123456789" and rows[0]["feature_dim_flatten"] == "25088"
    md = _parse_markdown(invoke("backbones", "--format", "md").output)
    assert md[0][0] == "name" and md[1][0] == "averyveryverylongbackbonename[x]" and md[1][5] == "123,456,789"
    assert invoke("backbones", "--format", "md", "--out", tmp_path / "b.md").exit_code == 0
    assert _parse_markdown((tmp_path / "b.md").read_text()) == md
    refused = invoke("backbones", "--out", tmp_path / "b.txt")
    assert refused.exit_code == 2 and "--out needs a file format" in refused.output


@pytest.fixture
def cache_with_odd_names(tmp_path: Path) -> Path:
    """A cache whose two skipped files differ only by a bracketed part: a[x].jpg and a.jpg."""
    from conftest import make_image_folder

    data = make_image_folder(tmp_path / "faces", per_class=6)
    (data / "real" / "a[x].jpg").write_bytes(b"")
    (data / "real" / "a.jpg").write_bytes(b"not an image")
    cache = tmp_path / "c.h5"
    result = invoke("extract", "--backbone", "test_tiny", "--data", data, "--cache", cache, "--no-progress")
    assert result.exit_code == 0, result.output
    return cache


def test_info_shows_file_names_as_they_are_in_every_format(cache_with_odd_names: Path):
    import csv
    import io
    import json

    table = invoke("info", cache_with_odd_names)
    assert table.exit_code == 0, table.output
    assert "real/a[x].jpg" in table.output and "real/a.jpg" in table.output
    described = json.loads(invoke("info", cache_with_odd_names, "--format", "json").output)
    assert sorted(s["path"] for s in described["skipped"]) == ["real/a.jpg", "real/a[x].jpg"]
    assert described["counts"]["train"]["real"] + described["counts"]["valid"]["real"] + \
        described["counts"]["test"]["real"] == 6
    records = list(csv.DictReader(io.StringIO(invoke("info", cache_with_odd_names, "--format", "csv").output)))
    assert {r["key"] for r in records if r["section"] == "skipped"} == {"real/a.jpg", "real/a[x].jpg"}
    assert any(r["section"] == "attribute" and r["key"] == "backbone" and r["value"] == "test_tiny" for r in records)
    md = invoke("info", cache_with_odd_names, "--format", "md").output
    assert "real/a[x].jpg" in [row[0] for row in _parse_markdown(md)]


def test_predict_shows_file_names_as_they_are_in_every_format(monkeypatch, tmp_path: Path):
    import csv
    import io
    import json

    rows = [{"path": "faces/a[x].png", "p_fake": 0.9, "label": "fake", "threshold": 0.5},
            {"path": "faces/a.png", "p_fake": 0.1, "label": "real", "threshold": 0.5},
            {"path": "faces/b[red].png", "p_fake": None, "label": None, "threshold": 0.5, "error": "bad [file]"}]
    monkeypatch.setattr("featurekit.predict.predict", lambda model, inputs, **options: rows)
    monkeypatch.setattr("featurekit.evaluation.fitting.read_fitted_meta", lambda model: {})  # no model to read
    table = invoke("predict", "--model", tmp_path / "m[1]", tmp_path)
    assert table.exit_code == 0, table.output
    for text in ("faces/a[x].png", "faces/a.png", "faces/b[red].png", "error: bad [file]", "m[1]"):
        assert text in table.output
    assert json.loads(invoke("predict", "--model", "m", tmp_path, "--format", "json").output) == rows
    parsed = list(csv.DictReader(io.StringIO(invoke("predict", "--model", "m", tmp_path, "--format", "csv").output)))
    assert [r["path"] for r in parsed] == ["faces/a[x].png", "faces/a.png", "faces/b[red].png"]
    md = _parse_markdown(invoke("predict", "--model", "m", tmp_path, "--format", "md").output)
    assert [r[0] for r in md] == ["path", "faces/a[x].png", "faces/a.png", "faces/b[red].png"]


@pytest.fixture
def two_caches(tmp_path: Path) -> list[Path]:
    import numpy as np

    from conftest import make_cache, separable_cache

    plain = separable_cache(tmp_path / "sep.h5")
    rng = np.random.default_rng(1)
    labels = np.arange(240) % 2
    features = rng.normal(size=(240, 8)).astype(np.float32) + labels[:, None]
    splits = np.repeat(np.array(["train"] * 3 + ["valid", "test"]), 2)[np.arange(240) % 10]
    odd = make_cache(tmp_path / "odd[1].h5", features, labels, splits, layer="pool[2]", preprocessing="rescale",
                     weights_label="near-imagenet (fine-tuned [bold]here[/bold])")
    return [plain, odd]


def _compare(tmp_path: Path, caches: list[Path], *args):
    flags = [arg for cache in caches for arg in ("--cache", cache)]
    return invoke("compare", *flags, "--runs-dir", tmp_path / "runs", "--probe", "logreg", "--boot", "20", *args)


def test_compare_is_compact_on_a_narrow_terminal_and_wide_on_request(tmp_path: Path, two_caches, monkeypatch):
    from rich.console import Console

    monkeypatch.setattr("featurekit.cli.console", Console(width=80))
    compact = _compare(tmp_path, two_caches)
    assert compact.exit_code == 0, compact.output
    header = next(line for line in compact.output.splitlines() if "features" in line)
    for column in ("probe", "accuracy [95% CI]", "ROC AUC", "AP", "flags"):
        assert column in header
    for column in ("EER", "TPR@1%FPR", "bal. acc", "weights"):
        assert column not in header
    assert "test_tiny pool[2]/avg 32px [rescale]" in compact.output and "--wide" in compact.output
    wide = _compare(tmp_path, two_caches, "--wide")
    header = next(line for line in wide.output.splitlines() if "features" in line)
    for column in ("EER", "TPR@1%FPR", "bal. acc", "weights", "fit s"):
        assert column in header
    assert "near-imagenet (fine-tuned [bold]here[/bold])" in wide.output and "…" not in wide.output


def test_compare_files_carry_every_column(tmp_path: Path, two_caches):
    import csv
    import io
    import json

    from featurekit.evaluation.compare import ROW_KEYS

    first = _compare(tmp_path, two_caches, "--format", "json")
    assert "fitting logreg" in first.stderr  # progress stays out of the data
    rows = json.loads(first.stdout)
    assert [r["layer"] for r in rows] == ["pool2", "pool[2]"] and set(ROW_KEYS) <= set(rows[0])
    records = list(csv.DictReader(io.StringIO(_compare(tmp_path, two_caches, "--format", "csv").stdout)))
    assert list(records[0]) == list(ROW_KEYS) and records[1]["cache"] == "odd[1].h5"
    md = _parse_markdown(_compare(tmp_path, two_caches, "--format", "md").stdout)
    assert "EER" in md[0] and "TPR@1%FPR" in md[0] and md[2][0] == "test_tiny pool[2]/avg 32px [rescale]"


# ---- Ctrl-C says what is true for each command


@pytest.mark.parametrize("argv, target, expected", [
    (["extract", "--data", "D", "--backbone", "b"], "featurekit.extraction.extract.extract_from_options",
     "Finished batches are kept; run the same command again to resume."),
    (["train-backbone", "--data", "D"], "featurekit.training.runner.train_from_options", "Finished epochs are kept"),
    (["fit-head", "--cache", "c.h5"], "featurekit.jobs.workflow.fit_head_from_options",
     "nothing was saved for the head in progress"),
    (["fit", "--cache", "c.h5"], "featurekit.jobs.workflow.fit_from_options", "nothing was saved for the probe in progress"),
    (["compare", "--cache", "c.h5"], "featurekit.evaluation.compare.compare_from_options",
     "probes already fitted are kept and reused"),
    (["predict", "--model", "m", "x.png"], "featurekit.predict.predict", "no predictions were written"),
    (["run", "--config", Path(__file__).resolve().parents[1] / "configs" / "default.toml"],
     "featurekit.jobs.workflow.run_job", "fitted probes are kept; run the same command again to continue"),
])
def test_ctrl_c_says_what_is_kept(monkeypatch, argv, target, expected):
    _capture(monkeypatch, target, returned=KeyboardInterrupt())
    result = invoke(*argv)
    assert result.exit_code == 130
    assert expected in result.output
    if argv[0] != "extract":
        assert "Finished batches" not in result.output


def test_backbones_files_lists_the_known_weights_with_their_labels():
    import json

    table = invoke("backbones", "--files")
    assert table.exit_code == 0, table.output
    assert "Known weights files" in table.output and "ImageNet (MobileNet v1 0.25)" in table.output
    listing = json.loads(invoke("backbones", "--files", "--format", "json").output)
    shipped = [f for f in listing["weights_files"] if f["location"] == "shipped"]
    assert [f["backbone"] for f in shipped] == ["mobilenet"] and shipped[0]["present"] == "yes"
    assert {b["name"] for b in listing["backbones"]} >= {"vgg16", "inceptionv3", "inceptionv1", "mobilenet"}


def test_predict_names_the_positive_class_in_its_score_column(tmp_path: Path):
    """With class folders other than real/fake, P(...) says which class the score is the probability of."""
    from conftest import make_image_folder
    from featurekit.extraction.extract import extract
    from featurekit.evaluation.fitting import fit_probe

    data = make_image_folder(tmp_path / "cats", per_class=12, classes=("cat", "dog"))
    cache = extract(data, "test_tiny", pooling="avg", cache=tmp_path / "c.h5", progress=False, log=lambda m: None)
    fitted = fit_probe(cache.cache_path, "logreg", runs_dir=tmp_path / "runs", log=lambda m: None)
    result = invoke("predict", "--model", fitted.directory, data / "dog" / "img_00.png", "--format", "md")
    assert result.exit_code == 0, result.output
    assert "| path | P(dog) | label |" in result.output


# ---- errors name parameters; the command line spells them as its flags


def test_library_errors_name_parameters_and_the_cli_spells_flags_by_where_each_value_came_from():
    from featurekit.errors import FeaturekitError, given
    from featurekit.flags import CommandSpelling

    error = FeaturekitError(f"No weights for {given('backbone', 'vgg16')}.",
                            received=f"{given('backbone', 'vgg16')}, {given('weights', 'imagenet')}",
                            fix=f"Pass `weights` with a file, or {given('weights', 'none')}; "
                                f"`layers` {given('subset', 'x')}.")
    assert str(error) == ("No weights for backbone='vgg16'. Received: backbone='vgg16', weights='imagenet'. Pass "
                          "`weights` with a file, or weights='none'; `layers` subset='x'.")
    typed = CommandSpelling("extract", typed={"backbone": "vgg16"}).error(error)
    assert "Received: --backbone vgg16, the default --weights (imagenet)." in typed
    assert "Pass --weights with a file, or --weights none; `layers` subset='x'." in typed  # not options: kept
    from_file = CommandSpelling("extract", from_file={"weights": "imagenet"}, config="x.toml").error(error)
    assert 'weights = "imagenet" (in x.toml)' in from_file
    assert "--weights imagenet" in CommandSpelling("extract", typed={"weights": "imagenet"}).error(error)
    assert "--weights default (imagenet)" in CommandSpelling("extract", typed={"weights": "default"}).error(error)
    # A command without the option (sweep has no --weights) keeps the parameter's spelling.
    assert "weights='imagenet'" in CommandSpelling("sweep").error(error)


def test_received_says_the_default_when_the_user_passed_no_such_flag(monkeypatch):
    from featurekit.errors import WeightsUnavailableError, given

    error = WeightsUnavailableError("ImageNet weights cannot be downloaded.",
                                    received=f"{given('backbone', 'vgg16')}, {given('weights', 'imagenet')}")
    _capture(monkeypatch, "featurekit.extraction.extract.extract_from_options", returned=error)
    result = invoke("extract", "--data", "D", "--backbone", "vgg16")
    assert result.exit_code == 2
    assert "Received: --backbone vgg16, the default --weights (imagenet)." in result.output, result.output
    result = invoke("extract", "--data", "D", "--backbone", "vgg16", "--weights", "imagenet")
    assert "Received: --backbone vgg16, --weights imagenet." in result.output, result.output


def test_respell_reads_values_back_and_leaves_prose_alone():
    from featurekit.flags import respell

    spelt = respell("a data folder; data='my faces' k=15 cache=['a.h5', 'b.h5'] max_pixels=64000000. `data`",
                    lambda name, value, has: f"<{name}:{value!r}>" if name in ("data", "cache", "max_pixels") else None)
    assert spelt == ("a data folder; <data:'my faces'> k=15 <cache:['a.h5', 'b.h5']> <max_pixels:64000000>. "
                     "<data:None>")


@pytest.mark.parametrize("args", [["extract", "--seed", "4294967296"], ["fit-head", "--seed", "4294967296"],
                                  ["extract", "--split", "nan,nan,nan"]])
def test_out_of_bound_seeds_and_nan_splits_are_clean_errors(args):
    result = invoke(*args, "--data", "D", "--backbone", "b") if args[0] == "extract" else invoke(*args, "--cache", "c.h5")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"Received: {args[1]} {args[2]}" in result.output, result.output


# ---- piped output is whole, start is quiet


def _piped(*args: str, env: dict | None = None):
    import os
    import subprocess
    import sys

    environment = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "TERMINAL_WIDTH")}
    return subprocess.run([sys.executable, "cli.py", *args], capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[1], env={**environment, **(env or {})})


@pytest.mark.slow  # five whole `python cli.py ... --help` processes
def test_help_through_a_pipe_is_whole():
    """`extract --help | cat`: no cut option names, no `{inputs}...` usage, no `--help <bool>`."""
    from featurekit.options import COMMANDS, options_for

    for command in ("extract", "predict", "train-backbone", "sweep"):
        out = _piped(command, "--help")
        assert out.returncode == 0, out.stderr
        assert "…" not in out.stdout and "<bool>" not in out.stdout and "{" not in out.stdout.splitlines()[1]
        for option in options_for(command.replace("-", "_")).values():
            assert option.flag in out.stdout or option.argument, (command, option.flag)
    assert "Usage: cli.py predict [OPTIONS] INPUTS..." in _piped("predict", "--help").stdout
    assert COMMANDS


@pytest.mark.slow  # a whole `python cli.py compare` process
def test_a_piped_compare_table_is_the_wide_one(tmp_path: Path, two_caches):
    """`compare | cat` gets every column, even where COLUMNS says 80 (the table a narrow terminal gets is compact)."""
    out = _piped("compare", *[a for c in two_caches for a in ("--cache", str(c))], "--runs-dir", str(tmp_path / "runs"),
                 "--probe", "logreg", "--boot", "20", env={"COLUMNS": "80"})
    assert out.returncode == 0, out.stderr
    header = next(line for line in out.stdout.splitlines() if "features" in line)
    for column in ("EER", "TPR@1%FPR", "bal. acc", "weights", "fit s"):
        assert column in header
    assert len(header) > 80 and "…" not in out.stdout and "--wide" not in out.stdout


@pytest.mark.slow  # a whole `python cli.py extract` process: TensorFlow's import and start-up
def test_a_command_that_imports_tensorflow_prints_no_backend_log_lines(image_folder: Path, tmp_path: Path):
    out = _piped("extract", "--backbone", "test_tiny", "--data", str(image_folder), "--cache", str(tmp_path / "c.h5"),
                 "--no-progress")
    assert out.returncode == 0, out.stderr
    for noise in ("cuInit", "E0000", "I0000", "absl::InitializeLog", "cudart_stub"):
        assert noise not in out.stderr, out.stderr


def test_the_filter_keeps_everything_but_the_backends_start_up_lines(tmp_path: Path):
    import subprocess
    import sys

    code = ("import os; from featurekit.backend_logs import stderr_without_backend_noise\n"
            "with stderr_without_backend_noise():\n"
            "    os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
            "    os.write(2, b'I0000 00:00:1796157974.957992   17561 cudart_stub.cc:31] Could not find cuda drivers\\n')\n"
            "    os.write(2, b'E0000 00:00:1796158148.965748   19494 cuda_platform.cc:52] failed call to cuInit\\n')\n"
            "    os.write(2, b'a real warning\\n')\n"
            "os.write(2, b'after\\n')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stderr == "a real warning\nafter\n"


def test_progress_messages_of_the_library_are_spelled_as_flags_too(monkeypatch):
    from featurekit.cli import _FlagConsole

    monkeypatch.setattr("featurekit.cli.console", _FlagConsole(width=300))

    def fake(options, log, progress, command=""):
        log("skipped big.png: more than `max_pixels` 64,000,000 pixels; `layers` stays")
        return []

    monkeypatch.setattr("featurekit.extraction.extract.extract_from_options", fake)
    result = invoke("extract", "--data", "D", "--backbone", "b")
    assert result.exit_code == 0, result.output
    assert "more than --max-pixels 64,000,000 pixels; `layers` stays" in result.output
