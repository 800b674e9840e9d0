"""Caches x probes -> one row of honest test metrics each.

Every probe trains on `train`, picks its threshold on `valid`, and is scored once on `test`. Probes
already fitted on the same cache with the same parameters are reused, not refitted.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from featurekit.cache import open_cache
from featurekit.errors import FeaturekitError
from featurekit.fitting import (
    MODEL_DIR,
    FittedProbe,
    fit_probe,
    load_fitted,
    read_fitted_meta,
    run_dir_for,
    split_scores,
)
from featurekit.options import default as declared

# Columns every row has, in display order (snake_case keys of the JSON output).
ROW_KEYS = (
    "cache", "backbone", "weights_label", "random_features", "layer", "pooling", "image_size", "preprocessing",
    "feature_dim", "probe", "test_set", "view", "n_test", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "accuracy_real",
    "accuracy_fake", "balanced_accuracy",
    "roc_auc", "roc_auc_ci_low", "roc_auc_ci_high", "average_precision", "eer", "tpr_at_1pct_fpr", "f1",
    "threshold", "fit_seconds", "reused", "streamed", "collapsed", "model_dir", "scored_cache",
)


def find_caches(cache_dir: str | Path = "cache") -> list[Path]:
    """Every finished cache file in a folder, sorted by name."""
    folder = Path(cache_dir)
    caches = sorted(p for p in folder.glob("*.h5") if p.is_file())
    if not caches:
        raise FeaturekitError(
            "No cache files to compare.", received=f"cache folder {folder}",
            fix="Extract some first, e.g. `python cli.py extract --backbone vgg16 --data DIR`, or pass --cache FILE.")
    return caches


def compare(
    caches: list[str | Path],
    probes: list[str],
    probe_params: dict[str, dict[str, Any]] | None = None,
    runs_dir: str | Path = declared("compare", "runs_dir"),
    refit: bool = declared("compare", "refit"),
    n_boot: int = declared("compare", "boot"),
    memory_budget_gb: float = declared("compare", "memory_budget_gb"),
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Fit what is missing, reuse what still matches, and evaluate every cache x probe on `test`.

    Args:
        caches: Cache files.
        probes: Probe names.
        probe_params: Constructor parameters per probe name.
        runs_dir: Where fitted probes live (``runs/<cache>/<probe>``).
        refit: Refit even where a matching fitted probe exists.
        n_boot: Bootstrap resamples for the 95% intervals.
        memory_budget_gb: Larger features are streamed from disk.
        log: Where progress messages go.

    Returns:
        One dict per cache x probe with the ROW_KEYS, plus private ``_scores``/``_labels`` for plots.
    """
    from featurekit.metrics import evaluate
    from featurekit.probes import get_probe_spec

    for probe in probes:
        get_probe_spec(probe)  # unknown names fail before any work
    probe_params = probe_params or {}
    rows: list[dict[str, Any]] = []
    for cache_path in caches:
        with open_cache(cache_path) as cache:
            cache.require_splits()
            for probe in probes:
                params = probe_params.get(probe, {})
                directory = run_dir_for(cache_path, probe, runs_dir)
                started = time.perf_counter()
                fitted = None if refit else _reusable_fit(directory, cache, probe, params, log)
                reused = fitted is not None
                if fitted is None:
                    log(f"fitting {probe} on {Path(cache_path).name} ...")
                    fitted = fit_probe(cache_path, probe, params, out=directory, memory_budget_gb=memory_budget_gb,
                                       log=log)
                scores, labels = split_scores(fitted, cache, "test")
                metrics = evaluate(labels, scores, fitted.threshold, n_boot=n_boot)
                attrs = cache.attrs
                rows.append({
                    "cache": Path(cache_path).name, "backbone": attrs.get("backbone"),
                    "weights_label": attrs.get("weights_label"), "random_features": bool(attrs.get("random_features")),
                    "layer": attrs.get("layer"), "pooling": attrs.get("pooling"), "image_size": attrs.get("image_size"),
                    "preprocessing": attrs.get("preprocessing"), "feature_dim": cache.feature_dim, "probe": probe,
                    "n_test": metrics["n"], **{k: metrics[k] for k in metrics if k in ROW_KEYS},
                    "fit_seconds": fitted.meta["fit_seconds"], "reused": reused,
                    "streamed": bool(fitted.meta.get("streamed")), "model_dir": str(directory),
                    "test_set": "test", "view": attrs.get("view") or "", "scored_cache": Path(cache_path).name,
                    "_scores": scores, "_labels": labels, "_seconds": time.perf_counter() - started,
                })
    return rows


