"""Selection without peeking: a grid of backbones x layers x poolings x probes, chosen on valid, tested once.

    python cli.py sweep --config configs/sweep.toml [--learning-curve]

Each `[[sweep.backbone]]` entry of the config is one extraction (the keys of `extract`; several layers
and poolings come from ONE forward pass), every probe is fitted on every cache (or reused, as `compare`
does), and every row is scored on the VALID split only. The best row by valid ROC AUC (ties: fewer
features, then name) is one candidate; the caches of the top-k rows fused (`featurekit.fusion`) are
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from rich.markup import escape

from featurekit.errors import FeaturekitError, given
from featurekit.options import default as declared

LEARNING_CURVE_FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1.0)
SELECTION_RULE = ("chosen on valid ROC AUC (ties: fewer features, then name); the fused caches of the top-k rows, "
                  "under every probe, are more candidates; test reported once, for the chosen configuration only")
# Columns of a sweep row: valid figures only. No test column may ever be added here.
VALID_ROW_KEYS = (
    "rank", "cache", "backbone", "weights_label", "random_features", "layer", "pooling", "image_size",
    "preprocessing", "feature_dim", "probe", "n_valid", "valid_roc_auc", "valid_roc_auc_ci_low",
    "valid_roc_auc_ci_high", "valid_average_precision", "valid_accuracy", "valid_balanced_accuracy", "threshold",
    "fit_seconds", "reused", "streamed", "leaks", "model_dir",
)
TEST_KEYS = ("n", "n_fake", "threshold", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "roc_auc",
             "roc_auc_ci_low", "roc_auc_ci_high", "average_precision", "accuracy_real", "accuracy_fake",
             "balanced_accuracy", "eer", "tpr_at_1pct_fpr", "f1", "collapsed")


@dataclass
class SweepResult:
    """What a sweep found.

    Attributes:
        name: The sweep's name (results file names).
        rows: One row per cache x probe with VALID metrics only, best first (`rank` 1).
        fusion: The best of the top-k fusion's rows (valid metrics), or None when there was none.
        chosen: The chosen row (one of `rows`, or `fusion`).
        test: Test metrics of the chosen configuration: computed once, after the choice.
        learning_curve: Points of the learning curve (test figures by training size), or None.
        notes: What the reader should know (leaks, a fusion that left rows out ...).
    """

    name: str
    rows: list[dict[str, Any]]
    fusion: dict[str, Any] | None
    chosen: dict[str, Any]
    test: dict[str, Any]
    learning_curve: list[dict[str, Any]] | None = None
    notes: list[str] = field(default_factory=list)
    fusion_rows: list[dict[str, Any]] = field(default_factory=list)  # the fusion under every probe, best first

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the valid table, the fusion candidate, the choice, and the test figures apart."""
        return {
            "name": self.name, "selection": SELECTION_RULE,
            "rows": [public(row) for row in self.rows],
            "fusion_candidate": public(self.fusion) if self.fusion else None,
            "fusion_rows": [public(row) for row in self.fusion_rows],
            "chosen": public(self.chosen),
            "test_of_chosen": {key: self.test.get(key) for key in TEST_KEYS},
            "learning_curve": self.learning_curve, "notes": self.notes,
        }


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A row's VALID_ROW_KEYS, as plain values (no private fitted models or scores)."""
    return {key: (row[key].item() if isinstance(row.get(key), np.generic) else row.get(key)) for key in VALID_ROW_KEYS}


# --------------------------------------------------------------------------------------------------
# Scoring on valid, choosing, testing once


def _valid_row(source: Any, cache: Any, probe: str, fitted: Any, reused: bool, leaks: bool | None,
               n_boot: int) -> dict[str, Any]:
    """One row of valid figures: the fitted probe's own valid scores, at the threshold chosen on valid."""
    from featurekit.compare import row_description
    from featurekit.fitting import split_scores
    from featurekit.metrics import evaluate

    scores, labels = split_scores(fitted, cache, "valid")
    metrics = evaluate(labels, scores, fitted.threshold, n_boot=n_boot)
    description = row_description(source, cache)
    return {
        **description, "probe": probe, "n_valid": metrics["n"], "valid_roc_auc": metrics["roc_auc"],
        "valid_roc_auc_ci_low": metrics["roc_auc_ci_low"], "valid_roc_auc_ci_high": metrics["roc_auc_ci_high"],
        "valid_average_precision": metrics["average_precision"], "valid_accuracy": metrics["accuracy"],
        "valid_balanced_accuracy": metrics["balanced_accuracy"], "threshold": fitted.threshold,
        "fit_seconds": fitted.meta["fit_seconds"], "reused": reused, "streamed": bool(fitted.meta.get("streamed")),
        "leaks": leaks, "model_dir": str(fitted.directory), "name": f"{description['cache']} {probe}",
        "_source": source, "_fitted": fitted,
    }


