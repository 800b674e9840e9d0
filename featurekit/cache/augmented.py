"""A clean source whose train split is widened by degraded views of it: train on clean + views, judge on clean.

`AugmentedSource` reads like any `SplitAccess` (so fitting, streaming and compare take it unchanged):

- rows 0 .. n-1 are the clean source's rows, every split, in its order;
- then, view by view, the `train` rows of that view's cache (the same training images, degraded), as `train`.

`valid` and `test` therefore stay the clean ones, and a threshold chosen on valid is chosen on clean images.
Its `fingerprint` and `content_checksums` are the clean source's (they name the features that valid and test
scores come from, so a probe fitted here scores any view or test set of the clean cache like any other);
what the views add is named by `train_views`, `train_view_caches` and `run_name` (the folder of its probes,
``<clean run name>-tv-<hash>``, the hash covering each view's name, fingerprint and content checksums), so a
probe fitted on other views, or on views re-extracted since, lives in another folder and is never reused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from featurekit.cache.access import SplitAccess
from featurekit.errors import FeaturekitError


class AugmentedSource(SplitAccess):
    """The clean source plus the train rows of one source per view; it owns (and closes) all of them.

    Args:
        clean: The clean source (every split).
        views: Sources of degraded copies of the clean source's images; only their `train` rows are used.
        names: The canonical text of each view (`featurekit.views.View.name`), in the order of `views`.
        column_orders: For each view, its columns in the clean source's order (None: the same order already), for
            the fusion of several members' views.

    Raises:
        FeaturekitError: A view holds other features (width, classes) or train images the clean source does not
            train on (another folder, another split, other file contents).
    """

    def __init__(self, clean: SplitAccess, views: list[SplitAccess], names: list[str],
                 column_orders: list[np.ndarray | None] | None = None):
        self._clean, self.views = clean, list(views)
        self.train_views = tuple(names)
        # Valid, test and the embedding are the clean source's.
        self.feature_dim, self.class_names = clean.feature_dim, clean.class_names
        self.positive_class, self.fingerprint = clean.positive_class, clean.fingerprint
        self.content_checksums = clean.content_checksums
        orders = column_orders or [None] * len(self.views)
        self._parts = parts = [(clean, np.arange(clean.n_rows), None)] + [
            (view, self._check_view(view), order) for view, order in zip(self.views, orders)]
        self._offsets = np.cumsum([0] + [len(rows) for _, rows, _ in parts])
        self.n_rows = int(self._offsets[-1])
        self.labels = np.concatenate([source.labels[rows] for source, rows, _ in parts])
        self.splits = np.concatenate([clean.splits] + [np.full(len(rows), "train") for _, rows, _ in parts[1:]])
        self.paths = [source.paths[i] for source, rows, _ in parts for i in rows]
        self.train_view_caches = tuple({"view": name, "caches": [str(p) for p in view.member_paths],
                                        "fingerprint": view.fingerprint, "content_checksums": view.content_checksums}
                                       for name, view in zip(names, self.views))
        digest = hashlib.sha256(json.dumps(self.train_view_caches, sort_keys=True, default=str).encode()).hexdigest()
        self.path = clean.path  # for messages, as CacheReader.path and FusedCache.path
        self.name = clean.name
        self.run_name = f"{clean.run_name}-tv-{digest[:12]}"
        self.described = f"{clean.described} with train views {', '.join(names)}"
        self.attrs = dict(clean.attrs) | {"train_views": list(names)}

    def _check_view(self, view: SplitAccess) -> np.ndarray:
        """The view's train rows, after checking they are degraded copies of clean training images."""
        clean = self.clean
        if view.feature_dim != clean.feature_dim or view.class_names != clean.class_names:
            raise FeaturekitError(
                f"The view cache {view.name} holds other features than {clean.name} ({view.feature_dim} features of "
                f"classes {view.class_names}, not {clean.feature_dim} of {clean.class_names}).",
                received=view.described, fix="Extract the view with the clean cache's embedder (compare and fit do).")
        rows = view.split_indices("train")
        clean_train = {clean.paths[i]: i for i in clean.split_indices("train")}
        clean_sha, view_sha = clean.sha256, view.sha256
        for row in rows:
            match = clean_train.get(view.paths[row])
            if match is None or clean_sha[match] != view_sha[row] or clean.labels[match] != view.labels[row]:
                raise FeaturekitError(
                    f"The view cache {view.name} is not of {clean.name}'s training images: its train image "
                    f"{view.paths[row]} is not a clean training image with the same contents and label.",
                    received=view.described,
                    fix="Re-extract the view's train split from the clean cache's data folder (`views_split` train).")
        return rows

    # ---- the SplitAccess interface

    @property
    def clean(self) -> SplitAccess:
        return self._clean

    def close(self) -> None:
        for source in (self.clean, *self.views):
            source.close()

    @property
    def member_paths(self) -> list[Path]:
        return [path for source in (self.clean, *self.views) for path in source.member_paths]

    def verify_contents(self) -> list[str]:
        """Verify the clean source and every view (see `CacheReader.verify_contents`)."""
        return [note for source in (self.clean, *self.views) for note in source.verify_contents()]

    def _plan_blocks(self, rows: np.ndarray) -> list[np.ndarray]:
        """Each part's own blocks, part after part; a block never spans two parts."""
        return [start + np.searchsorted(part_rows, block)
                for (source, part_rows, _), start, stop in zip(self._parts, self._offsets, self._offsets[1:])
                for block in source._plan_blocks(part_rows[rows[(rows >= start) & (rows < stop)] - start])]

    def _read_block(self, rows: np.ndarray) -> np.ndarray:
        index = int(np.searchsorted(self._offsets, rows[0], side="right")) - 1
        source, part_rows, order = self._parts[index]
        features = source._read_block(part_rows[rows - self._offsets[index]])
        return features if order is None else features[:, order]
