"""Options declared once: the declarations, their checks, the config loader, and the library's defaults."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from featurekit.config import load_config_file, resolve_config
from featurekit.errors import FeaturekitError
from featurekit.flags import CommandSpelling
from featurekit.options import (
    COMMANDS,
    OPTIONS,
    complete,
    defaults,
    head_params,
    options_for,
    validate,
)

REPO = Path(__file__).resolve().parents[1]


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.toml"
    path.write_text(text)
    return path


def test_every_declared_default_passes_its_own_check():
    for command in COMMANDS:
        declared = options_for(command)
        checked = validate(command, defaults(command))
        assert checked == defaults(command), command
        assert all(option.help for option in declared.values())


def test_options_of_every_command_are_unique_and_named_in_snake_case():
    for option in OPTIONS:
        assert option.name == option.name.lower() and "-" not in option.name
        assert set(option.commands) <= set(COMMANDS)


@pytest.mark.parametrize("key, value, expected", [
    ("batch_size", "32", "an integer"),
    ("batch_size", 0, ">= 1"),
    ("batch_size", 32.0, "an integer"),
    ("overwrite", "false", "true or false"),
    ("overwrite", 0, "true or false"),
    ("split", 5, "three train,valid,test fractions"),
    ("split", "0.7,0.3", "three train,valid,test fractions"),
    ("dtype", "int8", "one of: float32, float16"),
    ("image_size", 100000, "<= 4096"),
    ("weights", 3, "imagenet, none, default or a weights file path"),
])
def test_wrong_values_name_the_key_the_source_and_the_expected_type(key, value, expected):
    with pytest.raises(FeaturekitError) as caught:
        validate("extract", {key: value}, "job.toml [extract]")
    message = str(caught.value)
    assert f"`{key}` in job.toml [extract]" in message and expected in message


def test_caller_values_are_spelled_as_parameters_from_python_and_as_flags_on_the_command_line():
    with pytest.raises(FeaturekitError) as from_python:
        validate("extract", {"batch_size": 0})
    assert "batch_size must be" in str(from_python.value) and "batch_size=0" in str(from_python.value)
    assert "--" not in str(from_python.value)
    from_cli = CommandSpelling("extract", typed={"batch_size": 0}).error(from_python.value)
    assert "--batch-size must be" in from_cli and "Received: --batch-size 0" in from_cli
    assert "Use e.g. --batch-size 32" in from_cli


def test_values_are_converted_as_the_library_takes_them():
    checked = validate("compare", {"memory_budget_gb": 2, "cache": "a.h5", "probe": "logreg"})
    assert checked == {"memory_budget_gb": 2.0, "cache": ["a.h5"], "probe": ["logreg"]}
    assert isinstance(checked["memory_budget_gb"], float)
    assert validate("extract", {"split": [0.8, 0.1, 0.1], "pooling": ["avg", "max"]}) == {
        "split": [0.8, 0.1, 0.1], "pooling": ["avg", "max"]}


def test_complete_fills_declared_defaults_and_refuses_unknown_or_missing_options():
    options = complete("extract", {"data": "DIR", "backbone": "vgg16"})
    assert options == {**defaults("extract"), "data": "DIR", "backbone": "vgg16"}
    with pytest.raises(FeaturekitError, match=r"Unknown option batchsize for extract\. Did you mean `batch_size`\?"):
        complete("extract", {"data": "DIR", "backbone": "vgg16", "batchsize": 8})
    with pytest.raises(FeaturekitError, match=r"Missing option data\.") as caught:
        complete("extract", {"backbone": "vgg16"})
    assert "--" not in str(caught.value)


def test_library_entry_points_speak_of_parameters_not_flags():
    from featurekit.extraction.extract import extract_from_options

    with pytest.raises(FeaturekitError) as caught:
        extract_from_options({"backbone": "vgg16"})
    assert "Missing option data." in str(caught.value) and "--data" not in str(caught.value)


def test_the_head_has_the_same_epochs_under_every_command():
    assert defaults("fit_head")["epochs"] == defaults("compare")["head_epochs"] == 30
    assert head_params()["epochs"] == 30
    assert head_params(epochs=7, seed=3) == {**head_params(), "epochs": 7, "random_state": 3}


def test_head_constructor_defaults_are_the_declared_ones():
    """The head's constructor reads its defaults from the declarations: the same under every command."""
    from featurekit.probes import DenseHeadClassifier

    params = DenseHeadClassifier().get_params()
    declared = head_params()
    for name in ("epochs", "units", "dropout", "learning_rate", "batch_size", "patience", "random_state"):
        assert params[name] == declared[name], name
    assert declared["epochs"] == 30 and declared["batch_size"] == "auto"


