"""Layered configuration: declared defaults < `--config FILE.toml` < command-line flags.

A config file has top-level keys shared by every command that takes them, and one table per command:

    data = "data/faces_sample"
    [extract]
    pooling = "avg"

Keys are the options of `featurekit.options`, in snake_case. A file is checked whole when it is read:
an unknown key anywhere (a misspelt top-level key included) or a value of the wrong type is an
error naming the key, the file and the expected type. Booleans must be TOML booleans (`true`, not
`"true"`) and numbers must not be quoted. The resolved config is stored with every output.

Relative paths in a file are relative to the file's folder, as in pyproject, pytest and ruff configs:
`data = "../data/faces"` in `configs/x.toml` is `data/faces` from the checkout, wherever the command
runs. `load_config_file` returns them resolved, so every message shows the path that is used.
"""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any, Mapping

from featurekit.parameters import WEIGHTS_KEYWORDS
from featurekit.errors import ConfigFileError, FeaturekitError, given
from featurekit.options import (
    COMMANDS,
    FUSION,
    OPTIONS,
    PATH,
    PATHS,
    WEIGHTS,
    config_keys,
    defaults,
    did_you_mean,
    options_for,
    toml_literal,
    validate,
    validate_params,
)

# Tables that hold lists of steps besides their own options (table -> step -> the command whose config keys
# a step takes, except `data`: a job has one data folder). `[[run.extract]]` and `[[run.train_backbone]]`
# are the job's steps; each `[[sweep.backbone]]` entry is one extraction of the sweep's grid.
STEPS = {"run": {"extract": "extract", "train_backbone": "train_backbone"}, "sweep": {"backbone": "extract"}}

# The keys whose values are paths (a weights value other than a keyword is a file): resolved against the file.
PATH_KEYS = {option.name: option.kind for option in OPTIONS if option.kind in (PATH, PATHS, WEIGHTS, FUSION)}


# Commands that read a config file: each may have a `[command]` table.
CONFIG_COMMANDS = [name for name in COMMANDS if "config" in options_for(name)]
# Keys a config file may set at its top level: any option of a command that reads config files.
SHARED_KEYS = sorted({key for command in CONFIG_COMMANDS for key in config_keys(command)})


def load_config_file(path: str | Path | None) -> dict[str, Any]:
    """Parse and check a TOML config file ({} when no path is given).

    Raises:
        FeaturekitError: a missing file, a folder, a FIFO, invalid TOML, an unknown key or a value of the wrong type.
    """
    if path is None:
        return {}
    path = Path(path)
    received, example = given("config", str(path)), f"e.g. {given('config', 'configs/default.toml')}"
    try:
        mode = path.stat().st_mode
        config = tomllib.loads(path.read_text()) if stat.S_ISREG(mode) else None  # a FIFO would block the read
    except FileNotFoundError:
        raise FeaturekitError("Config file not found.", received=received,
                              fix=f"Pass an existing TOML file, {example}.") from None
    except OSError as error:
        raise FeaturekitError(f"Config file cannot be read ({error.strerror}).", received=received,
                              fix="Check the path and its permissions, or pass another file.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise FeaturekitError(f"Config file is not valid TOML ({error}).", received=received,
                              fix="Fix the syntax; see configs/default.toml for an example.") from None
    if stat.S_ISDIR(mode):
        tomls = sorted(p.name for p in path.glob("*.toml"))[:5]
        inside = f" (it holds {', '.join(tomls)})" if tomls else ""
        raise FeaturekitError(f"The config path is a folder, not a TOML file{inside}.", received=received,
                              fix=f"Pass a file inside it, {example}.")
    if config is None:
        raise FeaturekitError("The config path is not a regular file (a FIFO, socket or device); it is not read.",
                              received=received, fix=f"Pass a TOML file, {example}.")
    check_config(config, str(path))
    return resolve_paths(config, path.parent)


