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


class ProbeInputError(FeaturekitError, ValueError):
    """Bad training or scoring input: user-facing like every FeaturekitError, and a ValueError so
    scikit-learn (and its estimator checks) treat it as the invalid-input error it is."""


def binary_classes(y: np.ndarray, where: str = "training") -> np.ndarray:
    """The two sorted classes of `y`; the second one is the positive class (`fake` = 1)."""
    check_classification_targets(y)
    classes = np.unique(y)
    if classes.size != 2:
        problem = (f"The {where} split holds one class only ({classes[0]!r}); a probe needs both real and fake samples."
                   if classes.size == 1 else f"Only binary classification is supported (real vs fake), but the {where} "
                   f"split has {classes.size} classes.")
        raise ProbeInputError(problem, received=f"classes {classes.tolist()[:10]}",
                              fix="Check the dataset layout and the split assignment of the cache.")
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