@pytest.mark.parametrize("value, expected", [("auto", "auto"), (512, 512), ("512", 512)])
def test_head_batch_size_takes_an_integer_or_auto(value, expected):
    assert validate("fit_head", {"batch_size": value}, source="test")["batch_size"] == expected


@pytest.mark.parametrize("value", ["big", 0, 2.5, True])
def test_head_batch_size_refuses_anything_else(value):
    with pytest.raises(FeaturekitError, match="batch_size"):
        validate("fit_head", {"batch_size": value}, source="test")


# ---- config files


def test_config_files_of_the_project_load(tmp_path: Path):
    for path in sorted((REPO / "configs").glob("*.toml")):
        config = load_config_file(path)
        assert config.get("run", {}).get("extract") or config.get("sweep", {}).get("backbone"), path


@pytest.mark.parametrize("text, expected", [
    ('dta = "faces"\n', ["Unknown top-level key `dta`", "Did you mean `data`?"]),
    ('[extract]\nbatch_size = "32"\n', ["`batch_size` in", "job.toml [extract] must be an integer",
                                       'batch_size = "32" (a string)']),
    ('[extract]\nsplit = 5\n', ["`split` in", "[extract] must be three train,valid,test fractions"]),
    ('[extract]\noverwrite = "false"\n', ["`overwrite` in", "must be true or false", "Write e.g. overwrite = false"]),
    ('batch_size = "32"\n', ["`batch_size` in", "job.toml (top level) must be an integer"]),
    ('[compare]\nhead_epochs = 20.5\n', ["`head_epochs`", "[compare] must be an integer"]),
    ('[extrct]\nbackbone = "vgg16"\n', ["Unknown top-level key `extrct`", "Did you mean `extract`?"]),
    ('extract = 3\n', ["`extract` in", "must be a table"]),
    ('[run]\ntitel = "x"\n', ["Unknown key `titel`", "[run]", "Did you mean `title`?"]),
    ('[[run.extract]]\nbackbone = "vgg16"\n[[run.extract]]\nbackbone = "vgg16"\npoolng = "avg"\n',
     ["Unknown key `poolng` in", "[[run.extract]] entry 2", "Did you mean `pooling`?"]),
    ('[[run.extract]]\nbackbone = "vgg16"\nbatch_size = "8"\n',
     ["`batch_size` in", "[[run.extract]] entry 1 must be an integer"]),
    ('[[run.extract]]\nbackbone = "vgg16"\ndata = "x"\n', ["Unknown key `data`", "[[run.extract]] entry 1"]),
    ('[[run.train_backbone]]\nepochs = "3"\n', ["`epochs` in", "[[run.train_backbone]] entry 1 must be an integer"]),
    ('[extract]\nconfig = "other.toml"\n', ["Unknown key `config`"]),
])
def test_config_files_are_checked_whole(tmp_path: Path, text: str, expected: list[str]):
    path = write_config(tmp_path, text)
    with pytest.raises(FeaturekitError) as caught:
        load_config_file(path)
    message = str(caught.value)
    assert str(path) in message
    for part in expected:
        assert part in message, message


