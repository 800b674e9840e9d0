"""Caches x probes -> one row of honest test metrics each.

Every probe trains on `train`, picks its threshold on `valid`, and is scored once on `test`. Probes
already fitted on the same cache with the same parameters are reused, not refitted.

A cache may also be a fusion group (a list of caches of the same images, see `featurekit.cache.fusion`): its
rows score probes on the members' concatenated features, beside the members' own rows. Before any
work, each cache gets the cheap part of the leak audit (exact duplicates across splits; it reads only
the cache): a leak is announced loudly and every row of that cache carries `leaks`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from rich.markup import escape

from featurekit.errors import FeaturekitError, given, option_name
from featurekit.evaluation.fitting import (
    MODEL_DIR,
    FittedProbe,
    fit_probe,
    load_fitted,
    read_fitted_meta,
    run_dir_of,
)
from featurekit.cache.fusion import FusedCache, source_name
from featurekit.options import default as declared
from featurekit.rows import ROW_KEYS, image_keys
from featurekit.evaluation.train_views import open_training_source, parse_train_views


def find_caches(cache_dir: str | Path = "cache") -> list[Path]:
    """Every finished cache file in a folder, sorted by name."""
    folder = Path(cache_dir)
    caches = sorted(p for p in folder.glob("*.h5") if p.is_file())
    if not caches:
        raise FeaturekitError(
            "No cache files to compare.", received=f"cache folder {folder}",
            fix="Extract some first, e.g. `python cli.py extract --backbone vgg16 --data DIR`, or pass --cache FILE.")
    return caches


CacheSource = str | Path | Sequence[str | Path]  # a cache file, or a fusion group of several


@dataclass
class Fit:
    """One probe fitted (or reused) on one cache or fusion, while that cache is open.

    Attributes:
        source: The cache path, or the list of member paths of a fusion.
        cache: The open cache (or fusion); valid only inside the loop that yielded this fit.
        probe: The probe name.
        fitted: The fitted probe (its threshold chosen on valid).
        reused: Whether it was reused rather than fitted now.
    """

    source: CacheSource
    cache: Any
    probe: str
    fitted: FittedProbe
    reused: bool


def fitted_grid(
    sources: Sequence[CacheSource],
    probes: Sequence[str],
    probe_params: dict[str, dict[str, Any]] | None = None,
    runs_dir: str | Path = declared("compare", "runs_dir"),
    refit: bool = declared("compare", "refit"),
    memory_budget_gb: float = declared("compare", "memory_budget_gb"),
    log: Callable[[str], None] = print,
    train_views: Sequence[Any] = (),
) -> Iterator[Fit]:
    """Every probe on every cache (or fusion), fitted where missing and reused where it still matches: the one
    caches x probes loop of `compare` and `sweep`. Probe names are all checked before any work.

    `train_views` (parsed views, `featurekit.evaluation.train_views.parse_train_views`) are fitted on beside each cache's
    clean train rows.

    Yields:
        One Fit per cache x probe, cache by cache, while its cache is open.
    """
    from featurekit.probes import get_probe_spec

    for probe in probes:
        get_probe_spec(probe)  # unknown names fail before any work
    probe_params = probe_params or {}
    for source in sources:
        with open_training_source(source, train_views, log=log) as cache:
            cache.require_splits()
            for probe in probes:
                fitted, reused = fitted_probe(source, cache, probe, probe_params.get(probe, {}), runs_dir, refit,
                                              memory_budget_gb, log)
                yield Fit(source, cache, probe, fitted, reused)


def scored(fitted: FittedProbe, reader: Any, split: str, n_boot: int, threshold: float | None = None
           ) -> dict[str, Any]:
    """A fitted probe's metrics on one split of an open cache, at its own threshold (chosen on valid) unless
    another is given, with the figures that separate ranking from calibration (`shift_figures`) and private
    `_scores`/`_labels`."""
    from featurekit.evaluation.fitting import split_scores
    from featurekit.metrics import evaluate

    scores, labels = split_scores(fitted, reader, split)
    threshold = fitted.threshold if threshold is None else threshold
    return {**evaluate(labels, scores, threshold, n_boot=n_boot), **shift_figures(labels, scores),
            "_scores": scores, "_labels": labels}


def shift_figures(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Figures that tell a ranking that holds from a threshold that fails (never used to choose anything).

    Returns:
        `oracle_accuracy`: the accuracy at the best threshold for THESE labels (as UnivFD reports it: an
        optimistic bound, known only after seeing the answers); `mean_p_fake_real` and `mean_p_fake_fake`: the
        mean P(fake) of the real and of the fake images.
    """
    from sklearn.metrics import roc_curve

    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    n_fake, n_real = int(labels.sum()), int(labels.size - labels.sum())
    false_positive, true_positive, _ = roc_curve(labels, scores)
    # Every threshold between distinct scores, and "all fake" / "all real": correct = TP + TN.
    correct = true_positive * n_fake + (1 - false_positive) * n_real
    return {"oracle_accuracy": float(correct.max() / labels.size),
            "mean_p_fake_real": float(scores[labels == 0].mean()),
            "mean_p_fake_fake": float(scores[labels == 1].mean())}


