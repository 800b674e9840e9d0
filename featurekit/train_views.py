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

from featurekit.cache import SplitAccess, open_cache
from featurekit.cache.augmented import AugmentedSource
from featurekit.errors import FeaturekitError, given
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


def train_view_caches(clean_path: str | Path, views: Sequence[View], cache_dir: str | Path | None = None,
                      log: Callable[[str], None] = print) -> list[Path]:
    """The cache of each view of the clean cache's train split: found by identity, else extracted (train only)."""
    from featurekit.transfer import view_cache_for

    clean_path = Path(clean_path)
    with open_cache(clean_path) as clean:
        attrs = dict(clean.attrs)
    if attrs.get("view") or attrs.get("subset"):
        raise FeaturekitError(
            f"Training views widen a clean cache of every split, but {clean_path.name} holds "
            f"{'the view ' + repr(attrs['view']) if attrs.get('view') else 'the subset ' + repr(attrs['subset'])}.",
            received=str(clean_path), fix="Name the clean cache the views were made from.")
    return [view_cache_for(clean_path, attrs, view, cache_dir, log, split="train") for view in views]


def open_training_source(source: str | Path | Sequence[str | Path], train_views: TrainViews = None,
                         cache_dir: str | Path | None = None, log: Callable[[str], None] = print
                         ) -> SplitAccess:
    """The rows a probe trains on: the cache (or fusion) itself, or with `train_views` the clean cache plus the
    train rows of each view's cache (extracted first when missing).

    Raises:
        FeaturekitError: A view text is wrong (before any work), training views are asked for a fusion, or a view
            cache cannot be found or made (see `featurekit.transfer.view_cache_for`).
    """
    from featurekit.fusion import is_fusion, open_source

    views = parse_train_views(train_views)
    if not views:
        return open_source(source, log)
    if is_fusion(source):
        raise FeaturekitError("Training views are made for one cache at a time, not yet for a fusion.",
                              received=f"{given('train_views', [v.name for v in views])} with a fusion of "
                              f"{len(source)} caches", fix="Fit the fusion without training views, or fit each cache "
                              "with them.")
    path = Path(source[0] if isinstance(source, (list, tuple)) else source)
    paths = train_view_caches(path, views, cache_dir, log)
    opened: list[Any] = []
    try:
        for cache in [path, *paths]:
            opened.append(open_cache(cache))
        return AugmentedSource(opened[0], opened[1:], [view.name for view in views])
    except BaseException:
        for reader in opened:
            reader.close()
        raise
