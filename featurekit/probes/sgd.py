"""A linear probe trained by SGD over chunks: memory holds one chunk and the model, never the matrix.

The streamed stand-in for the in-memory logreg and linsvm pipelines (loss "log_loss" or "hinge").
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.utils._param_validation import Interval, StrOptions

from featurekit.probes.epochs import SEED_EXTRA, SEED_MODEL, EpochProbe


class SGDLinearProbe(EpochProbe):
    """StandardScaler statistics in one pass, then SGD (`SGDClassifier.partial_fit`) chunk by chunk.

    With valid data the epoch with the best `monitor` (valid ROC AUC by default) is kept. For
    `loss="hinge"` (a linear SVM), `predict_proba` comes from a Platt sigmoid without intercept fitted
    on training margins of at most `calibration_rows` rows sampled during one extra pass; without an
    intercept, `predict`, `decision_function > 0` and `predict_proba > 0.5` always agree.

    Args:
        loss: "log_loss" (logistic regression) or "hinge" (linear SVM).
        alpha: L2 regularisation strength of SGDClassifier.
        epochs: Passes over the training chunks.
        chunk_rows: Chunk size used by `fit` on in-memory arrays.
        calibration_rows: Rows sampled for the hinge probe's sigmoid calibration.
        patience: Epochs without improvement of `monitor` before stopping (valid data only).
        monitor: "val_auc" or "val_loss" (mean log loss, or hinge loss for the SVM).
        standardize: Scale features to zero mean and unit variance first (training statistics).
        random_state: Seed of the SGD and of the shuffles; nothing global is seeded.
        verbose: Print one line per epoch when > 0.

    Attributes:
        coef_: Weights on standardised features, shape (n_features,).
        intercept_: Bias (a float).
        calibration_slope_: `predict_proba` is sigmoid(calibration_slope_ * decision_function);
            1 for the log loss (the logistic link itself).
        classes_, n_features_in_, history_, best_epoch_, mean_, scale_: see `EpochProbe`.
    """

    _parameter_constraints: dict = {
        **EpochProbe._parameter_constraints,
        "loss": [StrOptions({"log_loss", "hinge"})],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "chunk_rows": [Interval(Integral, 1, None, closed="left")],
        "calibration_rows": [Interval(Integral, 1, None, closed="left")],
    }
    _input_dtype = [np.float64, np.float32]

    def __init__(
        self,
        loss: str = "log_loss",
        alpha: float = 1e-4,
        epochs: int = 5,
        chunk_rows: int = 4096,
        calibration_rows: int = 100_000,
        patience: int = 5,
        monitor: str = "val_auc",
        standardize: bool = True,
        random_state: int | None = 0,
        verbose: int = 0,
    ):
        self.loss = loss
        self.alpha = alpha
        self.epochs = epochs
        self.chunk_rows = chunk_rows
        self.calibration_rows = calibration_rows
        self.patience = patience
        self.monitor = monitor
        self.standardize = standardize
        self.random_state = random_state
        self.verbose = verbose

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return X if self.mean_ is None else (X - self.mean_) / self.scale_

    def _start_training(self, n_rows: int, seed: int) -> None:
        sgd_seed = int(np.random.default_rng([seed, SEED_MODEL]).integers(2**31 - 1))
        self._sgd = SGDClassifier(loss=self.loss, alpha=self.alpha, random_state=sgd_seed)

    def _step(self, X: np.ndarray, y: np.ndarray) -> float:
        Xs = self._scaled(X)
        self._sgd.partial_fit(Xs, y, classes=[0.0, 1.0])
        self.coef_, self.intercept_ = self._sgd.coef_[0], float(self._sgd.intercept_[0])  # what `_decision` scores
        return self._loss(y, self._sgd.decision_function(Xs))  # the chunk's loss right after its update

    def _loss(self, y: np.ndarray, z: np.ndarray) -> float:
        if self.loss == "hinge":
            return float(np.mean(np.maximum(0.0, 1.0 - (2.0 * y - 1.0) * z)))
        return super()._loss(y, z)

    def _get_state(self) -> tuple[np.ndarray, float]:
        return self.coef_.copy(), self.intercept_

    def _set_state(self, state: tuple[np.ndarray, float]) -> None:
        self.coef_, self.intercept_ = state

    def _decision(self, X: np.ndarray) -> np.ndarray:
        return self._scaled(X) @ self.coef_ + self.intercept_

    def _finish_training(self, chunks: Any, n_rows: int, seed: int) -> None:
        del self._sgd
        self.calibration_slope_ = self._calibrate(chunks, n_rows, seed) if self.loss == "hinge" else 1.0

    def _calibrate(self, chunks: Any, n_rows: int, seed: int) -> float:
        """Platt's slope on a bounded random sample of training margins: memory stays flat."""
        keep = min(1.0, self.calibration_rows / n_rows)
        rng = np.random.default_rng([seed, SEED_EXTRA])
        margins, labels = [], []
        for Xc, yc in chunks(0):
            mask = rng.random(len(Xc)) < keep
            margins.append(self._decision(Xc[mask]))
            labels.append(yc[mask])
        m, t = np.concatenate(margins), np.concatenate(labels)
        if np.unique(t).size < 2:  # sample too small to see both classes: plain logistic link
            return 1.0
        return float(LogisticRegression(fit_intercept=False, C=1e4).fit(m[:, None], t).coef_[0, 0])

    def _proba(self, z: np.ndarray) -> np.ndarray:
        return super()._proba(self.calibration_slope_ * np.asarray(z, dtype=np.float64))
