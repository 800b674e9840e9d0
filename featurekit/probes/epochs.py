"""One base for the probes that train in epochs over chunks: the Keras head and the SGD linear probe.

`EpochProbe` owns everything but the update itself: in-memory `fit` and streamed `fit_stream` share
one loop (a statistics pass, then epochs of shuffled chunks cut into steps), validation after every
epoch ("val_loss", "val_auc"), early stopping that keeps the best epoch, and prediction in memory or
over chunks. A subclass says how one step updates the model (`_step`), how a score is computed
(`_decision`), and how to snapshot and restore its state for the best epoch.

Randomness is local: `random_state` goes through `check_random_state` once per fit, and every
shuffle and initialiser is seeded from it. Nothing seeds Python's, NumPy's or a backend's global
generator.
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from featurekit.probes.chunks import (BatchesFactory, ProbeInputError, binary_classes, check_chunk, empty_epoch_error,
                                      encode_labels, open_epoch, split_batch)

LabelledChunks = Callable[[int], Iterable[tuple[np.ndarray, np.ndarray]]]

# Sub-streams of one fit's seed, so that e.g. adding a shuffle never changes the initial weights.
SEED_MODEL, SEED_ROWS, SEED_CHUNKS, SEED_EXTRA = 0, 1, 2, 3
# Bytes of one float64 block when accumulating statistics: scikit-learn's copies stay small for any chunk and width.
STATISTICS_BLOCK_BYTES = 8 * 2**20


class EpochProbe(ClassifierMixin, BaseEstimator):
    """Base class: a binary probe trained for epochs over (possibly streamed) chunks of features.

    Subclasses set `_input_dtype` (and have a `chunk_rows` parameter where `fit` should cut in-memory arrays
    into chunks of that many rows, rather than train on one chunk) and implement the hooks
    `_start_training(n_rows, seed)` (a fresh model for `n_features_in_` inputs; the statistics are in
    `mean_`/`scale_`), `_step(X, y)` (one update on a shuffled batch of raw features and 0/1 float labels,
    returning its mean training loss), `_decision(X)` (float64 scores of raw features, > 0 meaning the
    positive class, in training or after it), `_get_state()` / `_set_state(state)` (a snapshot of the best
    epoch) and `_finish_training(chunks, n_rows, seed)` (the trained state into the fitted attributes);
    `_loss` and `_proba` have defaults. A step takes `batch_size_` rows where the probe sets that attribute
    in `_start_training`, else a whole chunk.

    Common parameters (each subclass lists them in its own signature):
        epochs: Maximum number of passes over the training chunks.
        patience: Epochs without improvement of `monitor` before stopping (valid data only).
        monitor: "val_loss" or "val_auc"; the best epoch by this value is kept.
        standardize: Train on features scaled to zero mean and unit variance (training statistics).
        random_state: Seed of initial weights, dropout and shuffles (None: fresh randomness).
        verbose: Print one line per epoch when > 0.

    Attributes:
        classes_: The two labels; `classes_[1]` is the positive class.
        n_features_in_: Embedding size.
        history_: Per-epoch lists: "loss" (mean training loss), and with valid data "val_loss"
            and "val_auc". A loss that never falls is the first sign of a collapsed probe.
        best_epoch_: 0-based index into `history_` of the state kept (the last epoch without valid data).
        mean_, scale_: Training feature means and standard deviations (None when standardize=False).
    """

    _parameter_constraints: dict = {
        "epochs": [Interval(Integral, 1, None, closed="left")],
        "patience": [Interval(Integral, 1, None, closed="left")],
        "monitor": [StrOptions({"val_loss", "val_auc"})],
        "standardize": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }
    _input_dtype: Any = np.float32

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # one score: real vs fake
        return tags

    # -- training ------------------------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any, *, X_val: Any = None, y_val: Any = None) -> "EpochProbe":
        """Train on in-memory arrays; with validation data, stop early and keep the best epoch.

        Args:
            X: Training features, shape (n, d).
            y: Training labels, two classes.
            X_val: Validation features for early stopping and the best epoch (optional, keyword only).
            y_val: Validation labels.

        Returns:
            self
        """
        X, y = validate_data(self, X, y, dtype=self._input_dtype)
        classes = binary_classes(y)
        y01 = encode_labels(y, classes)
        if (X_val is None) != (y_val is None):
            raise ProbeInputError("Validation features and labels go together.",
                                  received=f"X_val {'missing' if X_val is None else 'given'}, "
                                           f"y_val {'missing' if y_val is None else 'given'}",
                                  fix="Pass both X_val and y_val, or neither.")
        valid = None if X_val is None else validate_data(self, X_val, y_val, reset=False, dtype=self._input_dtype)
        n, seed = len(X), self._fit_seed()
        rows = getattr(self, "chunk_rows", None) or n

        def chunks(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
            # Chunk order changes per epoch, as reader.iter_batches(shuffle=True, seed=epoch) does.
            starts = np.random.default_rng([seed, SEED_CHUNKS, epoch]).permutation(np.arange(0, n, rows))
            return ((X[s : s + rows], y01[s : s + rows]) for s in starts)

        return self._fit_chunks(chunks, self._valid_chunks(valid, classes), classes, seed)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_stream(
        self,
        batches_factory: BatchesFactory,
        *,
        valid: tuple[Any, Any] | BatchesFactory | None = None,
        classes: tuple = (0, 1),
    ) -> "EpochProbe":
        """Train from chunks re-read every epoch; memory holds a chunk, never the whole matrix.

        Each chunk is shuffled within itself; shuffling across chunks is the iterator's job
        (`iter_batches(..., shuffle=True, seed=epoch)`).

        Args:
            batches_factory: Returns a new iterator of (X_chunk, y_chunk) per call; called with the
                epoch number if it takes an argument (see `featurekit.probes.chunks`).
            valid: (X_valid, y_valid) arrays or a batches factory, for the best epoch and early stopping.
            classes: The two labels, negative then positive (streamed labels are not scanned first).

        Returns:
            self
        """
        classes = binary_classes(np.asarray(classes), "declared")
        for name in ("feature_names_in_", "n_features_in_"):  # left by an earlier fit (a refit may change the width)
            self.__dict__.pop(name, None)
        training = self._labelled(batches_factory, classes, "training")
        return self._fit_chunks(training, self._valid_chunks(valid, classes), classes, self._fit_seed())

    def _fit_seed(self) -> int:
        """One integer per fit, drawn from `random_state`: the root of every random stream of the fit."""
        return int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

    def _valid_chunks(self, valid: tuple[Any, Any] | BatchesFactory | None,
                      classes: np.ndarray) -> LabelledChunks | None:
        """Validation chunks from a batches factory, or from a (X_valid, y_valid) pair: one chunk, refused up front
        if it holds one class (early stopping on one class would mean nothing)."""
        if valid is not None and not callable(valid):
            binary_classes(encode_labels(valid[1], classes, "valid"), "valid")
            pair = [valid]
            valid = lambda: iter(pair)  # noqa: E731
        return None if valid is None else self._labelled(valid, classes, "valid")

    def _labelled(self, factory: BatchesFactory, classes: np.ndarray, where: str) -> LabelledChunks:
        """The factory's chunks, each checked (width, finite, labels known) and its labels encoded 0/1."""
        def chunks(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
            for batch in open_epoch(factory, epoch):
                Xc, yc = split_batch(batch)
                Xc = check_chunk(Xc, getattr(self, "n_features_in_", None), self._input_dtype)
                yc = encode_labels(yc, classes, where)
                if len(yc) != len(Xc):
                    raise ProbeInputError(f"A {where} chunk has more or fewer labels than rows.",
                                          received=f"{len(Xc)} rows and {len(yc)} labels",
                                          fix="Yield (X_chunk, y_chunk) pairs of equal length.")
                yield Xc, yc
        return chunks

    def _scan(self, chunks: LabelledChunks) -> int:
        """Pass 0: rows, width and feature statistics; bad chunks fail here, before any training."""
        scaler, rows = StandardScaler(), 0
        for Xc, _ in chunks(0):
            self.n_features_in_ = Xc.shape[1]  # the first chunk's width: later chunks are checked against it
            rows += len(Xc)
            if self.standardize:  # in blocks: the scaler's float64 copies stay small for any chunk
                block = max(1, STATISTICS_BLOCK_BYTES // (8 * max(1, Xc.shape[1])))
                for start in range(0, len(Xc), block):
                    scaler.partial_fit(Xc[start : start + block])
        if rows == 0:
            raise empty_epoch_error(0)
        self.mean_ = scaler.mean_.astype(np.float32) if self.standardize else None
        self.scale_ = scaler.scale_.astype(np.float32) if self.standardize else None
        return rows

    def _fit_chunks(self, chunks: LabelledChunks, valid: LabelledChunks | None, classes: np.ndarray,
                    seed: int) -> "EpochProbe":
        """The one training loop of every epoch probe."""
        self.classes_ = classes
        n_rows = self._scan(chunks)
        self._start_training(n_rows, seed)
        history: dict[str, list[float]] = {"loss": []}
        best_value, best_state, best_epoch = None, None, 0
        for epoch in range(self.epochs):
            rng = np.random.default_rng([seed, SEED_ROWS, epoch])
            total, rows = 0.0, 0
            for Xc, yc in chunks(epoch):
                order = rng.permutation(len(Xc))  # runs of one class stall SGD and Adam alike
                step = getattr(self, "batch_size_", None) or len(Xc)
                for start in range(0, len(Xc), step):
                    idx = order[start : start + step]
                    total += self._step(Xc[idx], yc[idx]) * len(idx)
                rows += len(Xc)
            if rows == 0:
                raise empty_epoch_error(epoch)
            history["loss"].append(total / rows)
            if valid is not None:
                for key, value in self._validate(valid).items():
                    history.setdefault(key, []).append(value)
                value = history["val_loss"][-1] if self.monitor == "val_loss" else -history["val_auc"][-1]
                if best_value is None or value < best_value:
                    best_value, best_state, best_epoch = value, self._get_state(), epoch
            if self.verbose:
                figures = " - ".join(f"{key} {values[-1]:.4f}" for key, values in history.items())
                print(f"epoch {epoch + 1}/{self.epochs} - {figures}", flush=True)
            if valid is not None and epoch - best_epoch >= self.patience:  # epochs without improvement
                break
        if best_state is not None:
            self._set_state(best_state)
        self.history_, self.best_epoch_ = history, (best_epoch if valid is not None else len(history["loss"]) - 1)
        self._finish_training(chunks, n_rows, seed)
        return self

    def _validate(self, valid: LabelledChunks) -> dict[str, float]:
        z, t = map(np.concatenate, zip(*((self._decision(Xc), yc) for Xc, yc in valid(0))))
        return {"val_loss": float(self._loss(t, z)), "val_auc": float(roc_auc_score(t, z))}

    def _loss(self, y: np.ndarray, z: np.ndarray) -> float:
        """Mean loss of 0/1 labels `y` against scores `z` ("val_loss"): binary cross-entropy of sigmoid(z),
        written on logits, so exact where the sigmoid saturates."""
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    def _proba(self, z: np.ndarray) -> np.ndarray:
        """Columns P(classes_[0]), P(classes_[1]) from scores: the logistic link (float64 and clipped: no overflow
        warning, and p < 1 stays representable far into the tails) unless a subclass calibrates."""
        p = 1.0 / (1.0 + np.exp(-np.clip(np.asarray(z, dtype=np.float64), -500.0, 500.0)))
        return np.column_stack([1.0 - p, p])

    # -- inference -----------------------------------------------------------------------------

    def decision_function(self, X: Any) -> np.ndarray:
        """Score of the positive class (a logit or a margin); > 0 means `classes_[1]`.

        Returns:
            Shape (n,).
        """
        check_is_fitted(self)
        return self._decision(validate_data(self, X, reset=False, dtype=self._input_dtype))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in `classes_` order.

        Returns:
            Shape (n, 2); rows sum to 1.
        """
        return self._proba(self.decision_function(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels (the positive class where the score is > 0)."""
        positive = self.decision_function(X) > 0  # first: raises NotFittedError before classes_
        return self.classes_[positive.astype(int)]

    def predict_proba_stream(self, batches_factory: BatchesFactory) -> np.ndarray:
        """`predict_proba` over chunks, rows in iteration order (use an unshuffled iterator).

        Returns:
            Shape (n, 2) for all rows the iterator yields.
        """
        check_is_fitted(self)
        out = [self._proba(self._decision(check_chunk(split_batch(batch)[0], self.n_features_in_, self._input_dtype)))
               for batch in open_epoch(batches_factory, 0)]
        return np.concatenate(out) if out else np.empty((0, 2))
