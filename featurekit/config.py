"""Layered configuration: built-in defaults < `--config FILE.toml` < command-line flags.

A config file has top-level keys shared by every command and one table per command:

    data = "data/faces_sample"
    [extract]
    pooling = "avg"

Keys are the commands' option names in snake_case. The resolved config is stored with every output.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from featurekit.errors import FeaturekitError

# Every option of every command with its built-in default; None means "required" or "backbone's own".
EXTRACT_DEFAULTS = dict(
    data=None, backbone=None, weights="default", image_size=None, layer=None, pooling="flatten",
    preprocessing=None, batch_size=32, dtype="float32", cache=None, cache_dir="cache", overwrite=False,
    split="0.7,0.15,0.15", seed=0, on_missing_weights="error",
)
HEAD_DEFAULTS = dict(cache=None, out=None, runs_dir="runs", epochs=30, units=512, dropout=0.5, learning_rate=1e-3,
                     batch_size=256, patience=5, seed=0, memory_budget_gb=4.0)
FIT_DEFAULTS = dict(cache=None, probe="logreg", out=None, runs_dir="runs", memory_budget_gb=4.0)
TRAIN_BACKBONE_DEFAULTS = dict(data=None, backbone="inceptionv1", epochs=30, image_size=224, batch_size=32,
                               learning_rate=1e-3, patience=5, seed=0, out=None, runs_dir="runs",
                               split="0.7,0.15,0.15", monitor="val_loss", overwrite=False)
COMPARE_DEFAULTS = dict(cache=None, cache_dir="cache", probe=None, runs_dir="runs", refit=False, boot=1000,
                        format="table", out=None, plot=None, memory_budget_gb=4.0, include_rbf=False, head_epochs=30)


def load_config_file(path: str | Path | None) -> dict[str, Any]:
    """Parse a TOML config file ({} when no path is given)."""
    if path is None:
        return {}
    path = Path(path)
    if not path.exists():
        raise FeaturekitError("Config file not found.", received=f"--config {path}",
                              fix="Pass an existing TOML file, e.g. --config configs/default.toml.")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise FeaturekitError(f"Config file is not valid TOML ({error}).", received=f"--config {path}",
                              fix="Fix the syntax; see configs/default.toml for an example.") from None


def resolve_config(command: str, defaults: dict[str, Any], file_config: dict[str, Any],
                   flags: dict[str, Any]) -> dict[str, Any]:
    """Merge defaults, the file's shared keys and its `[command]` table, then flags that were given.

    Args:
        command: The command's table name in the file (e.g. "extract", "fit_head").
        defaults: Every option of the command with its built-in default.
        file_config: The parsed config file.
        flags: Command-line values; None means "not given".

    Raises:
        FeaturekitError: the file's `[command]` table names an option the command does not have.
    """
    table = file_config.get(command, {})
    if not isinstance(table, dict):
        table = {}
    unknown = sorted(set(table) - set(defaults))
    if unknown:
        raise FeaturekitError(
            f"Config table [{command}] has unknown keys: {', '.join(unknown)}.",
            received=", ".join(f"{k} = {table[k]!r}" for k in unknown),
            fix=f"Valid keys: {', '.join(sorted(defaults))}.")
    shared = {k: v for k, v in file_config.items() if k in defaults and not isinstance(v, dict)}
    given = {k: v for k, v in flags.items() if v is not None}
    return {**defaults, **shared, **table, **given}


def parse_split_fractions(text: str | list | tuple) -> tuple[float, float, float]:
    """"0.7,0.15,0.15" (or a list of three numbers) -> (0.7, 0.15, 0.15)."""
    try:
        values = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise FeaturekitError("Split fractions must be numbers.", received=f"--split {text}",
                              fix="Use e.g. --split 0.7,0.15,0.15.") from None
    if len(values) != 3:
        raise FeaturekitError("Split fractions need three numbers: train, valid, test.",
                              received=f"--split {text}", fix="Use e.g. --split 0.7,0.15,0.15.")
    return values  # type: ignore[return-value]
