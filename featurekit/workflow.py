"""The whole job of a config file: (train backbones) -> extract every listed cache -> fit -> compare.

    python cli.py run --config configs/default.toml [--data DIR]

A `[[run.train_backbone]]` entry trains a backbone first (skipped once its model exists), each
`[[run.extract]]` entry is one extraction (overriding the `[extract]` table), and the caches made are
then compared with the `[compare]` options. Every step resumes or reuses finished work, so running
the same job again only computes what is missing. In strings, `{data_name}` is the data folder's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from rich.markup import escape

from featurekit.config import COMPARE_DEFAULTS, EXTRACT_DEFAULTS, resolve_config
from featurekit.errors import FeaturekitError

RUN_DEFAULTS = dict(results=None, title=None)


def _joined(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value or "")


def _substitute(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names) if "{" in value else value
    if isinstance(value, list):
        return [_substitute(v, names) for v in value]
    return value


def run_job(file_config: dict[str, Any], data: str | Path | None = None, log: Callable[[str], None] = print,
            progress: bool = True, render: Callable[[list[dict], dict], None] | None = None) -> list[dict[str, Any]]:
    """Run a config's job; returns the compare rows.

    Args:
        file_config: The parsed config file.
        data: Data folder overriding the file's `data`.
        log: Where messages go.
        progress: Show progress bars.
        render: Called with (rows, compare options) to show and write the results.
    """
    from featurekit.compare import compare_from_options
    from featurekit.extract import extract_from_options

    run = file_config.get("run", {})
    extract_jobs = run.get("extract", [])
    if not extract_jobs:
        raise FeaturekitError("The config lists no extraction under [[run.extract]].", received="--config",
                              fix="Add at least one [[run.extract]] table with a backbone, see configs/default.toml.")
    data = data or file_config.get("data")
    if not data:
        raise FeaturekitError("No data folder.", received="no --data and no `data` key in the config",
                              fix="Pass --data DIR or set data = \"DIR\" in the config.")
    names = {"data_name": Path(data).expanduser().resolve().name}

    for job in run.get("train_backbone", []):
        _train_backbone_step(file_config, {k: _substitute(v, names) for k, v in job.items()}, data, log, progress)

    caches = []
    for number, job in enumerate(extract_jobs, start=1):
        options = resolve_config("extract", EXTRACT_DEFAULTS, file_config,
                                 {**{k: _substitute(v, names) for k, v in job.items()}, "data": str(data)})
        unknown = sorted(set(job) - set(EXTRACT_DEFAULTS))
        if unknown:
            raise FeaturekitError(f"[[run.extract]] number {number} has unknown keys: {', '.join(unknown)}.",
                                  received=str(job), fix=f"Valid keys: {', '.join(sorted(EXTRACT_DEFAULTS))}.")
        what = [options["backbone"], _joined(options["layer"]), _joined(options["pooling"]), options["preprocessing"]]
        log(f"[bold]extract {number}/{len(extract_jobs)}[/]: {escape(' '.join(w for w in what if w))}")
        for result in extract_from_options(options, log=log, progress=progress):
            rate = f", {result.n_computed} computed at {result.images_per_second:.1f} img/s" if result.n_computed else ""
            log(f"  {result.status}: {escape(str(result.cache_path))} ({result.n_images} images{rate}; "
                f"weights: {escape(result.weights_label)})")
            caches.append(result.cache_path)

    compare_options = resolve_config("compare", COMPARE_DEFAULTS, file_config, {"cache": [str(c) for c in caches]})
    results = _substitute(run.get("results"), names)
    rows = compare_from_options(compare_options, log)
    if render:
        render(rows, {**compare_options, "results": results, "title": run.get("title")})
    return rows


def _train_backbone_step(file_config: dict[str, Any], job: dict[str, Any], data: str | Path,
                         log: Callable[[str], None], progress: bool) -> None:
    """Train a backbone unless its finished model is already there (then the job reuses it)."""
    from featurekit.config import TRAIN_BACKBONE_DEFAULTS
    from featurekit.train_backbone import finished_model, train_from_options

    options = resolve_config("train_backbone", TRAIN_BACKBONE_DEFAULTS, file_config, {**job, "data": str(data)})
    existing = finished_model(options)
    if existing is not None:
        log(f"[bold]train-backbone[/]: {existing} is already trained; reusing it.")
        return
    log(f"[bold]train-backbone[/]: {options['backbone']} at {options['image_size']} px")
    result = train_from_options(options, log=log, progress=progress)
    log(f"  trained: {result.model_path} (best valid accuracy {result.best_valid_accuracy:.3f} at epoch "
        f"{result.best_epoch}, {result.seconds:.0f} s)")
