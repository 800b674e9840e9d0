"""Selection without peeking: a grid of backbones x layers x poolings x probes, chosen on valid, tested once.

    python cli.py sweep --config configs/sweep.toml [--learning-curve]

Each `[[sweep.backbone]]` entry of the config is one extraction (the keys of `extract`; several layers
and poolings come from ONE forward pass), every probe is fitted on every cache (or reused, as `compare`
does), and every row is scored on the VALID split only. The best row by valid ROC AUC (ties: fewer
features, then name) is one candidate; the caches of the top-k rows fused (`featurekit.cache.fusion`) are
another, fitted with every probe of the grid like any other cache; the best of all by valid ROC AUC is the
choice. Only then is
the TEST split touched, once, for the chosen configuration: a table that ranked rows on test would
report the maximum of many noisy test scores, which is optimistic by construction.

With `learning_curve`, the chosen configuration is refitted on 1/8, 1/4, 1/2 and all of the training
split (stratified subsamples, seeded, repeated) and scored on test, which tells whether more data or
better features would pay.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from rich.markup import escape

from featurekit.cache.fusion import open_source
from featurekit.config import check_config, resolve_config
from featurekit.errors import FeaturekitError, WeightsUnavailableError, given
from featurekit.evaluation.compare import row_description
from featurekit.evaluation.grid import ProbeGrid
from featurekit.evaluation.scoring import scored
from featurekit.evaluation.shifted_scoring import score_on_test_sets, valid_and_views_threshold
from featurekit.jobs.workflow import checked_extractions, entry_error, entry_place, extract_step
from featurekit.options import check_value, head_params, options_for, require
from featurekit.rows import TEST_KEYS, SweepResult, image_keys
from featurekit.parameters import MEMORY_BUDGET_GB, N_BOOT, REPEATS, RUNS_DIR, SEED, TOP_K

LEARNING_CURVE_FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1.0)
# The valid figures of a sweep row: `valid_KEY` is the fitted probe's KEY on the valid split.
_VALID_FIGURES = ("roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", "average_precision", "accuracy", "balanced_accuracy")


# --------------------------------------------------------------------------------------------------
# Scoring on valid, choosing, testing once


def _valid_row(fit: Any, n_boot: int) -> dict[str, Any]:
    """One row of valid figures: the fitted probe's own valid scores, at the threshold chosen on valid."""
    metrics = scored(fit.fitted, fit.cache, "valid", n_boot)
    return {
        **row_description(fit.cache), "probe": fit.probe, "n_valid": metrics["n"],
        **{f"valid_{key}": metrics[key] for key in _VALID_FIGURES}, "threshold": fit.fitted.threshold,
        "fit_seconds": fit.fitted.meta["fit_seconds"], "reused": fit.reused,
        "streamed": bool(fit.fitted.meta.get("streamed")), "leaks": fit.leaks, "model_dir": str(fit.fitted.directory),
        "name": f"{fit.cache.name} {fit.probe}", "_source": fit.source, "_fitted": fit.fitted,
    }


def _rank_key(row: dict[str, Any]) -> tuple:
    auc = row["valid_roc_auc"]
    return (-(auc if np.isfinite(auc) else -np.inf), int(row["feature_dim"]), str(row["name"]))


def top_k_caches(rows: Sequence[dict[str, Any]], k: int) -> list[Any]:
    """The caches of the best rows, best first, each once, until k distinct caches (plain caches only)."""
    ranked = [row["_source"] for row in sorted(rows, key=_rank_key) if not isinstance(row["_source"], (list, tuple))]
    return list(dict.fromkeys(ranked))[:k]