def compare(
    caches: list[CacheSource],
    probes: list[str],
    probe_params: dict[str, dict[str, Any]] | None = None,
    runs_dir: str | Path = declared("compare", "runs_dir"),
    refit: bool = declared("compare", "refit"),
    n_boot: int = declared("compare", "boot"),
    memory_budget_gb: float = declared("compare", "memory_budget_gb"),
    log: Callable[[str], None] = print,
    audit: bool = declared("compare", "audit"),
    train_views: Sequence[str] | str | None = None,
) -> list[dict[str, Any]]:
    """Fit what is missing, reuse what still matches, and evaluate every cache x probe on `test`.

    Args:
        caches: Cache files; an entry that is a list of two or more caches of the same images is a
            fusion group, scored on their concatenated features.
        probes: Probe names.
        probe_params: Constructor parameters per probe name.
        runs_dir: Where fitted probes live (``runs/<cache>/<probe>``, ``runs/fuse-<hash>/<probe>``).
        refit: Refit even where a matching fitted probe exists.
        n_boot: Bootstrap resamples for the 95% intervals.
        memory_budget_gb: Larger features are streamed from disk.
        log: Where progress messages go.
        audit: Audit each cache for leaks first (exact duplicates across splits) and warn loudly.
        train_views: Views of each cache's train split fitted on beside its clean rows (`featurekit.evaluation.train_views`).

    Returns:
        One dict per cache x probe with the ROW_KEYS, plus private ``_scores``/``_labels`` and the test
        images (``featurekit.rows.image_keys``) for plots and the report page, and ``_fitted`` (the fitted
        probe, scored elsewhere without loading it again).
    """
    from featurekit.probes import get_probe_spec

    for probe in probes:
        get_probe_spec(probe)  # unknown names fail before the audit
    train_views = parse_train_views(train_views)  # so do wrong view texts
    leaky = leaking_caches(caches, log) if audit else {}
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for fit in fitted_grid(caches, probes, probe_params, runs_dir, refit, memory_budget_gb, log, train_views):
        metrics = scored(fit.fitted, fit.cache, "test", n_boot)
        rows.append({
            **row_description(fit.source, fit.cache), "probe": fit.probe,
            "n_test": metrics["n"], **{k: metrics[k] for k in metrics if k in ROW_KEYS or k.startswith("_")},
            "fit_seconds": fit.fitted.meta["fit_seconds"], "reused": fit.reused,
            "streamed": bool(fit.fitted.meta.get("streamed")), "model_dir": str(fit.fitted.directory),
            "test_set": "test", "view": fit.cache.attrs.get("view") or "", "scored_cache": source_name(fit.source),
            "threshold_on": "valid",
            "leaks": source_leaks(fit.source, leaky) if audit else None,
            "_fitted": fit.fitted, **image_keys(fit.cache, "test"), "_seconds": time.perf_counter() - started,
        })
        started = time.perf_counter()
    return rows


def row_description(cache_path: CacheSource, cache: Any) -> dict[str, Any]:
    """The columns of a row that say which features it scores (a fusion: its members, joined)."""
    attrs = cache.attrs
    return {
        "cache": source_name(cache_path) if not isinstance(cache, FusedCache) else cache.name,
        "data": data_set_label(getattr(cache, "members", [cache])[0].attrs),
        "backbone": attrs.get("backbone"), "weights_label": attrs.get("weights_label"),
        "random_features": bool(attrs.get("random_features")), "layer": attrs.get("layer"),
        "pooling": attrs.get("pooling"), "image_size": attrs.get("image_size"),
        "preprocessing": attrs.get("preprocessing"), "feature_dim": cache.feature_dim,
        "backend": attrs.get("backend"), "precision": attrs.get("precision"),
        # Images of valid/test that the backbone (from train-backbone) was trained on: such scores are optimistic.
        "train_overlap": int(attrs.get("train_overlap_valid") or 0) + int(attrs.get("train_overlap_test") or 0),
    }