def resolve_paths(config: Mapping[str, Any], folder: str | Path) -> dict[str, Any]:
    """The config with every relative path made relative to `folder` (the config file's), at any depth.

    Paths stay relative when the folder is (`configs/../cache` is `cache`), so outputs record no machine's
    absolute path; absolute paths and the weights keywords (default, imagenet, none) are kept as written.
    """
    def resolve(key: str, value: Any) -> Any:
        if isinstance(value, dict):  # a table, a step or a [[compare.fuse]] group (its `caches` are caches)
            return {k: resolve("cache" if key == "fuse" else k, v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(key, item) for item in value]
        if key not in PATH_KEYS or not isinstance(value, str) or os.path.isabs(value) or (
                PATH_KEYS[key] is WEIGHTS and value in WEIGHTS_KEYWORDS):
            return value
        if key == "test_data" and value.startswith(("real=", "fake=")):  # real=DIR1,fake=DIR2: each folder resolved
            return ",".join(f"{role}={resolve(key, folder_)}" for role, folder_ in
                            (part.split("=", 1) for part in value.split(",")))
        return os.path.normpath(os.path.join(folder, value))

    return {key: resolve(key, value) for key, value in config.items()}


def check_config(config: Mapping[str, Any], source: str = "the config") -> None:
    """Check every key and value of a parsed config against the declared options.

    Args:
        config: The parsed file.
        source: The file's name, for messages.
    """
    for key, value in config.items():
        if key in CONFIG_COMMANDS:
            if not isinstance(value, dict):
                raise ConfigFileError(f"`{key}` in {source} must be a table ([{key}]).",
                                      received=f"{key} = {toml_literal(value)}",
                                      fix=f"Write the command's options under a [{key}] header.")
            _check_table(key, value, source)
        elif key in SHARED_KEYS:
            # A top-level key applies to every command that takes it, so it must suit each of them.
            for command in CONFIG_COMMANDS:
                if key in config_keys(command):
                    validate(command, {key: value}, f"{source} (top level)")
        else:
            raise ConfigFileError(
                f"Unknown top-level key `{key}` in {source}.{did_you_mean(key, SHARED_KEYS + CONFIG_COMMANDS)}",
                received=f"{key} = {toml_literal(value)}",
                fix=f"Top-level keys are options shared by the commands: {', '.join(SHARED_KEYS)}; command tables: "
                    f"{', '.join(f'[{t}]' for t in CONFIG_COMMANDS)}.")


def _check_table(command: str, table: dict[str, Any], source: str) -> None:
    """A `[command]` table: its own options, and each entry of the lists of steps it holds (`[[run.extract]]`)."""
    steps = STEPS.get(command, {})
    for step, step_command in steps.items():
        entries, header = table.get(step, []), f"[[{command}.{step}]]"
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigFileError(f"{source} {header} must be a list of tables.", received=toml_literal(entries),
                                  fix=f"Write each step under its own {header} header.")
        allowed = [k for k in config_keys(step_command) if k != "data"]
        for number, entry in enumerate(entries, start=1):
            validate(step_command, entry, f"{source} {header} entry {number}", keys=allowed)
    validate(command, {k: v for k, v in table.items() if k not in steps}, f"{source} [{command}]")


def resolve_config(command: str, file_config: Mapping[str, Any], flags: Mapping[str, Any],
                   step: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge declared defaults < the file's top-level keys < its `[command]` table < a run step < flags.

    Args:
        command: The command (its table name, e.g. "extract", "fit_head").
        file_config: The parsed config file (checked by `load_config_file`).
        flags: The caller's values; None means "not given".
        step: A `[[run.<command>]]` entry, between the table and the flags.

    Returns:
        Every option of the command, checked and converted.
    """
    given_flags = {k: v for k, v in flags.items() if v is not None}
    return validate(command, {**defaults(command), **set_in_file(command, file_config), **(step or {}), **given_flags})


def set_in_file(command: str, file_config: Mapping[str, Any]) -> dict[str, Any]:
    """The options of `command` that a checked config file sets: its top-level keys, under its `[command]` table."""
    keys = config_keys(command)  # a table's lists of steps (`[[run.extract]]`) are no options of its command
    return {k: v for layer in (file_config, file_config.get(command, {})) for k, v in layer.items() if k in keys}


@validate_params("extract")
def parse_split_fractions(split: str | list | tuple) -> tuple[float, float, float]:
    """"0.7,0.15,0.15" (or a list of three numbers) -> (0.7, 0.15, 0.15).

    Raises:
        FeaturekitError: not three finite, non-negative fractions that sum to 1 (the declared `split`).
    """
    return tuple(float(part) for part in (split.split(",") if isinstance(split, str) else split))  # type: ignore