def _rank_key(row: dict[str, Any]) -> tuple:
    auc = row["valid_roc_auc"]
    return (-(auc if np.isfinite(auc) else -np.inf), int(row["feature_dim"]), str(row["name"]))


def top_k_caches(rows: Sequence[dict[str, Any]], k: int) -> list[Any]:
    """The caches of the best rows, best first, each once, until k distinct caches (plain caches only)."""
    chosen: list[Any] = []
    for row in sorted(rows, key=_rank_key):
        source = row["_source"]
        if isinstance(source, (list, tuple)) or source in chosen:
            continue
        chosen.append(source)
        if len(chosen) == k:
            break
    return chosen


def select_on_valid(
    caches: Sequence[str | Path],
    probes: Sequence[str],
    probe_params: dict[str, dict[str, Any]] | None = None,
    top_k: int = declared("sweep", "top_k"),
    runs_dir: str | Path = declared("sweep", "runs_dir"),
    refit: bool = declared("sweep", "refit"),
    n_boot: int = declared("sweep", "boot"),
    memory_budget_gb: float = declared("sweep", "memory_budget_gb"),
    audit: bool = declared("sweep", "audit"),
    name: str = "sweep",
    log: Callable[[str], None] = print,
    train_views: Sequence[str] | str | None = None,
) -> SweepResult:
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
        train_views: Views of each cache's train split fitted on beside its clean rows (`featurekit.train_views`).

    Returns:
        The SweepResult (nothing written; `sweep` writes the files).
    """
    from featurekit.compare import fitted_probe, leaking_caches, source_leaks
    from featurekit.fitting import split_scores
    from featurekit.fusion import open_source
    from featurekit.metrics import evaluate
    from featurekit.probes import get_probe_spec
    from featurekit.train_views import open_training_source, parse_train_views

    if not caches:
        raise FeaturekitError("The sweep has no caches to choose from.", received="no cache",
                              fix="List at least one extraction under [[sweep.backbone]].")
    if not probes:
        raise FeaturekitError("The sweep has no probes.", received=given("probe", list(probes)),
                              fix="List probes, e.g. probe = [\"logreg\", \"linsvm\", \"head\"].")
    for probe in probes:
        get_probe_spec(probe)  # unknown names fail before any work
    train_views = parse_train_views(train_views)  # so do wrong view texts
    probe_params = probe_params or {}
    leaky = leaking_caches(list(caches), log) if audit else {}
    notes = []
    if any(leaky.values()):
        notes.append("LEAK: " + ", ".join(Path(p).name for p, leaks in leaky.items() if leaks) +
                     " hold identical images in several splits; valid and test figures there are optimistic.")
    if train_views:
        notes.append("trained on the clean train split plus views " + ", ".join(v.name for v in train_views) +
                     " (the learning curve trains on clean rows)")
    rows = []
    for cache_path in caches:
        with open_training_source(cache_path, train_views, log=log) as cache:
            cache.require_splits()
            for probe in probes:
                fitted, reused = fitted_probe(cache_path, cache, probe, probe_params.get(probe, {}), runs_dir, refit,
                                              memory_budget_gb, log)
                rows.append(_valid_row(cache_path, cache, probe, fitted, reused,
                                       source_leaks(cache_path, leaky) if audit else None, n_boot))
    rows.sort(key=_rank_key)
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    best = rows[0]
    fusion = None
    group = top_k_caches(rows, top_k) if top_k >= 2 else []
    fusion_rows: list[dict[str, Any]] = []
    if len(group) >= 2:
        # The fusion is one more cache: every probe of the grid is fitted on it, as on the others.
        log(f"fusing the caches of the top {len(group)} rows: {escape(', '.join(Path(p).name for p in group))}")
        with open_training_source(group, train_views, log=log) as fused:
            fused.require_splits()
            for probe in probes:
                fitted, reused = fitted_probe(group, fused, probe, probe_params.get(probe, {}), runs_dir, refit,
                                              memory_budget_gb, log)
                row = _valid_row(group, fused, probe, fitted, reused,
                                 source_leaks(group, leaky) if audit else None, n_boot)
                row["rank"] = None
                fusion_rows.append(row)
        fusion_rows.sort(key=_rank_key)
        fusion = fusion_rows[0]
    elif top_k >= 2:
        notes.append("no fusion candidate: the top rows all come from one cache")
    candidates = [best] + ([fusion] if fusion else [])
    chosen = min(candidates, key=_rank_key)
    log(f"chosen on valid: {escape(chosen['name'])} (valid ROC AUC {chosen['valid_roc_auc']:.3f}); "
        "scoring it on test once.")
    with open_source(chosen["_source"], log) as cache:
        scores, labels = split_scores(chosen["_fitted"], cache, "test")
    test = evaluate(labels, scores, chosen["_fitted"].threshold, n_boot=n_boot)
    return SweepResult(name, rows, fusion, chosen, {k: test[k] for k in TEST_KEYS}, notes=notes,
                       fusion_rows=fusion_rows)


# --------------------------------------------------------------------------------------------------
# Learning curve


def _seeded_params(probe: str, params: dict[str, Any], seed: int) -> dict[str, Any]:
    """The probe's parameters with its own seed set, where it has one (the head, the linear SVM)."""
    from featurekit.probes import get_probe_spec

    accepted = inspect.signature(get_probe_spec(probe).factory).parameters
    return {**params, "random_state": seed} if "random_state" in accepted else dict(params)


