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
from pathlib import Path
from typing import Any, Callable, Sequence


from featurekit.cache.fusion import check_fusion_request, source_name
from featurekit.errors import FeaturekitError, given
from featurekit.evaluation.grid import CacheSource, ProbeGrid, resolved
from featurekit.evaluation.scoring import scored
from featurekit.evaluation.shifted_caches import stored_identity
from featurekit.evaluation.shifted_scoring import at_valid_and_views_thresholds, score_elsewhere
from featurekit.rows import ROW_KEYS, image_keys
from featurekit.parameters import MEMORY_BUDGET_GB, N_BOOT, RUNS_DIR


def find_caches(cache_dir: str | Path = "cache") -> list[Path]:
    """Every finished cache file in a folder, sorted by name."""
    folder = Path(cache_dir)
    caches = sorted(p for p in folder.glob("*.h5") if p.is_file())
    if not caches:
        raise FeaturekitError(
            "No cache files to compare.", received=f"cache folder {folder}",
            fix="Extract some first with the `extract` command, or name cache files with `cache`.")
    return caches


def compare(caches: list[CacheSource], probes: list[str], probe_params: dict[str, dict[str, Any]] | None = None,
            runs_dir: str | Path = RUNS_DIR, refit: bool = False, n_boot: int = N_BOOT,
            memory_budget_gb: float = MEMORY_BUDGET_GB, log: Callable[[str], None] = print, audit: bool = True,
            train_views: Sequence[str] | str | None = None) -> list[dict[str, Any]]:
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
    grid = ProbeGrid(probes, probe_params, runs_dir, refit, memory_budget_gb, log, train_views, audit)
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for fit in grid.fits(caches):
        metrics = scored(fit.fitted, fit.cache, "test", n_boot)
        rows.append({
            **row_description(fit.cache), "probe": fit.probe,
            "n_test": metrics["n"], **{k: metrics[k] for k in metrics if k in ROW_KEYS or k.startswith("_")},
            "fit_seconds": fit.fitted.meta["fit_seconds"], "reused": fit.reused,
            "streamed": bool(fit.fitted.meta.get("streamed")), "model_dir": str(fit.fitted.directory),
            "test_set": "test", "view": fit.cache.attrs.get("view") or "", "scored_cache": source_name(fit.source),
            "threshold_on": "valid", "leaks": fit.leaks,
            "_fitted": fit.fitted, **image_keys(fit.cache, "test"), "_seconds": time.perf_counter() - started,
        })
        started = time.perf_counter()
    return rows


def row_description(cache: Any) -> dict[str, Any]:
    """The columns of a row that say which features it scores (a fusion: its members, joined)."""
    attrs = cache.attrs
    return {
        "cache": cache.name,
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
    wanted = Path(data).expanduser().resolve()
    roots = {path: str((stored_identity(path, ("data_root",)) or {}).get("data_root", "")) for path in caches}
    kept = [path for path, root in roots.items() if root and Path(root).resolve() == wanted]
    if not kept:
        found = sorted({root for root in roots.values() if root})
        raise FeaturekitError(
            f"No cache was made from the data folder {wanted}.", received=given("data", str(data)),
            fix="Name a folder the caches were made from (" + (", ".join(found) or "none recorded") +
                "), or extract this one first.")
    return kept


def fusion_sources(caches: list[Path], fuse: bool | list[list[Any]]) -> list[CacheSource]:
    """Caches plus the fusion groups to compare: `fuse=True` fuses every cache given; groups (from
    `[[compare.fuse]]` tables) add their members as rows of their own when they are not listed yet.

    Returns:
        The plain caches first, then one entry (a list of paths) per fusion group, each group once.
    """
    if fuse is True:
        check_fusion_request(caches, fuse)
    groups = [list(caches)] if fuse is True else [[Path(p) for p in group] for group in (fuse or [])]
    plain = list(caches)
    for member in (member for group in groups for member in group):
        if resolved(member) not in {resolved(p) for p in plain}:
            plain.append(member)
    unique: dict[tuple[Path, ...], list[Path]] = {}
    for group in groups:
        unique.setdefault(tuple(sorted(map(resolved, group))), group)
    return [*plain, *unique.values()]


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
    caches = training_caches(caches, found_by_scan=not options["cache"], log=log)
    probes = list(options["probe"] or list_probes())
    if options["include_rbf"] and "rbfsvm" not in probes:
        probes.append("rbfsvm")
    rows = compare(fusion_sources(caches, options["fuse"]), probes,
                   probe_params={"head": head_params(epochs=options["head_epochs"])},
                   runs_dir=options["runs_dir"], refit=options["refit"], n_boot=options["boot"],
                   memory_budget_gb=options["memory_budget_gb"], log=log, audit=options["audit"],
                   train_views=options["train_views"])
    # Fused rows are scored on the test split only; views and other test sets score the members' probes, then with
    # `threshold_on` "valid+views" every row is reported at the threshold chosen on valid plus the valid split's views.
    views = options["view"] or []
    fused = [row for row in rows if row["cache"].startswith("fuse(")]
    rows = score_elsewhere([row for row in rows if not row["cache"].startswith("fuse(")], caches, views,
                           options["test_data"] or [], options["cache_dir"], options["boot"], log)
    if options["threshold_on"] == "valid+views":
        rows = at_valid_and_views_thresholds(rows, caches, views, options["cache_dir"], options["boot"], log)
    return rows + fused


def training_caches(paths: list[Path], found_by_scan: bool, log: Callable[[str], None] = print) -> list[Path]:
    """The caches `compare` fits probes on: a cache of one split or of another test set cannot train, so it
    is left out (with a message); a cache found by scanning the cache folder is left out too when it holds a
    view (views are scored through `view`, not compared as training caches; name one to compare it)."""
    left = [path for path in paths
            if (identity := stored_identity(path) or {}).get("subset") or (found_by_scan and identity.get("view"))]
    if left:
        log(f"not fitting on {len(left)} view or test-set cache(s) (scored through view / test_data instead): "
            + ", ".join(p.name for p in left))
    kept = [path for path in paths if path not in left]
    if not kept:
        raise FeaturekitError(
            "No training cache to compare: every cache given holds a view or a test set only.",
            received=", ".join(str(p) for p in paths),
            fix="Name a cache extracted without a view (its train, valid and test splits), e.g. "
            "`cache` cache/NAME.h5 with `view` jpeg:50.")
    return kept