def select_on_valid(caches: Sequence[str | Path], probes: Sequence[str],
                    probe_params: dict[str, dict[str, Any]] | None = None, top_k: int = TOP_K,
                    runs_dir: str | Path = RUNS_DIR, refit: bool = False, n_boot: int = N_BOOT,
                    memory_budget_gb: float = MEMORY_BUDGET_GB, audit: bool = True, name: str = "sweep",
                    log: Callable[[str], None] = print, train_views: Sequence[str] | str | None = None) -> SweepResult:
    """Fit (or reuse) every probe on every cache, rank on valid, add the top-k fusion, choose, test once.

    Args:
        caches: Caches of the same images (the sweep's extractions).
        probes: Probe names.
        probe_params: Constructor parameters per probe name.
        top_k: The caches of the best k rows are fused as one more candidate (0 or 1: none).
        runs_dir: Where fitted probes live; fits are shared with `compare` and reused.
        refit: Refit even where a matching fitted probe exists.
        n_boot: Bootstrap resamples for the intervals (valid AUC of every row; test of the choice).
        memory_budget_gb: Larger features are streamed from disk.
        audit: Audit each cache for leaks first (exact duplicates across splits) and warn loudly.
        name: The sweep's name.
        log: Where progress messages go.
        train_views: Views of each cache's train split fitted on beside its clean rows
            (`featurekit.evaluation.train_views`).

    Returns:
        The SweepResult (nothing written; `featurekit.report.write_sweep_results` writes the files).
    """
    if not caches:
        raise FeaturekitError("The sweep has no caches to choose from.", received="no cache",
                              fix="List at least one extraction under [[sweep.backbone]].")
    if not probes:
        raise FeaturekitError("The sweep has no probes.", received=given("probe", list(probes)),
                              fix="List probes, e.g. probe = [\"logreg\", \"linsvm\", \"head\"].")
    grid = ProbeGrid(probes, probe_params, runs_dir, refit, memory_budget_gb, log, train_views, audit)

    def ranked_rows(sources: list[Any]) -> list[dict[str, Any]]:
        # The caches x probes loop is the grid's, shared with `compare`; here every fit becomes a valid row.
        return sorted((_valid_row(fit, n_boot) for fit in grid.fits(sources)), key=_rank_key)

    rows = [{**row, "rank": rank} for rank, row in enumerate(ranked_rows(list(caches)), start=1)]
    notes = [f"LEAK: {', '.join(path.name for path, leaks in grid.leaky.items() if leaks)} hold identical images "
             "in several splits; valid and test figures there are optimistic."] if any(grid.leaky.values()) else []
    if grid.train_views:
        notes.append("trained on the clean train split plus views " + ", ".join(v.name for v in grid.train_views) +
                     " (the learning curve trains on clean rows)")
    group = top_k_caches(rows, top_k) if top_k >= 2 else []
    fusion_rows: list[dict[str, Any]] = []
    if len(group) >= 2:
        # The fusion is one more cache: every probe of the grid is fitted on it, as on the others.
        log(f"fusing the caches of the top {len(group)} rows: {escape(', '.join(Path(p).name for p in group))}")
        fusion_rows = [{**row, "rank": None} for row in ranked_rows([group])]
    elif top_k >= 2:
        notes.append("no fusion candidate: the top rows all come from one cache")
    fusion = next(iter(fusion_rows), None)
    chosen = min([rows[0], *fusion_rows[:1]], key=_rank_key)
    log(f"chosen on valid: {escape(chosen['name'])} (valid ROC AUC {chosen['valid_roc_auc']:.3f}); "
        "scoring it on test once.")
    return SweepResult(name, rows, fusion, chosen, chosen_on_test(chosen, n_boot, log), notes=notes,
                       fusion_rows=fusion_rows)


def chosen_on_test(chosen: dict[str, Any], n_boot: int, log: Callable[[str], None] = print,
                   threshold: float | None = None) -> dict[str, Any]:
    """The chosen row's figures on the test split (the TEST_KEYS, and the private keys behind its pictures), at its
    threshold chosen on valid unless another is given (one chosen on valid plus its views): test is read for the
    chosen configuration only, after the choice."""
    with open_source(chosen["_source"], log) as cache:
        test = scored(chosen["_fitted"], cache, "test", n_boot, threshold)
        return {**{k: test[k] for k in TEST_KEYS}, "_scores": test["_scores"], "_labels": test["_labels"],
                **image_keys(cache, "test")}


# --------------------------------------------------------------------------------------------------
# Learning curve


