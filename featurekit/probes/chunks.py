"""Chunks of labelled features: the input every probe trains from, in memory or streamed.

A batches factory is a callable returning a NEW iterator of `(X_chunk, y_chunk)` numpy pairs each
time it is called, e.g. `lambda: reader.iter_batches("train", 4096, shuffle=True)`. If it accepts
one positional argument it is called with the epoch number, so chunk order can change per epoch:
`lambda epoch: reader.iter_batches("train", 4096, shuffle=True, seed=epoch)`.

The checks here raise `ProbeInputError`: user-facing like every FeaturekitError, and a ValueError so
scikit-learn (and its estimator checks) treat it as the invalid-input error it is.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from sklearn.utils.multiclass import check_classification_targets

from featurekit.errors import FeaturekitError

BatchesFactory = Callable[..., Iterable]
# Bytes of one float64 block when accumulating statistics: the copies stay small for any chunk and width.
STATISTICS_BLOCK_BYTES = 8 * 2**20


class ProbeInputError(FeaturekitError, ValueError):
    """Bad training or scoring input: user-facing like every FeaturekitError, and a ValueError so
    scikit-learn (and its estimator checks) treat it as the invalid-input error it is."""


def binary_classes(y: np.ndarray, where: str = "training") -> np.ndarray:
    """The two sorted classes of `y`; the second one is the positive class (`fake` = 1)."""
    check_classification_targets(y)
    classes = np.unique(y)
    if classes.size != 2:
        problem = (
            f"The {where} split holds one class only ({classes[0]!r}); a probe needs both real "
            "and fake samples."
            if classes.size == 1
            else f"Only binary classification is supported (real vs fake), but the {where} split "
            f"has {classes.size} classes."
        )
        raise ProbeInputError(
            problem,
            received=f"classes {classes.tolist()[:10]}",
            fix="Check the dataset layout and the split assignment of the cache.",
        )
    return classes


def encode_labels(y: np.ndarray | None, classes: np.ndarray, where: str = "training") -> np.ndarray:
    """Labels as 0/1 float32 (index into `classes`); refuses missing labels and labels not in `classes`."""
    if y is None:
        raise ProbeInputError(
            f"The {where} chunks hold features only; training needs labels.",
            received="chunks of X without y",
            fix="Yield (X_chunk, y_chunk) pairs, e.g. from reader.iter_batches(split, rows).",
        )
    y = np.asarray(y).ravel()
    unknown = np.setdiff1d(np.unique(y), classes)
    if unknown.size:
        raise ProbeInputError(
            f"The {where} data has labels the probe does not know.",
            received=f"labels {unknown.tolist()[:10]}, known classes {list(classes)}",
            fix="Use the same class names for every split (pass classes= to fit_stream).",
        )
    return (y == classes[1]).astype(np.float32)


def open_epoch(batches_factory: BatchesFactory, epoch: int) -> Iterator:
    """Call the factory for one epoch (with the epoch number if it takes an argument)."""
    if not callable(batches_factory):
        raise ProbeInputError(
            "Streaming needs a function that returns a new iterator of (X, y) chunks each epoch.",
            received=type(batches_factory).__name__,
            fix='Pass e.g. `lambda epoch: reader.iter_batches("train", 4096, shuffle=True, seed=epoch)`.',
        )
    try:
        params = inspect.signature(batches_factory).parameters.values()
        takes_epoch = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params)
    except (TypeError, ValueError):  # builtins without a signature
        takes_epoch = False
    return iter(batches_factory(epoch) if takes_epoch else batches_factory())


def split_batch(batch: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A chunk as (X, y); `y` is None when the iterator yields features only."""
    if isinstance(batch, (tuple, list)):
        return np.asarray(batch[0]), (np.asarray(batch[1]) if len(batch) > 1 else None)
    return np.asarray(batch), None


def check_chunk(X: Any, n_features: int | None, dtype: Any = np.float32) -> np.ndarray:
    """A chunk of features as a 2-D finite array of `dtype` with `n_features` columns (any width if None).

    `dtype` may be a list, as in scikit-learn's `validate_data`: a chunk of a listed dtype is kept as
    it is, any other one becomes the first.
    """
    X = np.asarray(X)
    if isinstance(dtype, (list, tuple)):
        dtype = X.dtype if X.dtype in [np.dtype(d) for d in dtype] else dtype[0]
    X = np.asarray(X, dtype=dtype)
    if X.ndim != 2 or (n_features is not None and X.shape[1] != n_features):
        raise ProbeInputError(
            "A chunk of features has the wrong shape.",
            received=f"shape {X.shape}, expected (rows, {n_features if n_features is not None else 'features'})",
            fix="Stream every chunk from the same cache and split.",
        )
    if not np.isfinite(X).all():
        raise ProbeInputError(
            "Features contain NaN or inf.",
            received=f"{int((~np.isfinite(X)).sum())} non-finite values in a chunk",
            fix="Re-extract the cache; a backbone run with random weights can overflow.",
        )
    return X


def empty_epoch_error(epoch: int) -> ProbeInputError:
    """The error for a factory that yields nothing (usually a generator object reused across epochs)."""
    return ProbeInputError(
        f"The batches factory yielded no rows in epoch {epoch}.",
        received="an empty or already exhausted iterator",
        fix="Return a NEW iterator on every call (a lambda around reader.iter_batches), not a "
        "generator object created once.",
    )


def in_memory_only_error(name: str) -> FeaturekitError:
    """The error for probes that cannot train from chunks."""
    return FeaturekitError(
        f"Probe '{name}' needs the whole training matrix in memory; it cannot train from chunks.",
        received=f"probe {name} with streamed features",
        fix="Use the streaming probes (head, logreg, linsvm), or load the split into memory with "
        "reader.load('train') if it fits.",
    )


class FeatureStatistics:
    """Per-feature mean and standard deviation accumulated chunk by chunk, in float64.

    Chunks are merged with Chan et al.'s pairwise update (count, mean, sum of squared deviations),
    which stays accurate where the textbook sum-of-squares formula cancels (large means, small spread).
    """

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def update(self, X: np.ndarray) -> None:
        rows = max(1, STATISTICS_BLOCK_BYTES // (8 * max(1, X.shape[1])))
        for start in range(0, len(X), rows):
            block = np.array(X[start : start + rows], dtype=np.float64)  # a copy: modified in place below
            n = len(block)
            if n == 0:
                continue
            mean = block.mean(axis=0)
            block -= mean  # in place: one float64 block at a time, whatever the chunk
            block *= block
            m2 = block.sum(axis=0)
            if self.mean is None:
                self.count, self.mean, self.m2 = n, mean, m2
                continue
            total = self.count + n
            delta = mean - self.mean
            self.mean = self.mean + delta * (n / total)
            self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
            self.count = total

    def mean_and_scale(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 mean and scale; constant features keep scale 1, as scikit-learn's StandardScaler does."""
        std = np.sqrt(self.m2 / self.count)
        return self.mean.astype(np.float32), np.where(std > 1e-12 * np.maximum(1.0, np.abs(self.mean)), std,
                                                      1.0).astype(np.float32)
