"""Probes fitted on clean features, scored elsewhere: on robustness views of the test split, and on other test sets.

`compare` fits every probe on a training cache and scores it on that cache's test split. This module adds
rows for the same fitted probes, with the same threshold (chosen on the training cache's valid split),
scored on:

- **views** (`view`, e.g. `jpeg:50`): the test split of the same images, degraded (`featurekit.views`), embedded
  by the same embedder: CNNDetection's robustness protocol;
- **other test sets** (`test_data`): a folder whose every image is a test image, or one class's folder paired
  with the other class of the training cache's test split;
- **a threshold chosen on valid plus its views** (`threshold_on` "valid+views"): the valid split and the
  same images under every view choose each probe's threshold together; every row is then reported at it. Test
  never chooses anything.

The caches of views and test sets are found or made by `featurekit.evaluation.shifted_caches`.

Every row says where it was scored: `test_set` ("test" for the training cache's own test split, else the
folder given) and `view` ("" for the clean images), and `scored_cache` names the cache whose rows were
scored. Rows come in blocks: the own test split, then one block per view, then one per test set. Each row
carries accuracy on real and on fake images separately (`accuracy_real`, `accuracy_fake`), as the field
reports robustness.
"""


from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from featurekit.cache.fusion import open_source
from featurekit.errors import FeaturekitError, given
from featurekit.evaluation import fitting
from featurekit.evaluation.scoring import metrics_at, scored
from featurekit.evaluation.shifted_caches import OtherTestSet, other_test_set_cache, parse_test_set, view_cache_for
from featurekit.rows import OWN_TEST_SPLIT, scored_elsewhere
from featurekit.views import View, parse_views


def _views(texts: Sequence[str | View]) -> list[View]:
    """The views named, "none" left out (that is the own row)."""
    return [view for view in parse_views(list(texts)) if view is not None]


def _members(source: Any) -> list[Path]:
    """The member caches of a cache or fusion, in the column order its probes were fitted on (a fusion puts its
    members in a canonical order, which the caches substituted for them on a view or test set need not share)."""
    with open_source(source) as opened:
        return list(opened.member_paths)


def _target(members: list[Path], view: View | None, test_set: OtherTestSet | None, cache_dir: str | Path | None,
            log: Callable[[str], None]) -> tuple[str, str, list[Path]]:
    """Where a view of the test split (or, without a view, another test set) is scored: its `view`, its `test_set`
    label and one cache per member of the configuration, in its column order (found, else extracted)."""
    if view is not None:
        return view.name, OWN_TEST_SPLIT, [view_cache_for(member, view, cache_dir, log) for member in members]
    return "", test_set.label, [other_test_set_cache(member, test_set, log) for member in members]


def _scored_on(caches: list[Path], fitted: list[fitting.FittedProbe], n_boot: int, log: Callable[[str], None],
               threshold: float | None = None) -> list[dict[str, Any]]:
    """Each fitted probe's metrics on the test rows of `caches` (fused in the order given when several)."""
    with open_source(caches, log, keep_order=True) as reader:
        reader.require_splits(("test",))
        return [scored(probe, reader, "test", n_boot, threshold) for probe in fitted]