def learning_curve(source: str | Path | Sequence[str | Path], probe: str, params: dict[str, Any] | None = None,
                   repeats: int = REPEATS, seed: int = SEED, memory_budget_gb: float = MEMORY_BUDGET_GB,
                   log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Refit one configuration on growing stratified subsamples of train (the LEARNING_CURVE_FRACTIONS of it);
    score each on test.

    Each refit chooses its threshold on the full valid split (and early-stops there, for the head), as
    every fit does. Repeats draw other subsamples (seed + repeat) and reseed probes that have a seed; at
    the full split only the probe's own seed varies, so a deterministic probe gives one value.

    Args:
        source: The chosen cache, or a fusion (a list of caches).
        probe: Probe name.
        params: Its constructor parameters.
        repeats: Fits per fraction.
        seed: Seed of the first repeat's subsample.
        memory_budget_gb: The three splits must fit in this; larger features are refused here.
        log: Where progress messages go.

    Returns:
        One dict per fraction: fraction, n_train, repeats, test ROC AUC and accuracy (mean, sd, each value);
        a size the probe cannot be fitted on (kNN with fewer rows than neighbours) has `error` instead.
    """
    repeats = check_value(options_for("sweep")["repeats"], repeats, parameter="repeats")  # an integer >= 1
    with open_source(source, log) as cache:  # the three splits in memory, refused beyond the memory budget
        needed = sum(cache.nbytes(split) for split in ("train", "valid", "test"))
        if needed > memory_budget_gb * 2**30:
            raise FeaturekitError(
                f"The learning curve holds the features of all three splits in memory ({needed / 2**30:.1f} GiB), "
                f"more than the memory budget.", received=given("memory_budget_gb", memory_budget_gb),
                fix="Raise the memory budget, or run the learning curve on a smaller tap or pooling.")
        splits = {split: cache.load(split) for split in ("train", "valid", "test")}
    points = []
    for fraction in LEARNING_CURVE_FRACTIONS:
        size = int(round(fraction * len(splits["train"][1])))
        try:
            point = _curve_point(splits, probe, params or {}, size, repeats, seed)
        except ValueError as error:  # too few rows for this probe (kNN's neighbours, a class-stratified split)
            log(f"learning curve: {probe} cannot be fitted on {size} training images ({escape(str(error))}); skipped.")
            points.append({"fraction": float(fraction), "n_train": size, "repeats": 0, "error": str(error)})
            continue
        log(f"learning curve: {point['n_train']} training images, test ROC AUC {point['test_roc_auc_mean']:.3f} +- "
            f"{np.std(point['test_roc_auc']):.3f}")
        points.append({"fraction": float(fraction), **point})
    return points


def _curve_point(splits: dict[str, tuple[np.ndarray, np.ndarray]], probe: str, params: dict[str, Any], size: int,
                 repeats: int, seed: int) -> dict[str, Any]:
    """Test figures of `repeats` fits on stratified subsamples of `size` training rows (seed + repeat)."""
    from sklearn.model_selection import train_test_split

    from featurekit.evaluation.fitting import fit_estimator
    from featurekit.metrics import accuracy, choose_threshold, roc_auc
    from featurekit.probes import fake_scores, get_probe_spec

    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = splits["train"], splits["valid"], splits["test"]
    # Probes with a seed of their own (the head, the linear SVM) are reseeded with each repeat.
    seeded = "random_state" in inspect.signature(get_probe_spec(probe).factory).parameters
    all_rows = np.arange(len(y_train))
    figures = {"test_roc_auc": [], "test_accuracy": []}
    for repeat in range(repeats):
        rows = all_rows
        if size < len(y_train):
            rows = np.sort(train_test_split(all_rows, train_size=size, stratify=y_train, random_state=seed + repeat)[0])
        estimator = fit_estimator(probe, {**params, "random_state": seed + repeat} if seeded else params,
                                  x_train[rows], y_train[rows], x_valid, y_valid)
        threshold = choose_threshold(y_valid, fake_scores(estimator, x_valid))
        scores = fake_scores(estimator, x_test)
        figures["test_roc_auc"].append(float(roc_auc(y_test, scores)))
        figures["test_accuracy"].append(float(accuracy(y_test, scores, threshold)))
    summary = {f"{name}_{statistic}": value for name, values in figures.items() for statistic, value in
               (("mean", float(np.mean(values))), ("sd", float(np.std(values, ddof=1)) if repeats > 1 else 0.0))}
    return {"n_train": len(rows), "repeats": repeats, **summary, **figures}


# --------------------------------------------------------------------------------------------------
# The whole sweep from a config


def _extract_grid(config: dict[str, Any], resolved: dict[str, Any], source: str, log: Callable[[str], None]
                  ) -> tuple[list[Path], list[str]]:
    """One `extract` per `[[sweep.backbone]]` entry (all its layers and poolings in one pass).

    Every entry is checked before the first is extracted. An entry whose weights cannot be had is skipped with a
    warning (the grid runs with the rest) unless `on_missing_weights` is "error"; any other error names the
    config file and the entry.

    Returns:
        The caches, and a note per skipped entry.
    """
    entries = (config.get("sweep") or {}).get("backbone") or []
    if not entries:
        raise FeaturekitError(f"The sweep's config {source} lists no [[sweep.backbone]] entry.", received="no entry",
                              fix="Add [[sweep.backbone]] tables with backbone, weights, layer, pooling and "
                                  "image_size: see configs/sweep.toml.")
    steps = checked_extractions(entries, config, resolved["data"], "sweep.backbone", source)
    caches: list[Path] = []
    skipped: list[str] = []
    for number, (entry, options) in enumerate(zip(entries, steps), start=1):
        place = entry_place("sweep.backbone", number, entry, source)
        try:
            caches += extract_step(options, f"sweep extract {number}/{len(entries)}", log, resolved["progress"])
        except WeightsUnavailableError as error:
            if resolved["on_missing_weights"] == "error":
                error.fix = _weights_fix(entry)
                raise entry_error(error, place, entry) from None
            skipped.append(f"skipped {place}: {error.problem} {_weights_fix(entry)} To stop instead of skipping, "
                           "set on_missing_weights = \"error\" in [sweep].")
            log(f"[bold yellow]WARNING[/]: {escape(skipped[-1])}")
        except FeaturekitError as error:
            raise entry_error(error, place, entry) from None
    if not caches:
        raise FeaturekitError(f"No entry of the sweep {source} could be extracted.", received="; ".join(skipped),
                              fix="Supply the weights files the entries name (see the warnings above).")
    return list(dict.fromkeys(caches)), skipped


def _weights_fix(entry: dict[str, Any]) -> str:
    """How to supply an entry's weights, in the config's own terms (the sweep has no weights flag)."""
    return ("To include it, name a weights file you have in that entry's `weights` list (e.g. weights = "
            "[\"imagenet\", \"path/to/file.weights.h5\"]; the `backbones` command with `files` lists the files "
            "featurekit knows, with their sha256 and licence), or, on a machine that is online, let Keras download the "
            "ImageNet file into its cache (~/.keras/models). The entry has weights = "
            f"{entry.get('weights', 'default')!r}.")


def _report_elsewhere(result: SweepResult, resolved: dict[str, Any], log: Callable[[str], None]) -> None:
    """After the choice: with `threshold_on` "valid+views", the choice's threshold chosen again on valid plus its
    views (and its test figures at it); then the choice on each view of the test split and each other test set."""
    chosen, threshold = result.chosen, None
    if resolved["threshold_on"] == "valid+views":
        threshold = valid_and_views_threshold(chosen["_source"], chosen["_fitted"], resolved["view"] or [], log=log)
        result.test = chosen_on_test(chosen, resolved["boot"], log, threshold)
        result.threshold_on = "valid+views"
    if resolved["view"] or resolved["test_data"]:
        log("scoring the choice on views and other test sets (reported only: the choice was made on valid)")
        result.test_sets = score_on_test_sets(chosen["_source"], chosen["_fitted"], resolved["test_data"] or [],
                                              resolved["boot"], log, views=resolved["view"] or [], threshold=threshold)


def check_name(name: str) -> str:
    """A sweep's name is a name, not a path: it becomes results-dir/sweep-NAME.md, nothing else.

    Raises:
        FeaturekitError: a path separator, "..", a leading dot, or other than letters, digits, spaces, ._-.
    """
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_. -]*", name) or ".." in name:
        raise FeaturekitError(
            "A sweep's name must be a plain name (letters, digits, spaces, '.', '_' and '-'; no path separator, no "
            "'..', no leading dot): it names the results files inside the results folder.",
            received=given("name", name), fix="Use e.g. faces_grid, and choose the folder with results_dir.")
    return name


def sweep(config: dict[str, Any], options: dict[str, Any], log: Callable[[str], None] = print) -> SweepResult:
    """Run a sweep config: extract the grid, fit every probe, choose on valid, test once.

    Args:
        config: The parsed config file (checked again here, so a dict from Python is held to the same rules).
        options: Options of the `sweep` command (data, learning_curve, top_k ...) overriding the file's.
        log: Where messages go.

    Returns:
        The SweepResult (`featurekit.report.write_sweep_results` writes its files).
    """
    from featurekit.probes import list_probes

    source = str(options.get("config") or "the config")
    check_config(config, source)
    resolved = resolve_config("sweep", config, options)
    require("sweep", resolved)
    name = check_name(resolved["name"] or Path(resolved["config"]).stem)  # config is declared with a default
    probes = list(resolved["probe"] or list_probes())  # declared choices: checked with the options
    caches, skipped = _extract_grid(config, resolved, source, log)
    params = {"head": head_params(epochs=resolved["head_epochs"])}
    result = select_on_valid(caches, probes, params, top_k=resolved["top_k"], runs_dir=resolved["runs_dir"],
                             refit=resolved["refit"], n_boot=resolved["boot"],
                             memory_budget_gb=resolved["memory_budget_gb"], audit=resolved["audit"], name=name, log=log,
                             train_views=resolved["train_views"])
    result.notes += skipped
    _report_elsewhere(result, resolved, log)
    if resolved["learning_curve"]:
        chosen = result.chosen
        result.learning_curve = learning_curve(chosen["_source"], chosen["probe"], params.get(chosen["probe"], {}),
                                               repeats=resolved["repeats"], seed=resolved["seed"],
                                               memory_budget_gb=resolved["memory_budget_gb"], log=log)
    return result
