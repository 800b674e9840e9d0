"""Train on degraded views: the clean train split plus cached views of it (`fit/compare/sweep --train-views`).

CNNDetection's detector generalised because it was trained on blurred and JPEG-compressed copies. Here each
training view (`jpeg:30-95`, `blur:0-2`, any `featurekit.views` text) is a cache of the clean cache's train
split, degraded with one seeded random strength per image and embedded with the clean cache's own embedder
(rebuilt from its recorded identity, as `compare --view` does for the test split), in
``<clean cache>-view-<slug>-only-train.h5`` next to it: extracted once, found again by identity afterwards.
The probe then trains on the clean train rows plus every view's train rows; valid and test stay clean
(`featurekit.cache.augmented.AugmentedSource`).

The texts are given as a list, or as one string whose commas separate views (`jpeg:30-95,blur:0-2` is two
views; `+` chains steps within one view, `jpeg:50+blur:1`). A range without `@SEED` is drawn with seed 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from featurekit.cache import SplitAccess
from featurekit.cache.augmented import AugmentedSource
from featurekit.cache.fusion import open_source
from featurekit.errors import FeaturekitError, given
from featurekit.evaluation.shifted_caches import cache_attrs, view_cache_for
from featurekit.views import View, parse_views

TrainViews = str | View | Sequence[str | View] | None


def parse_train_views(texts: TrainViews) -> list[View]:
    """The training views asked for, in order, duplicates and `none` left out ([] for no views).

    Raises:
        FeaturekitError: A text is not a view (named, with the view grammar), before any work.
    """
    items = [texts] if isinstance(texts, (str, View)) else list(texts or [])
    parts = [part.strip() if isinstance(part, str) else part
             for item in items for part in (item.split(",") if isinstance(item, str) else [item])]
    try:
        views = parse_views([part for part in parts if part != ""])
    except FeaturekitError as error:
        raise FeaturekitError(error.problem, received=given("train_views", texts), fix=error.fix) from None
    return [view for view in views if view is not None]


def train_view_caches(clean_path: str | Path, views: Sequence[View], log: Callable[[str], None] = print) -> list[Path]:
    """The cache of each view of the clean cache's train split: found by identity next to it, else extracted (train
    only)."""
    clean_path = Path(clean_path)
    attrs = cache_attrs(clean_path)
    if attrs.get("view") or attrs.get("subset"):
        raise FeaturekitError(
            f"Training views widen a clean cache of every split, but {clean_path.name} holds "
            f"{'the view ' + repr(attrs['view']) if attrs.get('view') else 'the subset ' + repr(attrs['subset'])}.",
            received=str(clean_path), fix="Name the clean cache the views were made from.")
    return [view_cache_for(clean_path, view, log=log, split="train") for view in views]


def open_training_source(source: str | Path | Sequence[str | Path], train_views: TrainViews = None,
                         log: Callable[[str], None] = print) -> SplitAccess:
    """The rows a probe trains on: the cache (or fusion) itself, or with `train_views` the clean source plus the
    train rows of each view (extracted first when missing; for a fusion, each member's view, fused alike); checked
    to hold every split of both classes and the contents it was made with (notes on what cannot be checked go to
    `log`).

    Raises:
        FeaturekitError: A view text is wrong (before any work), a view cache cannot be found or made (see
            `featurekit.evaluation.shifted_caches.view_cache_for`), a split is missing or the contents changed.
    """
    views = parse_train_views(train_views)
    opened: list[SplitAccess] = [open_source(source, log)]
    try:
        # Per view, the view cache of each member (one cache, or a fusion's members in their column order).
        per_view = list(zip(*(train_view_caches(member, views, log)
                              for member in opened[0].member_paths))) if views else []
        for paths in per_view:
            opened.append(open_source(list(paths), log))
        orders = [_columns_in_member_order(view, list(paths)) for view, paths in zip(opened[1:], per_view)]
        training = AugmentedSource(opened[0], opened[1:], [view.name for view in views], orders) if views else opened[0]
        training.require_splits()
        for note in training.verify_contents():  # refuses contents changed since the cache was made
            log(note)
        return training
    except BaseException:
        for reader in opened:
            reader.close()
        raise


def _columns_in_member_order(view: Any, paths: list[Path]) -> np.ndarray | None:
    """The view's columns reordered as the clean members' (None when already so): a fusion orders its members
    by fingerprint, and the view caches' fingerprints need not sort as the clean members' do."""
    if len(paths) == 1:
        return None
    starts = np.cumsum([0] + [member.feature_dim for member in view.members])
    where = {member.path: index for index, member in enumerate(view.members)}
    order = np.concatenate([np.arange(starts[where[path]], starts[where[path] + 1]) for path in paths])
    return None if np.array_equal(order, np.arange(len(order))) else order
