"""Audit a data folder or a cache: gather the findings, then turn them into warnings, leaks first.

`audit_data(folder)` and `audit_cache(path)` return an `AuditReport`; `audit_from_options` picks one
from the target the `audit` command names. Arguments are checked against the `audit` options.
"""

from __future__ import annotations

import inspect
from pathlib import Path, PurePosixPath
from typing import Any, Sequence

import numpy as np

from featurekit.audit.duplicates import (
    balance_warnings, class_balance,
    find_exact_duplicates, find_near_duplicates,
)
from featurekit.audit.report import (AuditReport, DuplicateGroup, Member, NearDuplicatePair, NearDuplicates,
                                     ShortcutReport)
from featurekit.audit.shortcuts import shortcut_probes, shortcut_warnings
from featurekit.parameters import (AUDIT_MEMORY_BUDGET_MB, BALANCE_TOLERANCE, MAX_LISTED, MAX_PIXELS,
                                   NEAR_DUPLICATE_THRESHOLD, SHORTCUT_AUC, SHORTCUT_N_BOOT)
from featurekit.errors import FeaturekitError, given
from featurekit.options import validate_params

LEAKS_NAMED = 5  # duplicate groups named in the warning itself; the report lists all


def _named(groups: list[DuplicateGroup], describe) -> str:
    """The first LEAKS_NAMED groups, each as its members joined by " = ", and how many more."""
    shown = "; ".join(" = ".join(describe(m) for m in g.members) for g in groups[:LEAKS_NAMED])
    return shown + (f"; and {len(groups) - LEAKS_NAMED} more (all in the report)" if len(groups) > LEAKS_NAMED else "")


def _finish(report: AuditReport, balance_tolerance: float) -> AuditReport:
    """Turn the findings into warnings, leaks first."""
    warnings = report.warnings
    if groups := report.exact_cross_split:
        conflicts = sum(g.label_conflict for g in groups)
        warnings.append(f"LEAK: {len(groups)} files have identical copies in other splits"
                        + (f", {conflicts} of them with CONFLICTING labels" if conflicts else "")
                        + f": {_named(groups, lambda m: f'{m.path} ({m.split})')}.")
    if (near := report.near_duplicates) and near.count:
        warnings.append(f"LEAK: {near.count} pairs of images in different splits have embeddings with "
                        f"{'centred ' if near.centered else ''}cosine similarity >= {near.threshold} "
                        "(near-duplicates; listed).")
    if report.shortcuts is not None:
        loud, notes = shortcut_warnings(report.shortcuts)
        warnings += loud
        report.notes += notes
    if within_conflicts := [g for g in report.exact_within_split if g.label_conflict]:
        warnings.append(f"LABEL CONFLICT: {len(within_conflicts)} groups of identical files carry both labels inside "
                        f"one split (no classifier can be right on both; fix the labels): "
                        f"{_named(within_conflicts, lambda m: f'{m.path} ({m.label})')}.")
    warnings += balance_warnings(report.balance, report.class_names, balance_tolerance)
    if report.exact_within_split:
        report.notes.append(f"{len(report.exact_within_split)} groups of identical files inside one split "
                            "(not a leak, but they weigh double in training or scoring)")
    return report


@validate_params("audit")
def audit_data(folder: str | Path, *, split_fractions: tuple[float, float, float] | None = None,
               shortcut_auc: float = SHORTCUT_AUC, balance_tolerance: float = BALANCE_TOLERANCE,
               shortcuts: bool = True, n_boot: int = SHORTCUT_N_BOOT, seed: int = 0, workers: int | None = None,
               max_pixels: int | None = MAX_PIXELS) -> AuditReport:
    """Audit an image folder: exact duplicates, class balance and shortcut probes (no embeddings needed).

    Args:
        folder: A data folder in either layout `featurekit.data.scan_image_folder` reads; its splits
            are the ones `extract` would use.
        split_fractions: train/valid/test fractions for the class-folder layout (default 70/15/15).
        shortcut_auc: ROC AUC above which a trivial-property probe is called a shortcut.
        balance_tolerance: Largest allowed difference between a split's class fraction and the whole set's.
        shortcuts: Run the shortcut probes (they decode every image at reduced size).
        n_boot: Bootstrap resamples for the intervals of the shortcut probes.
        seed: Seed of the bootstrap and the tree.
        workers: Threads reading file properties (default: up to 8, one per CPU).
        max_pixels: Largest image (width x height) decoded for the shortcut probes; larger files are
            left out with the reason. None or 0: no limit.
    """
    from featurekit.data import DEFAULT_SPLIT_FRACTIONS, scan_image_folder

    scanned = scan_image_folder(folder, split_fractions or DEFAULT_SPLIT_FRACTIONS)
    samples = scanned.samples
    names = list(scanned.class_names)
    labels = np.array([s.label for s in samples])
    splits = np.array([s.split for s in samples])
    cross, within = find_exact_duplicates([s.path for s in samples], splits.tolist(),
                                          [names[s.label] for s in samples], [s.sha256 for s in samples])
    report = AuditReport(str(folder), "data", names, len(samples), class_balance(labels, splits, names), cross, within)
    if shortcuts:
        report.shortcuts = shortcut_probes([scanned.root / s.path for s in samples], labels, splits, shortcut_auc,
                                           n_boot, seed, workers, max_pixels)
    return _finish(report, balance_tolerance)