def data_set_label(attrs: dict[str, Any]) -> str:
    """The data set a cache was made from, as "<folder name> <first 8 hex of its data fingerprint>": the
    fingerprint covers every image, label and split, so one folder split two ways gives two labels."""
    root = str(attrs.get("data_root") or "")
    return f"{Path(root).name or '?'} {str(attrs.get('data_fingerprint') or '')[:8]}".strip()


def caches_of_data(caches: list[Path], data: str | Path) -> list[Path]:
    """The caches made from the data folder `data` (by its resolved path; their attributes alone are read).

    Raises:
        FeaturekitError: no cache was made from it (the folders they were made from are listed).
    """
    import h5py

    wanted = Path(data).expanduser().resolve()
    roots: dict[Path, str] = {}
    for path in caches:
        try:
            with h5py.File(path, "r") as f:
                root = f.attrs.get("data_root", "")
        except OSError:
            root = ""
        roots[path] = root.decode() if isinstance(root, bytes) else str(root)
    kept = [path for path, root in roots.items() if root and Path(root).resolve() == wanted]
    if not kept:
        found = sorted({root for root in roots.values() if root})
        raise FeaturekitError(
            f"No cache was made from the data folder {wanted}.", received=given("data", str(data)),
            fix="Name a folder the caches were made from (" + (", ".join(found) or "none recorded") +
                "), or extract this one first.")
    return kept


def fitted_probe(cache_path: CacheSource, cache: Any, probe: str, params: dict[str, Any],
                 runs_dir: str | Path = declared("compare", "runs_dir"), refit: bool = declared("compare", "refit"),
                 memory_budget_gb: float = declared("compare", "memory_budget_gb"),
                 log: Callable[[str], None] = print) -> tuple[FittedProbe, bool]:
    """The probe fitted on an open cache (or fusion) in its default folder: reused where it still matches.

    Returns:
        (the fitted probe, whether it was reused rather than fitted now).
    """
    directory = run_dir_of(cache, probe, runs_dir)
    for note in cache.verify_contents():  # refuses contents changed since the cache was made
        log(note)
    fitted = None if refit else _reusable_fit(directory, cache, probe, params, log)
    if fitted is not None:
        return fitted, True
    log(f"fitting {probe} on {escape(cache.name if isinstance(cache, FusedCache) else Path(cache.path).name)} ...")
    members = [m.path for m in cache.members] if isinstance(cache, FusedCache) else cache_path
    return fit_probe(members, probe, params, out=directory, memory_budget_gb=memory_budget_gb, log=log,
                     train_views=cache.train_views), False


def _member_paths(source: CacheSource) -> list[Path]:
    return [Path(p) for p in source] if isinstance(source, (list, tuple)) else [Path(source)]


def leaking_caches(caches: list[CacheSource], log: Callable[[str], None] = print) -> dict[Path, bool]:
    """The cheap audit of every cache (and fusion member) once: exact duplicates across splits and balance.

    A leak (an image whose identical copy sits in another split) is logged as a loud warning line:
    scores on such a test split are optimistic.

    Returns:
        For each resolved cache path, whether the audit found a leak.
    """
    from featurekit.audit import audit_cache

    found: dict[Path, bool] = {}
    for source in caches:
        for path in _member_paths(source):
            key = path.expanduser().resolve()
            if key in found:
                continue
            report = audit_cache(path, near_duplicates=False, shortcuts=False)
            found[key] = report.has_leaks
            if report.has_leaks:
                leak = next((w for w in report.warnings if w.startswith("LEAK")), "")
                log(f"[bold red]WARNING: {escape(path.name)} leaks across its splits[/]: {escape(leak)} Its scores "
                    f"are optimistic; `python cli.py audit {escape(str(path))}` lists every duplicate.")
    return found


def source_leaks(source: CacheSource, leaky: dict[Path, bool]) -> bool:
    """Whether a cache, or any member of a fusion, leaks."""
    return any(leaky.get(path.expanduser().resolve(), False) for path in _member_paths(source))


