"""What fitting and compare ask of any source of rows, a cache or a fusion of caches: one interface.

A source says how it splits a run of rows into blocks (`_plan_blocks`) and how it reads the features of one
block (`_read_block`); loading a split, streaming it in shuffled batches, sizes and split checks are written
once, here, for every source.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np

from featurekit.errors import FeaturekitError


def rebatch(blocks: Iterable[tuple[np.ndarray, np.ndarray]], batch_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(X, y) blocks of any sizes as batches of exactly `batch_rows` rows (the last one may be shorter)."""
    x_left, y_left = [], []  # the rows of earlier blocks that did not fill a batch
    for x, y in blocks:
        x, y = np.concatenate([*x_left, x]), np.concatenate([*y_left, y])
        whole = len(x) - len(x) % batch_rows
        for start in range(0, whole, batch_rows):
            yield x[start:start + batch_rows], y[start:start + batch_rows]
        x_left, y_left = [x[whole:]], [y[whole:]]
    if x_left and len(x_left[0]):
        yield x_left[0], y_left[0]


class SplitAccess(AbstractContextManager):
    """Rows of a cache or a fusion: split rows, features in memory or streamed, sizes, checks, names.

    Subclasses provide `labels`, `splits`, `paths`, `n_rows`, `feature_dim`, `class_names`, `positive_class`,
    `attrs`, `fingerprint`, `content_checksums`, `member_paths` (the cache files read), `path` (for messages; a
    fusion's name, not a file), `name` (in tables), `run_name` (the folder of its fitted probes), `described` (how
    messages name it: "cache x.h5", "fusion fuse(a.h5+b.h5)"), `close()`, `verify_contents()` (check the contents
    against the checksums recorded when it was made; notes for what cannot be checked) and the two block methods:
    `_plan_blocks(rows)` cuts `rows` (ascending) into blocks read at once, in file order (a block may be empty),
    and `_read_block(rows)` reads the features (float32) of one block's rows, in the order given.
    """

    # Views of the train split read beside its clean rows, and their caches (`featurekit.cache.augmented`).
    train_views: tuple[str, ...] = ()
    train_view_caches: tuple[dict[str, Any], ...] = ()

    @property
    def clean(self) -> SplitAccess:
        """The source of the valid and test rows and of the embedding: itself (an AugmentedSource: the clean source
        whose train split it widens with views)."""
        return self

    def provenance(self, keys: tuple[str, ...]) -> dict[str, Any]:
        """What a fitted probe records about the features it was fitted on: the cache, its fingerprint, and the
        attributes `keys` of its embedding (a fusion: those of each member too)."""
        return {"cache": str(self.path), "cache_fingerprint": self.fingerprint,
                "embedding": {key: self.attrs.get(key) for key in keys}}

    def __exit__(self, *exc) -> None:
        self.close()

    def split_indices(self, split: str | None) -> np.ndarray:
        """Row numbers of one split (all rows for None), ascending."""
        return np.arange(self.n_rows) if split is None else np.flatnonzero(self.splits == split)

    def load(self, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Features (float32) and labels of one split (or all rows), in memory, in row order."""
        rows = self.split_indices(split)
        features = np.empty((len(rows), self.feature_dim), np.float32)  # filled block by block: one copy in memory
        start = 0
        for block in filter(len, self._plan_blocks(rows)):
            features[start:start + len(block)] = self._read_block(block)
            start += len(block)
        return features, self.labels[rows]

    def iter_batches(self, split: str | None, batch_rows: int, shuffle: bool = False,
                     seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream (X, y) batches of one split with memory bounded by one block.

        Shuffling is at block level (block order) plus within each block, so it never reads the whole source.
        """
        return rebatch(self._blocks(self.split_indices(split), shuffle, seed), batch_rows)

    def _blocks(self, rows: np.ndarray, shuffle: bool, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        plan = self._plan_blocks(rows)
        rng = np.random.default_rng(seed)
        for block in filter(len, [plan[index] for index in rng.permutation(len(plan))] if shuffle else plan):
            order = rng.permutation(len(block)) if shuffle else slice(None)
            yield self._read_block(block)[order], self.labels[block][order]

    def nbytes(self, split: str | None = None) -> int:
        """Bytes the split's features take in memory as float32."""
        return len(self.split_indices(split)) * self.feature_dim * 4

    def require_splits(self, splits: tuple[str, ...] = ("train", "valid", "test")) -> None:
        """Refuse rows whose splits cannot train and evaluate a binary classifier."""
        for split in splits:
            labels = self.labels[self.splits == split]
            if len(labels) == 0:
                raise FeaturekitError(f"The {self.described} has no {split!r} split.", received=self.described,
                                      fix="Re-extract with split fractions that give every split images, e.g. "
                                      "`split` 0.7,0.15,0.15.")
            if len(np.unique(labels)) < 2:
                only = self.class_names[int(labels[0])] if self.class_names else int(labels[0])
                raise FeaturekitError(f"The {split!r} split of the {self.described} holds one class only ({only!r}).",
                                      received=self.described,
                                      fix="Add images of both classes, or change the split fractions.")