def _cache_shortcuts(report: AuditReport, root_text: str, paths: Sequence[str], sha256: Sequence[str],
                     labels: np.ndarray, splits: np.ndarray, shortcut_auc: float, n_boot: int, seed: int,
                     workers: int | None, max_pixels: int | None) -> ShortcutReport:
    """Shortcut probes on the files of the cache's rows under the data folder, or why they cannot run.

    Rows whose file is gone, changed (another sha256) or outside the folder are left out and noted.
    """
    from featurekit.hashing import file_sha256

    root = Path(root_text).expanduser() if root_text else None
    if root is None or not root.is_dir():
        return ShortcutReport(threshold=shortcut_auc, skipped=(
            f"the data folder {root_text or '(not recorded)'} is not here; pass {given('data_root', 'DIR')} "
            "to probe file properties"))
    files: list[Path | None] = []
    problems = {"missing": 0, "changed": 0, "outside": 0}
    for relative, digest in zip(map(PurePosixPath, paths), sha256):
        path = root.joinpath(*relative.parts)
        problem = ("outside" if relative.is_absolute() or ".." in relative.parts else "missing" if not path.is_file()
                   else "changed" if file_sha256(path) != digest else None)
        files.append(None if problem else path)
        if problem:
            problems[problem] += 1
    report.notes += [f"{count} image files {what} since extraction (left out of the shortcut probes)"
                     if what != "outside" else f"{count} cache paths point outside the data folder (ignored)"
                     for what, count in problems.items() if count]
    return shortcut_probes(files, labels, splits, shortcut_auc, n_boot, seed, workers, max_pixels)


@validate_params("audit")
def audit_cache(path: str | Path, *, data_root: str | Path | None = None,
                near_duplicate_threshold: float = NEAR_DUPLICATE_THRESHOLD,
                max_listed: int = MAX_LISTED, memory_budget_bytes: int = AUDIT_MEMORY_BUDGET_MB * 2**20,
                near_duplicates: bool = True, center: bool = True, shortcuts: bool = True,
                shortcut_auc: float = SHORTCUT_AUC, balance_tolerance: float = BALANCE_TOLERANCE,
                n_boot: int = SHORTCUT_N_BOOT, seed: int = 0, workers: int | None = None,
                max_pixels: int | None = MAX_PIXELS) -> AuditReport:
    """Audit a cache: exact and near-duplicates across its splits, balance, and shortcut probes.

    The shortcut probes read the image files under the cache's recorded `data_root` (or the given
    one); files missing or changed since extraction (their sha256 differs) are left out and noted.
    `compare` can run a quick audit with `shortcuts=False`: it reads only the cache.

    Args:
        path: A finished cache.
        data_root: The data folder the cache was made from, when it has moved since.
        near_duplicate_threshold: Cosine similarity of embeddings from which two images in different
            splits count as near-duplicates.
        max_listed: Most near-duplicate pairs listed (the most similar); all are counted.
        memory_budget_bytes: Bound on the memory the near-duplicate search holds at once.
        near_duplicates: Search for near-duplicates (quadratic in the number of rows).
        center: Centre the embeddings before the cosine similarity; pooled ReLU features need it
            (see `find_near_duplicates`).
        shortcuts: Run the shortcut probes on the image files.
        shortcut_auc, balance_tolerance, n_boot, seed, workers, max_pixels: As in `audit_data`.
    """
    from featurekit.cache import open_cache

    with open_cache(path) as cache:
        names = cache.class_names or ["0", "1"]
        labels, splits, paths, sha256 = cache.labels, cache.splits, cache.paths, cache.sha256
        label_names = [names[int(y)] for y in labels]
        cross, within = find_exact_duplicates(paths, splits.tolist(), label_names, sha256)
        report = AuditReport(str(path), "cache", list(names), cache.n_rows, class_balance(labels, splits, names),
                             cross, within)
        if near_duplicates:
            pairs, count = find_near_duplicates(cache.features, splits, near_duplicate_threshold, max_listed,
                                                memory_budget_bytes, same_bytes=np.asarray(sha256), center=center)
            report.near_duplicates = NearDuplicates(near_duplicate_threshold, center, count, [
                NearDuplicatePair(round(s, 6), Member(paths[i], splits[i], label_names[i]),
                                  Member(paths[j], splits[j], label_names[j])) for s, i, j in pairs])
        root_text = str(data_root) if data_root is not None else str(cache.attrs.get("data_root") or "")
    if shortcuts:
        report.shortcuts = _cache_shortcuts(report, root_text, paths, sha256, labels, splits, shortcut_auc, n_boot,
                                            seed, workers, max_pixels)
    return _finish(report, balance_tolerance)


def audit_from_options(options: dict[str, Any]) -> AuditReport:
    """The audit of the `audit` command's `target`: a data folder (`audit_data`) or a cache (`audit_cache`).

    Args:
        options: Every option of the `audit` command, as the command line resolves them.
    """
    from featurekit.config import parse_split_fractions

    def taken_by(audit) -> dict[str, Any]:
        return {name: options[name] for name in inspect.signature(audit).parameters if name in options}

    target = Path(options["target"])
    if target.is_dir():
        return audit_data(target, split_fractions=parse_split_fractions(options["split"]), **taken_by(audit_data))
    if target.is_file():
        return audit_cache(target, memory_budget_bytes=options["memory_budget_mb"] * 2**20, **taken_by(audit_cache))
    raise FeaturekitError("Nothing to audit there.", received=given("target", str(target)),
                          fix="Pass a cache file written by `extract` (.h5) or a data folder.")
