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

from featurekit.cache.fusion import check_fusion_request
from featurekit.config import check_config, resolve_config
from featurekit.errors import FeaturekitError, given
from featurekit.evaluation.compare import compare_from_options
from featurekit.options import complete, head_params, name_list, require


def _joined(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value or "")


def _substitute(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**names) if "{" in value else value
    if isinstance(value, list):
        return [_substitute(v, names) for v in value]
    return value


def entry_error(error: FeaturekitError, where: str, entry: dict[str, Any]) -> FeaturekitError:
    """The same error (of the same type) about an entry of a config file: it names the file and the entry
    (`where`) and shows the entry as written (the library's messages already name its keys as parameters)."""
    written = ", ".join(f"{key} = {value!r}" for key, value in entry.items())
    return type(error)(f"{where}: {error.problem}", received=f"{{{written}}}", fix=error.fix)


def checked_extractions(entries: list[dict[str, Any]], file_config: dict[str, Any], data: str | Path,
                        table: str, source: str) -> list[dict[str, Any]]:
    """The `extract` options of every entry of a grid, each resolved and its backbone and pooling names checked,
    so that a bad entry stops the job before ANY entry is extracted.

    Args:
        entries: The `[[run.extract]]` or `[[sweep.backbone]]` tables (placeholders already substituted).
        file_config: The parsed config file (its `[extract]` table and top-level keys apply to every entry).
        data: The data folder.
        table: The entries' TOML name, e.g. "sweep.backbone", for messages.
        source: The config file's name, for messages.

    Raises:
        FeaturekitError: naming the file and the entry (its number and backbone).
    """
    resolved = []
    for number, entry in enumerate(entries, start=1):
        try:
            options = resolve_config("extract", file_config, {"data": str(data)}, step=entry)
            _check_names(options)
        except FeaturekitError as error:
            raise entry_error(error, entry_place(table, number, entry, source), entry) from None
        resolved.append(options)
    return resolved


def entry_place(table: str, number: int, entry: dict[str, Any], source: str) -> str:
    """"[[sweep.backbone]] entry 2 (backbone vgg16) of configs/sweep.toml"."""
    backbone = f" (backbone {entry['backbone']})" if entry.get("backbone") else ""
    return f"[[{table}]] entry {number}{backbone} of {source}"


def _check_names(options: dict[str, Any]) -> None:
    """The backbone exists and the entry's request is one it takes (each registry entry checks its own)."""
    from featurekit.backbones import get_spec

    if not options.get("backbone"):
        raise FeaturekitError("The entry names no backbone.", received="no backbone key",
                              fix='Add backbone = "NAME" (the `backbones` command lists them).')
    get_spec(options["backbone"]).check_request(options["image_size"], name_list(options["pooling"]),
                                                options["preprocessing"], options["precision"], options["weights"])


def fit_from_options(options: dict[str, Any], log: Callable[[str], None] = print):
    """`fit_probe` with the options of the `fit` command; the head gets every declared fit-head default.

    Several caches with `fuse` fit one probe on their concatenated features (`featurekit.cache.fusion`).

    Returns:
        The FittedProbe, saved.
    """
    from featurekit.evaluation.fitting import fit_probe

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
    from featurekit.evaluation.fitting import fit_probe

    options = complete("fit_head", options)
    params = head_params(**options)  # it takes the fit-head options by their names and leaves the others
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
    source = str(run_options["config"])
    # Every name of the whole job is checked before anything is trained or extracted (probe names are declared
    # choices: check_config checked them).
    steps = checked_extractions([{k: _substitute(v, names) for k, v in job.items()} for job in extract_jobs],
                                file_config, data, "run.extract", source)

    for job in run.get("train_backbone", []):
        _train_backbone_step(file_config, {k: _substitute(v, names) for k, v in job.items()}, data, log, progress)

    caches = []
    for number, (job, options) in enumerate(zip(extract_jobs, steps), start=1):
        try:
            caches += extract_step(options, f"extract {number}/{len(steps)}", log, progress)
        except FeaturekitError as error:
            raise entry_error(error, entry_place("run.extract", number, job, source), job) from None
    compare_options = resolve_config("compare", file_config, {"cache": [str(c) for c in caches]})
    compare_options["data"] = None  # exactly the caches this job made (a top-level `data` is not a filter here)
    results = run_options["results"] and _substitute(str(run_options["results"]), names)
    rows = compare_from_options(compare_options, log)
    if render:
        render(rows, {**compare_options, "results": results, "title": run_options["title"]})
    return rows


def extract_step(options: dict[str, Any], title: str, log: Callable[[str], None], progress: bool) -> list[Path]:
    """One extraction of a job (all its layers and poolings in one pass), announced and summarised: its caches."""
    from featurekit.extraction.extract import extract_from_options
    from featurekit.extraction.progress import rich_progress_bar

    what = [options["backbone"], _joined(options["layer"]), _joined(options["pooling"]), options["preprocessing"],
            f"{options['image_size']}px" if options["image_size"] else ""]
    log(f"[bold]{escape(title)}[/]: {escape(' '.join(str(w) for w in what if w))}")
    caches = []
    for result in extract_from_options(options, log=log, progress=rich_progress_bar if progress else None):
        rate = f", {result.n_computed} computed at {result.images_per_second:.1f} img/s" if result.n_computed else ""
        log(f"  {result.status}: {escape(str(result.cache_path))} ({result.n_images} images{rate}; "
            f"weights: {escape(result.weights_label)})")
        caches.append(result.cache_path)
    return caches


def _train_backbone_step(file_config: dict[str, Any], job: dict[str, Any], data: str | Path,
                         log: Callable[[str], None], progress: bool) -> None:
    """Train a backbone unless its finished model is already there (then the job reuses it)."""
    from featurekit.training.runner import finished_model, train_from_options

    options = resolve_config("train_backbone", file_config, {"data": str(data)}, step=job)
    existing = finished_model(options)
    if existing is not None:
        log(f"[bold]train-backbone[/]: {escape(str(existing))} is already trained; reusing it.")
        return
    log(f"[bold]train-backbone[/]: {escape(str(options['backbone']))} at {options['image_size']} px")
    result = train_from_options(options, log=log, progress=progress)
    log(f"  trained: {escape(str(result.model_path))} (best valid accuracy {result.best_valid_accuracy:.3f} at epoch "
        f"{result.best_epoch}, {result.seconds:.0f} s)")