def score_elsewhere(rows: list[dict[str, Any]], caches: list[Path], views: Sequence[str | View] = (),
                    test_data: Sequence[str | Path] = (), cache_dir: str | Path | None = None, n_boot: int = 1000,
                    log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """`compare`'s rows followed by the same probes scored on each view and each other test set.

    Args:
        rows: Rows of `featurekit.evaluation.compare.compare` (own test split), each with its fitted probe (`_fitted`).
        caches: The training caches those rows were made from.
        views: View texts or Views (`featurekit.views`); "none" entries are ignored (that is the own row).
        test_data: Other test sets (`featurekit.evaluation.shifted_caches.parse_test_set`): a folder whose every
            image is a test image, or one class's folder paired with the other class of the test split.
        cache_dir: A further folder to look for view caches in.
        n_boot: Bootstrap resamples for the intervals.
        log: Where progress messages go.

    Returns:
        The rows, then one block per view, then one block per test set; every row with `test_set`, `view` and
        `scored_cache`.
    """
    by_name = {Path(cache).name: Path(cache) for cache in caches}
    scored_rows = list(rows)  # then one block per view and per test set
    for view, test_set in [(view, None) for view in _views(views)] + [(None, parse_test_set(d)) for d in test_data]:
        for name, training_cache in by_name.items():
            own = [row for row in rows if row.get("cache") == name and not scored_elsewhere(row)]
            if not own:
                continue
            view_name, label, scored_caches = _target([training_cache], view, test_set, cache_dir, log)
            for row, metrics in zip(own, _scored_on(scored_caches, [row["_fitted"] for row in own], n_boot, log)):
                new = {key: value for key, value in row.items() if not key.startswith("_")}
                new.update({key: value for key, value in metrics.items() if key in new or key == "collapsed"})
                new.update(n_test=metrics["n"], test_set=label, view=view_name, scored_cache=scored_caches[0].name,
                           reused=True, _scores=metrics["_scores"], _labels=metrics["_labels"])
                scored_rows.append(new)
    return scored_rows


def score_on_test_sets(source: Any, fitted: fitting.FittedProbe, test_data: Sequence[str | Path], n_boot: int,
                       log: Callable[[str], None] = print, views: Sequence[str | View] = (),
                       threshold: float | None = None) -> list[dict[str, Any]]:
    """One fitted configuration (a cache or a fusion) scored on each view of the test split and each other test
    set, at its own threshold (chosen on valid) unless another is given: what a sweep reports about its choice,
    after the choice.

    Returns:
        One dict per view, then per test set: `test_set` (its label), `view`, `scored_cache`, and every metric of
        `featurekit.evaluation.scoring.scored`.
    """
    members = _members(source)
    rows = []
    for view, test_set in [(view, None) for view in _views(views)] + [(None, parse_test_set(d)) for d in test_data]:
        view_name, label, caches = _target(members, view, test_set, None, log)
        [metrics] = _scored_on(caches, [fitted], n_boot, log, threshold)
        rows.append({"test_set": label, "view": view_name, "scored_cache": ", ".join(c.name for c in caches),
                     **{k: v for k, v in metrics.items() if not k.startswith("_")}})
    return rows


def valid_and_views_threshold(source: Any, fitted: fitting.FittedProbe, views: Sequence[str | View],
                              cache_dir: str | Path | None = None, log: Callable[[str], None] = print) -> float:
    """The threshold of a fitted configuration (a cache or a fusion) chosen on its valid split together with the
    same valid images under every view (each view's valid split found or extracted like a test view). A threshold
    that has seen degraded copies may hold better under a shift; it is still chosen without test.

    Raises:
        FeaturekitError: no view is given.
    """
    from featurekit.metrics import choose_threshold

    views = _views(views)
    if not views:
        raise FeaturekitError("A threshold chosen on valid plus its views needs at least one view.",
                              received=given("threshold_on", "valid+views"),
                              fix=f"Name views with {given('view', 'jpeg:50')} (repeat for several), e.g. the views "
                              "you report robustness on.")
    members = _members(source)
    parts = []
    for caches in [members] + [[view_cache_for(m, view, cache_dir, log, split="valid") for m in members]
                               for view in views]:
        with open_source(caches, log, keep_order=True) as reader:
            parts.append(fitting.split_scores(fitted, reader, "valid"))
    return float(choose_threshold(np.concatenate([labels for _, labels in parts]),
                                  np.concatenate([scores for scores, _ in parts])))


def at_valid_and_views_thresholds(rows: list[dict[str, Any]], caches: list[Path], views: Sequence[str | View],
                                  cache_dir: str | Path | None, n_boot: int, log: Callable[[str], None] = print
                                  ) -> list[dict[str, Any]]:
    """The rows evaluated again at the `valid_and_views_threshold` of their probe (by `model_dir`: each probe of the
    rows of `caches` scored on their own test split), each saying so in `threshold_on`; rows of other probes keep
    theirs."""
    names = {Path(c).name: Path(c) for c in caches}
    thresholds = {str(row["model_dir"]): valid_and_views_threshold(names[row["cache"]], row["_fitted"], views,
                                                                   cache_dir, log)
                  for row in rows if row.get("cache") in names and not scored_elsewhere(row)}

    def at(row: dict[str, Any], threshold: float) -> dict[str, Any]:
        metrics = metrics_at(row["_labels"], row["_scores"], threshold, n_boot)
        return {**row, **{key: value for key, value in metrics.items() if key in row}, "threshold_on": "valid+views"}

    return [at(row, thresholds[key]) if (key := str(row.get("model_dir"))) in thresholds else row for row in rows]
