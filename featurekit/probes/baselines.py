"""Classical probes on cached embeddings: named scikit-learn pipelines, plus a streamed linear probe.

In memory (the usual case; a 70k x 2048 float32 cache is 0.6 GB):
    logreg   StandardScaler -> LogisticRegression (lbfgs).
    linsvm   StandardScaler -> LinearSVC, wrapped in CalibratedClassifierCV(method="sigmoid",
             ensemble=False): Platt's sigmoid is fitted on 3-fold out-of-fold SVM margins of the
             TRAINING split, then the SVM is refitted on all of it. So `predict_proba` exists
             without touching the valid split, and ranks exactly like the SVM margin.
    knn      Cosine k-nearest neighbours (brute force); distance-weighted votes give finer scores.
    rbfsvm   StandardScaler -> SVC(kernel="rbf"), calibrated like linsvm (5 folds). Opt-in: its fit
             time grows at least quadratically with the number of samples.

Larger than memory: `SGDLinearProbe` (loss "log_loss" for logreg, "hinge" for linsvm) fits a
StandardScaler with `partial_fit` in one pass over the chunks, then SGD with `partial_fit` for a
few epochs; memory holds one chunk and the model, whatever the number of rows. kNN and kernel SVMs
need every training row at once and refuse streaming with a FeaturekitError.

A batches factory is a callable returning a NEW iterator of `(X_chunk, y_chunk)` numpy pairs each
time it is called, e.g. `lambda: reader.iter_batches("train", 4096, shuffle=True)`. If it accepts
one positional argument it is called with the epoch number, so chunk order can change per epoch:
`lambda epoch: reader.iter_batches("train", 4096, shuffle=True, seed=epoch)`.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from featurekit.errors import FeaturekitError

BatchesFactory = Callable[..., Iterable]


class ProbeInputError(FeaturekitError, ValueError):
    """Bad training or scoring input: user-facing like every FeaturekitError, and a ValueError so
    scikit-learn (and its estimator checks) treat it as the invalid-input error it is."""


# ---------------------------------------------------------------------------------------------
# Helpers shared with head.py: binary targets and batch factories.


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


def encode_labels(y: np.ndarray, classes: np.ndarray, where: str = "training") -> np.ndarray:
    """Labels as 0/1 float32 (index into `classes`); refuses labels not in `classes`."""
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


def empty_epoch_error(epoch: int) -> ProbeInputError:
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


# ---------------------------------------------------------------------------------------------
# In-memory pipelines.


def make_logreg(C: float = 1.0, max_iter: int = 2000, class_weight: Any = None) -> Pipeline:
    """StandardScaler -> LogisticRegression(lbfgs); deterministic, so no seed."""
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("clf", LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight)),
        ]
    )


def make_linsvm(
    C: float = 1.0, max_iter: int = 10_000, calibration_cv: int = 3, random_state: int | None = 0
) -> Pipeline:
    """StandardScaler -> LinearSVC with sigmoid (Platt) calibration on out-of-fold training margins."""
    svm = LinearSVC(C=C, max_iter=max_iter, random_state=random_state)
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("clf", CalibratedClassifierCV(svm, method="sigmoid", cv=calibration_cv, ensemble=False)),
        ]
    )


def make_knn(n_neighbors: int = 15, weights: str = "distance") -> Pipeline:
    """Cosine nearest neighbours: the probe that assumes least about the embedding's geometry."""
    # Cosine ignores embedding norms, which vary with image content more than with real/fake;
    # sklearn supports the cosine metric with brute-force search only.
    knn = KNeighborsClassifier(n_neighbors=n_neighbors, weights=weights, metric="cosine", algorithm="brute")
    return Pipeline([("clf", knn)])


def make_rbfsvm(
    C: float = 1.0, gamma: str | float = "scale", calibration_cv: int = 5, random_state: int | None = 0
) -> Pipeline:
    """StandardScaler -> RBF SVC with sigmoid calibration on out-of-fold training margins.

    `SVC(probability=True)` is deprecated since scikit-learn 1.9; this is its documented replacement.
    """
    svm = SVC(kernel="rbf", C=C, gamma=gamma, random_state=random_state)
    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("clf", CalibratedClassifierCV(svm, method="sigmoid", cv=calibration_cv, ensemble=False)),
        ]
    )


# ---------------------------------------------------------------------------------------------
# Streamed linear probe.