def fusion_sources(caches: list[Path], fuse: bool | list[list[Any]]) -> list[CacheSource]:
    """Caches plus the fusion groups to compare: `fuse=True` fuses every cache given; groups (from
    `[[compare.fuse]]` tables) add their members as rows of their own when they are not listed yet.

    Returns:
        The plain caches first, then one entry (a list of paths) per fusion group.
    """
    if fuse is True:
        if len(caches) < 2:
            raise FeaturekitError(f"{option_name('fuse')} needs two or more caches of the same images.",
                                  received=", ".join(given("cache", str(c)) for c in caches) or "no cache",
                                  fix=f"Repeat {option_name('cache')} for each cache to fuse.")
        groups = [list(caches)]
    else:
        groups = [[Path(p) for p in group] for group in (fuse or [])]
    plain = list(caches)
    listed = {p.expanduser().resolve() for p in plain}
    for group in groups:
        for member in group:
            if member.expanduser().resolve() not in listed:
                plain.append(member)
                listed.add(member.expanduser().resolve())
    unique_groups: list[list[Path]] = []
    seen: set[tuple[Path, ...]] = set()
    for group in groups:
        key = tuple(sorted(p.expanduser().resolve() for p in group))
        if key not in seen:
            seen.add(key)
            unique_groups.append(group)
    return [*plain, *unique_groups]


def compare_from_options(options: dict[str, Any], log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """`compare` with the options of the `compare` command; options left out take their declared defaults.

    The head is always built with every declared fit-head default (epochs: `head_epochs`), so it is the
    same head as under `fit-head` and `fit --probe head`, and a head fitted there is reused here.
    """
    from featurekit.options import complete, head_params
    from featurekit.probes import list_probes

    options = complete("compare", options)
    caches = [Path(c) for c in options["cache"]] if options["cache"] else find_caches(options["cache_dir"])
    if options["data"] is not None:
        caches = caches_of_data(caches, options["data"])
    caches = _training_caches(caches, found_by_scan=not options["cache"], log=log)
    probes = list(options["probe"] or list_probes())
    if options["include_rbf"] and "rbfsvm" not in probes:
        probes.append("rbfsvm")
    rows = compare(fusion_sources(caches, options["fuse"]), probes,
                   probe_params={"head": head_params(epochs=options["head_epochs"])},
                   runs_dir=options["runs_dir"], refit=options["refit"], n_boot=options["boot"],
                   memory_budget_gb=options["memory_budget_gb"], log=log, audit=options["audit"],
                   train_views=options["train_views"])
    # Fused rows are scored on the test split only; views and other test sets score the members' probes.
    return _scored_elsewhere([r for r in rows if not r["cache"].startswith("fuse(")], caches, options, log) + \
        [r for r in rows if r["cache"].startswith("fuse(")]


def _training_caches(caches: list[Path], found_by_scan: bool, log: Callable[[str], None]) -> list[Path]:
    """Leave out caches that hold a view or another test set only (`featurekit.evaluation.shifted_scoring.training_caches`)."""
    from featurekit.evaluation.shifted_scoring import training_caches

    return training_caches(caches, found_by_scan, log)


def _scored_elsewhere(rows: list[dict[str, Any]], caches: list[Path], options: dict[str, Any],
                      log: Callable[[str], None]) -> list[dict[str, Any]]:
    """The rows, then the same probes scored on each `view` of the test split and each `test_data` folder; with
    `threshold_on` "valid+views", every row at the threshold chosen on valid plus the valid split's views."""
    from featurekit.evaluation.shifted_scoring import at_thresholds, score_elsewhere, thresholds_on_valid_and_views

    if options.get("view") or options.get("test_data"):
        rows = score_elsewhere(rows, caches, views=options.get("view") or [], test_data=options.get("test_data") or [],
                               cache_dir=options["cache_dir"], n_boot=options["boot"], log=log)
    if options.get("threshold_on") == "valid+views":
        thresholds = thresholds_on_valid_and_views(rows, caches, options.get("view") or [], options["cache_dir"], log)
        rows = at_thresholds(rows, thresholds, "valid+views", options["boot"])
    return rows


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
    if meta.get("train_view_caches", []) != list(cache.train_view_caches):  # fitted on other training views
        return None
    if meta.get("content_checksums") != cache.content_checksums:  # fitted on other contents, or before they were recorded
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