def test_precedence_is_defaults_then_top_level_then_table_then_step_then_flags(tmp_path: Path):
    config = load_config_file(write_config(tmp_path, 'batch_size = 4\nseed = 1\n[extract]\nseed = 2\npooling = "avg"\n'))
    options = resolve_config("extract", config, {"pooling": None, "dtype": "float16"}, step={"pooling": "max"})
    assert (options["batch_size"], options["seed"], options["pooling"], options["dtype"]) == (4, 2, "max", "float16")
    assert options["cache_dir"] == defaults("extract")["cache_dir"]
    head = resolve_config("fit_head", config, {})
    assert head["batch_size"] == 4  # a top-level key applies to every command that takes it


def test_a_dict_from_python_is_held_to_the_same_rules_as_a_file():
    from featurekit.jobs.workflow import run_job

    with pytest.raises(FeaturekitError, match="Unknown top-level key `dta`"):
        run_job({"dta": "x", "run": {"extract": [{"backbone": "vgg16"}]}})


def test_names_read_as_the_options_check_them():
    from featurekit.options import name_list

    assert name_list("avg, max") == name_list(["avg", "max"]) == name_list(["avg, max"]) == ["avg", "max"]
    assert name_list(None) == [None] and name_list(["block2_pool"]) == ["block2_pool"]


def test_a_job_entry_reads_its_poolings_as_extract_does(tmp_path: Path):
    """`pooling = "avg, max"` is two poolings to `extract`; the job's check before any extraction agrees."""
    from featurekit.jobs.workflow import checked_extractions

    entries = checked_extractions([{"backbone": "test_tiny", "pooling": "avg, max"}], {}, tmp_path, "run.extract",
                                  "job.toml")
    assert entries[0]["pooling"] == "avg, max"
    with pytest.raises(FeaturekitError, match="Unknown pooling 'none'"):  # a hand-made feature's, not a network's
        checked_extractions([{"backbone": "test_tiny", "pooling": "avg, none"}], {}, tmp_path, "run.extract", "job.toml")


# ---- bounds: NaN, infinity, seeds, splits