class SGDLinearProbe(ClassifierMixin, BaseEstimator):
    """A linear probe trained by SGD over chunks: memory holds one chunk, not the matrix.

    One pass fits a StandardScaler with `partial_fit`; then each epoch feeds every chunk,
    shuffled within the chunk, to `SGDClassifier.partial_fit`. With valid data, the epoch with the
    best valid ROC AUC is kept. For `loss="hinge"` (a linear SVM), `predict_proba` comes from a
    Platt sigmoid without intercept fitted on training margins of at most `calibration_rows` rows
    sampled during one extra pass; without an intercept, `predict`, `decision_function > 0` and
    `predict_proba > 0.5` always agree.

    Args:
        loss: "log_loss" (logistic regression) or "hinge" (linear SVM).
        alpha: L2 regularisation strength of SGDClassifier.
        epochs: Passes over the training chunks.
        chunk_rows: Chunk size used by `fit` on in-memory arrays.
        calibration_rows: Rows sampled for the hinge probe's sigmoid calibration.
        random_state: Seed of the SGD and of the within-chunk shuffles.
    """

    def __init__(
        self,
        loss: str = "log_loss",
        alpha: float = 1e-4,
        epochs: int = 5,
        chunk_rows: int = 4096,
        calibration_rows: int = 100_000,
        random_state: int | None = 0,
    ):
        self.loss = loss
        self.alpha = alpha
        self.epochs = epochs
        self.chunk_rows = chunk_rows
        self.calibration_rows = calibration_rows
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_valid: np.ndarray | None = None,
        y_valid: np.ndarray | None = None,
    ) -> "SGDLinearProbe":
        """Fit on in-memory arrays, chunk by chunk (the same code path as `fit_stream`).

        Args:
            X: Training features, shape (n, d).
            y: Training labels, two classes.
            X_valid: Validation features; the epoch with the best valid AUC is kept (optional).
            y_valid: Validation labels.

        Returns:
            self
        """
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        classes = binary_classes(y)
        n, rows = X.shape[0], max(1, int(self.chunk_rows))

        def chunks(epoch: int):
            # Chunk order changes per epoch, as reader.iter_batches(shuffle=True, seed=epoch) does.
            starts = np.random.default_rng([self._seed(), 1, epoch]).permutation(np.arange(0, n, rows))
            return ((X[s : s + rows], y[s : s + rows]) for s in starts)

        valid = None if X_valid is None else (X_valid, y_valid)
        return self._fit_batches(chunks, valid, classes)

    def fit_stream(
        self,
        batches_factory: BatchesFactory,
        valid: tuple[np.ndarray, np.ndarray] | BatchesFactory | None = None,
        classes: tuple = (0, 1),
    ) -> "SGDLinearProbe":
        """Fit from chunks that never need to fit in memory together.

        Args:
            batches_factory: Returns a new iterator of (X_chunk, y_chunk) per call (see module doc).
            valid: (X_valid, y_valid) arrays or a batches factory; picks the best epoch.
            classes: The two labels, negative then positive; streamed labels are not scanned first.

        Returns:
            self
        """
        classes = binary_classes(np.asarray(classes), "declared")
        if hasattr(self, "feature_names_in_"):  # left by an earlier fit on a DataFrame
            del self.feature_names_in_
        return self._fit_batches(batches_factory, valid, classes)

    def _seed(self) -> int:
        return 0 if self.random_state is None else int(self.random_state)

    def _fit_batches(self, factory: BatchesFactory, valid: Any, classes: np.ndarray) -> "SGDLinearProbe":
        if self.loss not in ("log_loss", "hinge"):
            raise ValueError(f"loss must be 'log_loss' or 'hinge', got {self.loss!r}")
        self.classes_ = classes
        # Pass 0: feature statistics (and the row count, for the calibration sampling rate).
        scaler, n_rows = StandardScaler(), 0
        for batch in open_epoch(factory, 0):
            Xc, yc = split_batch(batch)
            encode_labels(yc, classes)  # fail before training, not after
            scaler.partial_fit(Xc)
            n_rows += len(Xc)
        if n_rows == 0:
            raise empty_epoch_error(0)
        self.scaler_, self.n_features_in_ = scaler, int(scaler.n_features_in_)

        sgd = SGDClassifier(loss=self.loss, alpha=self.alpha, random_state=self.random_state)
        rng = np.random.default_rng([self._seed(), 2])
        history: dict[str, list[float]] = {"val_auc": []}
        best = (-np.inf, None, None)
        for epoch in range(int(self.epochs)):
            seen = 0
            for batch in open_epoch(factory, epoch):
                Xc, yc = split_batch(batch)
                order = rng.permutation(len(Xc))  # SGD is sensitive to runs of one class
                sgd.partial_fit(scaler.transform(Xc)[order], encode_labels(yc, classes)[order], classes=[0.0, 1.0])
                seen += len(Xc)
            if seen == 0:
                raise empty_epoch_error(epoch)
            if valid is not None:
                self.sgd_, self.calibrator_ = sgd, None
                auc = self._valid_auc(valid)
                history["val_auc"].append(auc)
                if auc > best[0]:
                    best = (auc, sgd.coef_.copy(), sgd.intercept_.copy())
                    self.best_epoch_ = epoch
        if valid is not None:
            sgd.coef_, sgd.intercept_ = best[1], best[2]
        else:
            self.best_epoch_ = int(self.epochs) - 1
        self.sgd_, self.history_ = sgd, history
        self.calibrator_ = self._fit_calibrator(factory, n_rows) if self.loss == "hinge" else None
        return self

    def _valid_auc(self, valid: Any) -> float:
        if callable(valid):
            # Chunk by chunk: only the scores (one float per row) are kept.
            scores, labels = [], []
            for batch in open_epoch(valid, 0):
                Xc, yc = split_batch(batch)
                scores.append(self._margin(Xc))
                labels.append(encode_labels(yc, self.classes_, "valid"))
            scores, yv = np.concatenate(scores), np.concatenate(labels)
        else:
            scores = self._margin(np.asarray(valid[0]))
            yv = encode_labels(valid[1], self.classes_, "valid")
        binary_classes(yv, "valid")  # AUC needs both classes
        return float(roc_auc_score(yv, scores))

    def _fit_calibrator(self, factory: BatchesFactory, n_rows: int) -> LogisticRegression:
        # Platt scaling on a bounded random sample of training margins: memory stays flat.
        keep = min(1.0, self.calibration_rows / n_rows)
        rng = np.random.default_rng([self._seed(), 3])
        margins, labels = [], []
        for batch in open_epoch(factory, 0):
            Xc, yc = split_batch(batch)
            mask = rng.random(len(Xc)) < keep
            margins.append(self._margin(Xc[mask]))
            labels.append(encode_labels(yc[mask], self.classes_))
        m, t = np.concatenate(margins), np.concatenate(labels)
        if np.unique(t).size < 2:  # sample too small to see both classes: plain logistic link
            m, t = np.array([-1.0, 1.0]), np.array([0.0, 1.0])
        return LogisticRegression(fit_intercept=False, C=1e4).fit(m[:, None], t)

    def _margin(self, X: np.ndarray) -> np.ndarray:
        if X.shape[0] == 0:
            return np.empty(0)
        return self.sgd_.decision_function(self.scaler_.transform(X))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Signed distance to the hyperplane in standardised units (> 0 means positive class)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self._margin(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape (n, 2), columns in `classes_` order."""
        d = self.decision_function(X)
        if self.calibrator_ is not None:
            return self.calibrator_.predict_proba(d[:, None])
        p = 1.0 / (1.0 + np.exp(-np.clip(d, -500, 500)))  # log-loss SGD: the logistic link itself
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted class labels."""
        positive = self.decision_function(X) > 0  # first: raises NotFittedError before classes_
        return self.classes_[positive.astype(int)]

    def predict_proba_stream(self, batches_factory: BatchesFactory) -> np.ndarray:
        """`predict_proba` over chunks, rows in iteration order (use an unshuffled iterator)."""
        check_is_fitted(self)
        out = [self.predict_proba(split_batch(b)[0]) for b in open_epoch(batches_factory, 0)]
        return np.concatenate(out) if out else np.empty((0, 2))


# ---------------------------------------------------------------------------------------------
# Saving.

BASELINE_FILE = "estimator.joblib"


def save_baseline(estimator: BaseEstimator, path_dir: str | Path) -> Path:
    """Write a fitted scikit-learn probe to `path_dir/estimator.joblib` (+ versions in `probe.json`).

    joblib files are pickles: load only files you wrote yourself.

    Returns:
        The directory written.
    """
    import joblib
    import sklearn

    check_is_fitted(estimator)
    path = Path(path_dir)
    path.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, path / BASELINE_FILE)
    meta = {"kind": "sklearn", "class": type(estimator).__name__, "sklearn_version": sklearn.__version__}
    (path / "probe.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def load_baseline(path_dir: str | Path) -> BaseEstimator:
    """Read a probe written by `save_baseline` (scikit-learn warns itself on a version mismatch)."""
    import joblib

    file = Path(path_dir) / BASELINE_FILE
    if not file.is_file():
        raise FeaturekitError(
            "No saved scikit-learn probe found.",
            received=str(file),
            fix="Pass the directory that `save_probe` wrote.",
        )
    return joblib.load(file)