def learning_curve(
    source: str | Path | Sequence[str | Path],
    probe: str,
    params: dict[str, Any] | None = None,
    fractions: Sequence[float] = LEARNING_CURVE_FRACTIONS,
    repeats: int = declared("sweep", "repeats"),
    seed: int = declared("sweep", "seed"),
    memory_budget_gb: float = declared("sweep", "memory_budget_gb"),
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Refit one configuration on growing stratified subsamples of train; score each on test.

    Each refit chooses its threshold on the full valid split (and early-stops there, for the head), as
    every fit does. Repeats draw other subsamples (seed + repeat) and reseed probes that have a seed; at
    the full split only the probe's own seed varies, so a deterministic probe gives one value.

    Args:
        source: The chosen cache, or a fusion (a list of caches).
        probe: Probe name.
        params: Its constructor parameters.
        fractions: Fractions of the train split.
        repeats: Fits per fraction.
        seed: Seed of the first repeat's subsample.
        memory_budget_gb: The three splits must fit in this; larger features are refused here.
        log: Where progress messages go.

    Returns:
        One dict per fraction: fraction, n_train, repeats, test ROC AUC and accuracy (mean, sd, each value);
        a size the probe cannot be fitted on (kNN with fewer rows than neighbours) has `error` instead.
    """
    from sklearn.model_selection import train_test_split

    from featurekit.fitting import fit_estimator
    from featurekit.fusion import open_source
    from featurekit.metrics import accuracy, choose_threshold, roc_auc
    from featurekit.probes import fake_scores

    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise FeaturekitError("The learning curve needs at least one repeat.", received=given("repeats", repeats),
                              fix=f"Use e.g. {given('repeats', 3)}.")
    with open_source(source, log) as cache:
        needed = sum(cache.nbytes(split) for split in ("train", "valid", "test"))
        if needed > memory_budget_gb * 2**30:
            raise FeaturekitError(
                f"The learning curve holds the features of all three splits in memory ({needed / 2**30:.1f} GiB), "
                f"more than the memory budget.", received=given("memory_budget_gb", memory_budget_gb),
                fix="Raise the memory budget, or run the learning curve on a smaller tap or pooling.")
        x_train, y_train = cache.load("train")
        x_valid, y_valid = cache.load("valid")
        x_test, y_test = cache.load("test")
    params = dict(params or {})
    points = []
    all_rows = np.arange(len(y_train))
    for fraction in fractions:
        size = int(round(fraction * len(y_train)))
        aucs, accuracies, sizes = [], [], []
        try:
            for repeat in range(repeats):
                if size < len(y_train):
                    rows, _ = train_test_split(all_rows, train_size=size, stratify=y_train,
                                               random_state=seed + repeat)
                    rows = np.sort(rows)
                else:
                    rows = all_rows
                estimator = fit_estimator(probe, _seeded_params(probe, params, seed + repeat), x_train[rows],
                                          y_train[rows], x_valid, y_valid)
                threshold = choose_threshold(y_valid, fake_scores(estimator, x_valid))
                scores = fake_scores(estimator, x_test)
                aucs.append(roc_auc(y_test, scores))
                accuracies.append(accuracy(y_test, scores, threshold))
                sizes.append(len(rows))
        except ValueError as error:  # too few rows for this probe (kNN's neighbours, a class-stratified split)
            log(f"learning curve: {probe} cannot be fitted on {size} training images ({escape(str(error))}); skipped.")
            points.append({"fraction": float(fraction), "n_train": size, "repeats": 0, "error": str(error)})
            continue
        log(f"learning curve: {sizes[0]} training images, test ROC AUC {np.mean(aucs):.3f} +- {np.std(aucs):.3f}")
        points.append({
            "fraction": float(fraction), "n_train": int(sizes[0]), "repeats": repeats,
            "test_roc_auc_mean": float(np.mean(aucs)), "test_roc_auc_sd": float(np.std(aucs, ddof=1) if repeats > 1 else 0.0),
            "test_accuracy_mean": float(np.mean(accuracies)),
            "test_accuracy_sd": float(np.std(accuracies, ddof=1) if repeats > 1 else 0.0),
            "test_roc_auc": [float(a) for a in aucs], "test_accuracy": [float(a) for a in accuracies],
        })
    return points


def gain_per_doubling(points: Sequence[dict[str, Any]]) -> float | None:
    """Least-squares slope of mean test ROC AUC against log2(training images): the gain per doubling."""
    points = [p for p in points if "error" not in p]
    if len(points) < 2:
        return None
    x = np.log2([p["n_train"] for p in points])
    y = np.array([p["test_roc_auc_mean"] for p in points])
    return float(np.polyfit(x, y, 1)[0])


# --------------------------------------------------------------------------------------------------
# The whole sweep from a config


def _extract_grid(config: dict[str, Any], data: str | Path, progress: bool, log: Callable[[str], None]) -> list[Path]:
    """One `extract` per `[[sweep.backbone]]` entry (all its layers and poolings in one pass): the caches."""
    from featurekit.config import resolve_config
    from featurekit.extract import extract_from_options

    entries = (config.get("sweep") or {}).get("backbone") or []
    if not entries:
        raise FeaturekitError("The sweep's config lists no [[sweep.backbone]] entry.", received="no entry",
                              fix="Add [[sweep.backbone]] tables with backbone, weights, layer, pooling and "
                                  "image_size: see configs/sweep.toml.")
    caches: list[Path] = []
    for number, entry in enumerate(entries, start=1):
        options = resolve_config("extract", config, {"data": str(data)}, step=entry)
        what = [options["backbone"], options["layer"], options["pooling"], options["image_size"]]
        log(f"[bold]sweep extract {number}/{len(entries)}[/]: "
            f"{escape(' '.join(str(w) if not isinstance(w, list) else ','.join(map(str, w)) for w in what if w))}")
        for result in extract_from_options(options, log=log, progress=progress):
            log(f"  {result.status}: {escape(str(result.cache_path))} ({result.n_images} images; weights: "
                f"{escape(result.weights_label)})")
            caches.append(result.cache_path)
    return list(dict.fromkeys(caches))


def sweep(config: dict[str, Any], options: dict[str, Any] | None = None, log: Callable[[str], None] = print
          ) -> SweepResult:
    """Run a sweep config: extract the grid, fit every probe, choose on valid, test once.

    Args:
        config: The parsed config file (checked again here, so a dict from Python is held to the same rules).
        options: Options of the `sweep` command (data, learning_curve, top_k ...) overriding the file's.
        log: Where messages go.

    Returns:
        The SweepResult (`featurekit.report.write_sweep_results` writes its files).
    """
    from featurekit.config import check_config, resolve_config
    from featurekit.options import head_params, require
    from featurekit.probes import list_probes

    options = dict(options or {})
    source = str(options.get("config") or "the config")
    check_config(config, source)
    resolved = resolve_config("sweep", config, options)
    require("sweep", resolved)
    name = resolved["name"] or (Path(resolved["config"]).stem if resolved.get("config") else "sweep")
    caches = _extract_grid(config, resolved["data"], resolved["progress"], log)
    probes = list(resolved["probe"] or list_probes())
    params = {"head": head_params(epochs=resolved["head_epochs"])}
    result = select_on_valid(caches, probes, params, top_k=resolved["top_k"], runs_dir=resolved["runs_dir"],
                             refit=resolved["refit"], n_boot=resolved["boot"],
                             memory_budget_gb=resolved["memory_budget_gb"], audit=resolved["audit"], name=name, log=log,
                             train_views=resolved["train_views"])
    if resolved["learning_curve"]:
        chosen = result.chosen
        result.learning_curve = learning_curve(chosen["_source"], chosen["probe"], params.get(chosen["probe"], {}),
                                               repeats=resolved["repeats"], seed=resolved["seed"],
                                               memory_budget_gb=resolved["memory_budget_gb"], log=log)
    return result