def compare_from_options(options: dict[str, Any], log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """`compare` with the options of the `compare` command; options left out take their declared defaults.

    The head is always built with every declared fit-head default (epochs: `head_epochs`), so it is the
    same head as under `fit-head` and `fit --probe head`, and a head fitted there is reused here.
    """
    from featurekit.options import complete, head_params
    from featurekit.probes import list_probes

    options = complete("compare", options)
    caches = [Path(c) for c in options["cache"]] if options["cache"] else find_caches(options["cache_dir"])
    caches = _training_caches(caches, found_by_scan=not options["cache"], log=log)
    probes = list(options["probe"] or list_probes())
    if options["include_rbf"] and "rbfsvm" not in probes:
        probes.append("rbfsvm")
    rows = compare(caches, probes, probe_params={"head": head_params(epochs=options["head_epochs"])},
                   runs_dir=options["runs_dir"], refit=options["refit"], n_boot=options["boot"],
                   memory_budget_gb=options["memory_budget_gb"], log=log)
    return _scored_elsewhere(rows, caches, options, log)


def _training_caches(caches: list[Path], found_by_scan: bool, log: Callable[[str], None]) -> list[Path]:
    """Leave out caches that hold a view or another test set only (`featurekit.transfer.training_caches`)."""
    from featurekit.transfer import training_caches

    return training_caches(caches, found_by_scan, log)


def _scored_elsewhere(rows: list[dict[str, Any]], caches: list[Path], options: dict[str, Any],
                      log: Callable[[str], None]) -> list[dict[str, Any]]:
    """The rows, then the same probes scored on each `view` of the test split and each `test_data` folder."""
    if not options.get("view") and not options.get("test_data"):
        return rows
    from featurekit.transfer import score_elsewhere

    return score_elsewhere(rows, caches, views=options.get("view") or [], test_data=options.get("test_data") or [],
                           cache_dir=options["cache_dir"], n_boot=options["boot"], log=log)


def _reusable_fit(directory: Path, cache: Any, probe: str, params: dict[str, Any],
                  log: Callable[[str], None]) -> FittedProbe | None:
    """The fitted probe in `directory` if it was fitted on this cache with these parameters and loads
    safely; None means "fit it again" (the refit replaces the folder).

    A folder in an old or unknown format is never opened (an old pickle could run code): its file
    names and JSON decide. A current-format model that still fails to load is refitted with a message.
    """
    from featurekit.probes import saved_probe_problem

    try:
        meta = read_fitted_meta(directory)
    except FeaturekitError:
        return None
    if meta.get("cache_fingerprint") != cache.fingerprint or meta.get("probe") != probe:
        return None
    try:
        same_params = effective_params(probe, dict(meta.get("params") or {})) == effective_params(probe, params)
    except (FeaturekitError, TypeError, ValueError):  # parameters this version no longer has
        return None
    if not same_params:
        return None
    problem = saved_probe_problem(directory / MODEL_DIR)
    if problem:
        log(f"not reusing {directory}: {problem} Refitting.")
        return None
    try:
        return load_fitted(directory, cache)
    except FeaturekitError as error:
        log(f"not reusing {directory}: {error.problem} Refitting.")
        return None


def effective_params(probe: str, params: dict[str, Any]) -> dict[str, Any]:
    """Every scalar parameter of the probe as it would be built: explicit defaults equal omitted ones."""
    from featurekit.probes import make_probe

    built = make_probe(probe, **params).get_params(deep=True)
    return {k: v for k, v in built.items() if isinstance(v, (str, int, float, bool, type(None)))}


def public_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows without private keys, with NumPy scalars as plain Python values (for CSV/JSON)."""
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items() if not k.startswith("_")}
            for row in rows]