@pytest.mark.parametrize("key", ["learning_rate", "min_learning_rate", "plateau_factor"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_pass_no_float_bound(key, value):
    """TOML allows `nan` and `inf`: a minimum-only bound (min_learning_rate >= 0) must not let NaN through."""
    with pytest.raises(FeaturekitError, match=f"{key} must be a number"):
        validate("train_backbone", {key: value})


def test_nan_in_a_config_file_is_refused_naming_the_key(tmp_path: Path):
    path = write_config(tmp_path, "[compare]\nmemory_budget_gb = nan\n[fit_head]\ndropout = inf\n")
    with pytest.raises(FeaturekitError, match=r"`memory_budget_gb` in .* must be a number \(no quotes\), > 0"):
        load_config_file(path)


@pytest.mark.parametrize("command", ["extract", "fit_head", "train_backbone", "audit", "sweep"])
def test_every_seed_has_one_bound(command):
    assert validate(command, {"seed": 2**32 - 1}) == {"seed": 2**32 - 1}
    for seed in (2**32, -1):
        with pytest.raises(FeaturekitError, match=r"seed must be an integer \(no quotes\), >= 0 and <= 4294967295"):
            validate(command, {"seed": seed})


@pytest.mark.parametrize("split", ["nan,nan,nan", "0.7,0.15,nan", [float("nan")] * 3, "0.5,0.5,0.5", "inf,0,0",
                                   "0.9,0.2,-0.1"])
def test_split_fractions_are_three_finite_non_negative_numbers_that_sum_to_1(split):
    from featurekit.config import parse_split_fractions

    with pytest.raises(FeaturekitError, match="sum to 1"):
        validate("extract", {"split": split})
    with pytest.raises(FeaturekitError, match=r"split must be three"):
        parse_split_fractions(split)


def test_split_fractions_are_parsed():
    from featurekit.config import parse_split_fractions

    assert parse_split_fractions("0.8,0.1,0.1") == (0.8, 0.1, 0.1)
    assert parse_split_fractions([0.6, 0.2, 0.2]) == (0.6, 0.2, 0.2)


# ---- validate_params: a library function checked from the declarations


def test_validate_params_checks_and_converts_a_functions_arguments():
    from featurekit.options import validate_params

    @validate_params("compare", n_boot="boot")
    def scored(cache, n_boot=1000, memory_budget_gb=4.0, note="free text"):
        return cache, n_boot, memory_budget_gb, note

    assert scored("a.h5", n_boot=5, memory_budget_gb=2) == (["a.h5"], 5, 2.0, "free text")
    assert scored("a.h5") == (["a.h5"], 1000, 4.0, "free text")  # defaults are not re-checked
    with pytest.raises(FeaturekitError, match=r"n_boot must be an integer \(no quotes\), >= 0\. Received: n_boot=-1"):
        scored("a.h5", n_boot=-1)
    with pytest.raises(FeaturekitError, match=r"memory_budget_gb must be a number"):
        scored("a.h5", 10, float("nan"))
    with pytest.raises(ValueError, match="no parameter or option"):
        validate_params("compare", nboot="boot")(scored)


def test_choices_are_declared_once_and_the_library_agrees():
    """The declared choices are the registries' names (the library's checks import the same tuples)."""
    from featurekit import parameters
    from featurekit.probes import list_probes
    from featurekit.report.formats import FORMATS as RENDERERS

    assert set(parameters.FORMATS) | set(parameters.AUDIT_FORMATS) <= set(RENDERERS)  # every declared format renders
    assert parameters.PROBES == tuple(list_probes(include_optional=True))
    declared = {(o.name, c) for o in OPTIONS for c in o.commands}
    assert options_for("extract")["pooling"].choices == parameters.EXTRACT_POOLINGS
    assert options_for("fit")["probe"].choices == options_for("compare")["probe"].choices == parameters.PROBES
    assert ("precision", "extract") in declared and options_for("extract")["precision"].choices == parameters.PRECISIONS


@pytest.mark.parametrize("command, library, skip", [
    ("extract", "featurekit.extraction.request:ExtractionRequest", ("weights", "engine")),
    ("extract", "featurekit.engines.settings:EngineSettings", ()),
    ("compare", "featurekit.evaluation.compare:compare", ()),
    ("compare", "featurekit.evaluation.grid:ProbeGrid", ()),
    ("fit", "featurekit.evaluation.fitting:fit_probe", ()),
    ("sweep", "featurekit.jobs.sweep:select_on_valid", ()),
    ("sweep", "featurekit.jobs.sweep:learning_curve", ()),
    ("predict", "featurekit.predict:predict", ()),
])
def test_the_library_defaults_are_the_declared_defaults(command, library, skip):
    """The library takes its defaults from featurekit.parameters (or writes False/None/"error"), the options table
    declares them for --help and config files: the two agree, parameter by parameter (`boot` is `n_boot`)."""
    import importlib

    module, name = library.split(":")
    parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    declared = {("n_boot" if key == "boot" else key): value for key, value in defaults(command).items()}
    shared = [key for key in set(parameters) & set(declared) if key not in skip and declared[key] is not None]
    assert len(shared) >= 2, shared
    for key in shared:
        default = parameters[key].default
        if default is inspect.Parameter.empty:  # required in the library: the command line gives one
            continue
        assert (str(default) if isinstance(default, Path) else default) == declared[key], (key, default)
    if "taps" in parameters:  # the request holds the pooling and the weights as tuples
        assert parameters["taps"].default[0].pooling == declared["pooling"]
        assert parameters["weights"].default == (declared["weights"],)


def test_comma_separated_names_are_each_a_choice():
    assert validate("extract", {"pooling": "avg,max"}) == {"pooling": "avg,max"}
    with pytest.raises(FeaturekitError, match="each one of: flatten, avg, max, meanstd, none"):
        validate("extract", {"pooling": "avg,median"})
    with pytest.raises(FeaturekitError, match="probe must be one of: head, logreg"):
        validate("fit", {"probe": "forest"})


def test_every_option_names_known_commands_and_none_declares_a_name_twice():
    for option in OPTIONS:
        assert set(option.commands) <= set(COMMANDS), option.name
    for command in COMMANDS:
        names = [option.name for option in OPTIONS if command in option.commands]
        assert len(names) == len(set(names)), command
