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

from featurekit.config import check_config, resolve_config
from featurekit.errors import FeaturekitError, given
from featurekit.options import HEAD_PARAMETERS, complete, head_params, require


def _joined(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value or "")


def _substitute(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names) if "{" in value else value
    if isinstance(value, list):
        return [_substitute(v, names) for v in value]
    return value


def fit_from_options(options: dict[str, Any], log: Callable[[str], None] = print):
    """`fit_probe` with the options of the `fit` command; the head gets every declared fit-head default.

    Several caches with `fuse` fit one probe on their concatenated features (`featurekit.fusion`).

    Returns:
        The FittedProbe, saved.
    """
    from featurekit.fitting import fit_probe
    from featurekit.fusion import check_fusion_request

    options = complete("fit", options)
    params = head_params() if options["probe"] == "head" else {}
    caches = list(options["cache"])
    check_fusion_request(caches, options["fuse"])
    return fit_probe(caches if options["fuse"] else caches[0], options["probe"], params, out=options["out"],
                     runs_dir=options["runs_dir"], memory_budget_gb=options["memory_budget_gb"], log=log,
                     train_views=options["train_views"])


def fit_head_from_options(options: dict[str, Any], log: Callable[[str], None] = print):
    """`fit_probe` of the head with the options of the `fit_head` command (declared defaults for the rest).

    Returns:
        The FittedProbe, saved.
    """
    from featurekit.fitting import fit_probe

    options = complete("fit_head", options)
    params = head_params(**{name: options[name] for name in HEAD_PARAMETERS})
    return fit_probe(options["cache"], "head", params, out=options["out"], runs_dir=options["runs_dir"],
                     memory_budget_gb=options["memory_budget_gb"], log=log, train_views=options["train_views"])


def run_job(file_config: dict[str, Any], options: dict[str, Any] | None = None, log: Callable[[str], None] = print,
            render: Callable[[list[dict], dict], None] | None = None) -> list[dict[str, Any]]:
    """Run a config's job; returns the compare rows.

    Args:
        file_config: The parsed config file (checked again here, so a dict from Python is held to the
            same rules as a file).
        options: Options of the `run` command (data, progress, results, title ...) overriding the file's.
        log: Where messages go.
        render: Called with (rows, compare options + results and title) to show and write the results.
    """
    from featurekit.compare import compare_from_options
    from featurekit.extract import extract_from_options

    check_config(file_config, str((options or {}).get("config") or "the config"))
    run_options = resolve_config("run", file_config, options or {})
    require("run", run_options)
    run = file_config.get("run", {})
    extract_jobs = run.get("extract", [])
    if not extract_jobs:
        raise FeaturekitError("The config lists no extraction under [[run.extract]].",
                              received=given("config", str(run_options["config"])),
                              fix="Add at least one [[run.extract]] table with a backbone, see configs/default.toml.")
    data = run_options["data"]
    names = {"data_name": Path(data).expanduser().resolve().name}
    progress = run_options["progress"]

    for job in run.get("train_backbone", []):
        _train_backbone_step(file_config, {k: _substitute(v, names) for k, v in job.items()}, data, log, progress)

    caches = []
    for number, job in enumerate(extract_jobs, start=1):
        step_options = resolve_config("extract", file_config, {"data": str(data)},
                                  step={k: _substitute(v, names) for k, v in job.items()})
        what = [step_options["backbone"], _joined(step_options["layer"]), _joined(step_options["pooling"]),
                step_options["preprocessing"]]
        log(f"[bold]extract {number}/{len(extract_jobs)}[/]: {escape(' '.join(str(w) for w in what if w))}")
        for result in extract_from_options(step_options, log=log, progress=progress):
            rate = f", {result.n_computed} computed at {result.images_per_second:.1f} img/s" if result.n_computed else ""
            log(f"  {result.status}: {escape(str(result.cache_path))} ({result.n_images} images{rate}; "
                f"weights: {escape(result.weights_label)})")
            caches.append(result.cache_path)

    compare_options = resolve_config("compare", file_config, {"cache": [str(c) for c in caches]})
    results = run_options["results"]
    results = _substitute(str(results), names) if results is not None else None
    rows = compare_from_options(compare_options, log)
    if render:
        render(rows, {**compare_options, "results": results, "title": run_options["title"]})
    return rows


def _train_backbone_step(file_config: dict[str, Any], job: dict[str, Any], data: str | Path,
                         log: Callable[[str], None], progress: bool) -> None:
    """Train a backbone unless its finished model is already there (then the job reuses it)."""
    from featurekit.train_backbone import finished_model, train_from_options

    options = resolve_config("train_backbone", file_config, {"data": str(data)}, step=job)
    existing = finished_model(options)
    if existing is not None:
        log(f"[bold]train-backbone[/]: {escape(str(existing))} is already trained; reusing it.")
        return
    log(f"[bold]train-backbone[/]: {escape(str(options['backbone']))} at {options['image_size']} px")
    result = train_from_options(options, log=log, progress=progress)
    log(f"  trained: {escape(str(result.model_path))} (best valid accuracy {result.best_valid_accuracy:.3f} at epoch "
        f"{result.best_epoch}, {result.seconds:.0f} s)")
