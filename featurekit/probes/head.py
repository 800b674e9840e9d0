"""The original study's Keras classification head, as a scikit-learn estimator.

Dense(units, relu) -> Dropout -> Dense(1) -> sigmoid, trained with Adam on binary cross-entropy.
The last Dense and its sigmoid are two layers ("logit", "probability"): the same function as
Dense(1, activation="sigmoid"), but `decision_function` can return the exact logit instead of
inverting a saturated float32 probability.

TensorFlow/Keras are imported inside methods so that `import featurekit.probes` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted, validate_data

from featurekit.errors import FeaturekitError
from featurekit.probes.baselines import (
    BatchesFactory,
    ProbeInputError,
    binary_classes,
    empty_epoch_error,
    encode_labels,
    open_epoch,
    split_batch,
)

MONITORS = ("val_loss", "val_auc")
MODEL_FILE = "model.keras"
META_FILE = "estimator.json"
# Rows per forward pass at prediction time: bounds memory for any n, large enough to be fast.
PREDICT_ROWS = 8192


class DenseHeadClassifier(ClassifierMixin, BaseEstimator):
    """Dense(units, relu) -> Dropout -> Dense(1, sigmoid) on frozen embeddings.

    Args:
        units: Width of the hidden layer.
        dropout: Dropout rate after the hidden layer (training only).
        learning_rate: Adam learning rate.
        epochs: Maximum number of epochs.
        batch_size: Rows per gradient step.
        patience: Epochs without improvement of `monitor` before stopping (valid data only).
        monitor: "val_loss" or "val_auc"; the best epoch by this value is restored.
        random_state: Seed for weights, dropout and shuffling (`keras.utils.set_random_seed`,
            which also seeds Python's and NumPy's global generators). None leaves them alone.
        verbose: Print one line per epoch (loss, val_loss, val_auc) when > 0.
        standardize: Train on features scaled to zero mean and unit variance (training-split
            statistics), then fold the scaling into the hidden layer, so `model_` takes raw features.
            The study's head had no such step; without it, raw VGG activations (hundreds, caffe
            preprocessing) or mean+std pooled features can stall Adam at one class.

    Attributes:
        model_: The trained `keras.Model`, outputs P(positive class).
        classes_: The two labels; `classes_[1]` is the positive class.
        n_features_in_: Embedding size.
        history_: Per-epoch lists: "loss" (mean training loss), and with valid data "val_loss"
            and "val_auc". A loss that never falls is the first sign of a collapsed head.
        mean_: Training-split feature means used for standardisation (None when standardize=False;
            not restored by `load`, where the scaling already lives in `model_`).
        scale_: Training-split feature standard deviations (1 for constant features).
        best_epoch_: 0-based index into `history_` of the weights kept (the last epoch without
            valid data).
    """

    def __init__(
        self,
        units: int = 512,
        dropout: float = 0.5,
        learning_rate: float = 1e-3,
        epochs: int = 20,
        batch_size: int = 256,
        patience: int = 5,
        monitor: str = "val_loss",
        random_state: int | None = 0,
        verbose: int = 0,
        standardize: bool = True,
    ):
        self.units = units
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.epochs = epochs
        self.batch_size = batch_size
        self.patience = patience
        self.monitor = monitor
        self.random_state = random_state
        self.verbose = verbose
        self.standardize = standardize

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # one sigmoid output: real vs fake
        return tags

    # -- training --------------------------------------------------------------------------

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_valid: np.ndarray | None = None,
        y_valid: np.ndarray | None = None,
    ) -> "DenseHeadClassifier":
        """Train on in-memory arrays; with valid data, stop early and keep the best epoch.

        Args:
            X: Training features, shape (n, d).
            y: Training labels, two classes.
            X_valid: Validation features for early stopping (optional).
            y_valid: Validation labels.

        Returns:
            self
        """
        X, y = validate_data(self, X, y, dtype=np.float32)
        self.classes_ = binary_classes(y)
        valid = None
        if X_valid is not None:
            if y_valid is None:
                raise ProbeInputError("X_valid was given without y_valid.", fix="Pass both or neither.")
            Xv = validate_data(self, X_valid, reset=False, dtype=np.float32)
            yv = encode_labels(y_valid, self.classes_, "valid")
            binary_classes(yv, "valid")  # early stopping on one class would mean nothing
            valid = (Xv, yv)
        y01 = encode_labels(y, self.classes_)
        valid_chunks = None if valid is None else (lambda epoch: iter([valid]))
        self._fit_scaler(lambda epoch: iter([(X, y01)]))
        self._train(X.shape[1], lambda epoch: iter([(X, y01)]), valid_chunks)
        return self

    def fit_stream(
        self,
        batches_factory: BatchesFactory,
        valid: tuple[np.ndarray, np.ndarray] | BatchesFactory | None = None,
        classes: tuple = (0, 1),
        shuffle: bool = True,
    ) -> "DenseHeadClassifier":
        """Train from chunks re-read every epoch; memory holds a chunk, never the whole matrix.

        Each chunk from the factory is shuffled within itself and cut into `batch_size` steps.
        Shuffling across chunks is the iterator's job (`iter_batches(..., shuffle=True)`).

        Args:
            batches_factory: Returns a new iterator of (X_chunk, y_chunk) per call; called with
                the epoch number if it takes an argument, e.g.
                `lambda epoch: reader.iter_batches("train", 4096, shuffle=True, seed=epoch)`.
            valid: (X_valid, y_valid) arrays or a batches factory, for early stopping.
            classes: The two labels, negative then positive (streamed labels are not scanned).
            shuffle: Shuffle rows within each chunk.

        Returns:
            self
        """
        self.classes_ = binary_classes(np.asarray(classes), "declared")
        if hasattr(self, "feature_names_in_"):  # left by an earlier fit on a DataFrame
            del self.feature_names_in_
        first = next(open_epoch(batches_factory, 0), None)
        if first is None:
            raise empty_epoch_error(0)
        n_features = split_batch(first)[0].shape[1]

        def labelled_chunks(factory: BatchesFactory, epoch: int):
            for batch in open_epoch(factory, epoch):
                Xc, yc = split_batch(batch)
                yield self._check_chunk(Xc, n_features), encode_labels(yc, self.classes_)

        if valid is not None and not callable(valid):
            valid_pair = (self._check_chunk(valid[0], n_features), encode_labels(valid[1], self.classes_, "valid"))
            binary_classes(valid_pair[1], "valid")
            valid = lambda epoch: iter([valid_pair])  # noqa: E731
        elif valid is not None:
            valid_factory = valid
            valid = lambda epoch: labelled_chunks(valid_factory, 0)  # noqa: E731
        self._fit_scaler(lambda epoch: labelled_chunks(batches_factory, epoch))
        self._train(n_features, lambda epoch: labelled_chunks(batches_factory, epoch), valid, shuffle)
        self.n_features_in_ = n_features
        return self

    def _check_chunk(self, X: Any, n_features: int) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != n_features:
            raise ProbeInputError(
                "A chunk of features has the wrong shape.",
                received=f"shape {X.shape}, expected (rows, {n_features})",
                fix="Stream every chunk from the same cache and split.",
            )
        if not np.isfinite(X).all():
            raise ProbeInputError(
                "Features contain NaN or inf.",
                received=f"{int((~np.isfinite(X)).sum())} non-finite values in a chunk",
                fix="Re-extract the cache; a backbone run with random weights can overflow.",
            )
        return X

    def _build(self, n_features: int):
        import keras

        return keras.Sequential(
            [
                keras.Input(shape=(n_features,), name="embedding"),
                keras.layers.Dense(int(self.units), activation="relu", name="hidden"),
                keras.layers.Dropout(float(self.dropout), name="dropout"),
                keras.layers.Dense(1, name="logit"),
                keras.layers.Activation("sigmoid", name="probability"),
            ],
            name="dense_head",
        )

    def _train(self, n_features: int, chunks: Callable[[int], Iterable], valid: Any, shuffle: bool = True) -> None:
        """Build the model and run the epochs.

        A plain loop over one compiled step instead of `model.fit`: the same Adam updates, but it
        takes chunks from any Python iterator (no tf.data wrapping for streams), and costs one
        light trace per fit, which keeps small fits (and scikit-learn's checks) quick.
        Early stopping follows keras.callbacks.EarlyStopping(restore_best_weights=True).

        Args:
            n_features: Input width.
            chunks: `chunks(epoch)` -> iterator of (X float32, y 0/1 float32) chunks.
            valid: `valid(epoch)` -> iterator of labelled chunks, or None.
            shuffle: Shuffle rows within each chunk.
        """
        import keras
        import tensorflow as tf

        if self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {MONITORS}, got {self.monitor!r}")
        if self.random_state is not None:
            keras.utils.set_random_seed(int(self.random_state))
        seed = 0 if self.random_state is None else int(self.random_state)
        model = self._build(n_features)
        optimizer = keras.optimizers.Adam(learning_rate=float(self.learning_rate))
        optimizer.build(model.trainable_variables)
        loss_fn = keras.losses.BinaryCrossentropy()  # sees the sigmoid's logits: stable

        signature = [
            tf.TensorSpec((None, n_features), tf.float32),
            tf.TensorSpec((None,), tf.float32),
        ]

        @tf.function(input_signature=signature, autograph=False)  # no tensor-dependent Python flow
        def train_step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y[:, None], model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            optimizer.apply(grads, model.trainable_variables)
            return loss

        batch_size = max(1, int(self.batch_size))
        history: dict[str, list[float]] = {"loss": []}
        best_value, best_weights, wait = None, None, 0
        best_epoch = 0
        for epoch in range(int(self.epochs)):
            rng = np.random.default_rng([seed, epoch])
            total, rows = 0.0, 0
            for Xc, yc in chunks(epoch):
                Xc = self._scaled(Xc)
                order = rng.permutation(len(Xc)) if shuffle else np.arange(len(Xc))
                for start in range(0, len(Xc), batch_size):
                    idx = order[start : start + batch_size]
                    total += float(train_step(Xc[idx], yc[idx])) * len(idx)
                    rows += len(idx)
            if rows == 0:
                raise empty_epoch_error(epoch)
            history["loss"].append(total / rows)
            line = f"epoch {epoch + 1}/{self.epochs} - loss {total / rows:.4f}"
            if valid is not None:
                scores, labels = [], []
                for Xc, yc in valid(epoch):
                    Xc = self._scaled(Xc)
                    scores.append(_forward_logits(model, Xc))
                    labels.append(yc)
                z, t = np.concatenate(scores), np.concatenate(labels)
                logs = {"val_loss": _bce_from_logits(t, z), "val_auc": float(roc_auc_score(t, z))}
                for key, value in logs.items():
                    history.setdefault(key, []).append(value)
                line += f" - val_loss {logs['val_loss']:.4f} - val_auc {logs['val_auc']:.4f}"
                value = logs[self.monitor] if self.monitor == "val_loss" else -logs[self.monitor]
                if best_value is None or value < best_value:
                    best_value, best_weights, wait = value, model.get_weights(), 0
                    best_epoch = epoch
                else:
                    wait += 1
            else:
                best_epoch = epoch
            if self.verbose:
                print(line, flush=True)
            if valid is not None and wait >= int(self.patience):
                break
        if best_weights is not None:
            model.set_weights(best_weights)
        self._fold_scaler_into(model)
        self.model_, self.history_, self.best_epoch_ = model, history, best_epoch

    # -- inference -------------------------------------------------------------------------

    def _logits(self, X: np.ndarray) -> np.ndarray:
        return _forward_logits(self.model_, X)

    def _fit_scaler(self, chunks: Callable[[int], Iterable]) -> None:
        """Per-feature mean and scale of the training rows, in one streamed float64 pass."""
        if not self.standardize:
            self.mean_, self.scale_ = None, None
            return
        count, total, squares = 0, None, None
        for Xc, _ in chunks(0):
            for start in range(0, len(Xc), 4096):  # float64 copies of a few rows, never of the whole matrix
                X64 = np.asarray(Xc[start:start + 4096], dtype=np.float64)
                total = X64.sum(axis=0) if total is None else total + X64.sum(axis=0)
                squares = (X64**2).sum(axis=0) if squares is None else squares + (X64**2).sum(axis=0)
                count += len(X64)
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
        # Constant features (dead channels) keep scale 1, as sklearn's StandardScaler does.
        self.mean_ = mean.astype(np.float32)
        self.scale_ = np.where(std > 1e-12, std, 1.0).astype(np.float32)

    def _fold_scaler_into(self, model: Any) -> None:
        """Fold the standardisation into the hidden layer: the saved model then takes raw features.

        hidden((x - mean) / scale) = x @ (W / scale[:, None]) + (b - (mean / scale) @ W), exactly.
        """
        if getattr(self, "mean_", None) is None:
            return
        hidden = model.get_layer("hidden")
        kernel, bias = (np.asarray(w, dtype=np.float64) for w in hidden.get_weights())
        scale, mean = self.scale_.astype(np.float64), self.mean_.astype(np.float64)
        hidden.set_weights([(kernel / scale[:, None]).astype(np.float32),
                            (bias - (mean / scale) @ kernel).astype(np.float32)])

    def _scaled(self, X: np.ndarray) -> np.ndarray:
        if getattr(self, "mean_", None) is None:
            return X
        return (np.asarray(X, dtype=np.float32) - self.mean_) / self.scale_

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """The logit of P(classes_[1]); > 0 means the positive class.

        Returns:
            Shape (n,).
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32)
        return self._logits(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, columns in `classes_` order.

        Returns:
            Shape (n, 2); rows sum to 1.
        """
        p = _sigmoid(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted labels (positive when the probability exceeds 0.5)."""
        positive = self.decision_function(X) > 0  # first: raises NotFittedError before classes_
        return self.classes_[positive.astype(int)]

    def predict_proba_stream(self, batches_factory: BatchesFactory) -> np.ndarray:
        """`predict_proba` over chunks, rows in iteration order (use an unshuffled iterator).

        Returns:
            Shape (n, 2) for all rows the iterator yields.
        """
        check_is_fitted(self)
        out = []
        for batch in open_epoch(batches_factory, 0):
            X = self._check_chunk(split_batch(batch)[0], self.n_features_in_)
            p = _sigmoid(self._logits(X))
            out.append(np.column_stack([1.0 - p, p]))
        return np.concatenate(out) if out else np.empty((0, 2))

    # -- saving ----------------------------------------------------------------------------

    def save(self, path_dir: str | Path) -> Path:
        """Write `model.keras` and `estimator.json` (params and fitted attributes) to `path_dir`.

        Returns:
            The directory written.
        """
        import keras

        check_is_fitted(self)
        path = Path(path_dir)
        path.mkdir(parents=True, exist_ok=True)
        self.model_.save(path / MODEL_FILE)
        names = getattr(self, "feature_names_in_", None)
        meta = {
            "kind": "keras_head",
            "class": type(self).__name__,
            "keras_version": keras.__version__,
            "params": self.get_params(),
            "classes_": self.classes_.tolist(),
            "classes_dtype": self.classes_.dtype.str if self.classes_.dtype != object else "object",
            "n_features_in_": int(self.n_features_in_),
            "feature_names_in_": None if names is None else [str(n) for n in names],
            "history_": self.history_,
            "best_epoch_": int(self.best_epoch_),
        }
        (path / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path_dir: str | Path) -> "DenseHeadClassifier":
        """Read a head written by `save`; the Keras file is loaded with `safe_mode=True`.

        The optimizer state is not restored (compile=False): a loaded head predicts; `fit`
        trains a fresh model as always.
        """
        import keras

        path = Path(path_dir)
        for file in (path / MODEL_FILE, path / META_FILE):
            if not file.is_file():
                raise FeaturekitError(
                    "A saved Keras head needs model.keras and estimator.json.",
                    received=f"{path} without {file.name}",
                    fix="Pass the directory that DenseHeadClassifier.save (or save_probe) wrote.",
                )
        meta = json.loads((path / META_FILE).read_text())
        est = cls(**meta["params"])
        est.model_ = keras.saving.load_model(path / MODEL_FILE, safe_mode=True, compile=False)
        est.classes_ = np.asarray(meta["classes_"], dtype=meta["classes_dtype"])
        est.n_features_in_ = int(meta["n_features_in_"])
        if meta.get("feature_names_in_") is not None:
            est.feature_names_in_ = np.asarray(meta["feature_names_in_"], dtype=object)
        est.history_ = meta["history_"]
        est.best_epoch_ = int(meta["best_epoch_"])
        return est


def _forward_logits(model: Any, X: np.ndarray) -> np.ndarray:
    """Logits of a head built by `DenseHeadClassifier._build`, in eval mode (no dropout).

    A NumPy float64 forward pass with the trained weights: no float32 rounding, so a row's score
    does not depend on which rows share its batch, and predicting needs no TensorFlow graph.
    """
    (w1, b1), (w2, b2) = (
        [np.asarray(w, dtype=np.float64) for w in model.get_layer(name).get_weights()]
        for name in ("hidden", "logit")
    )
    out = np.empty(X.shape[0], dtype=np.float64)
    rows = max(1, min(PREDICT_ROWS, 2**24 // max(1, X.shape[1])))  # <= 128 MB of float64 rows
    for start in range(0, X.shape[0], rows):
        h = np.maximum(X[start : start + rows].astype(np.float64) @ w1 + b1, 0.0)
        out[start : start + rows] = (h @ w2 + b2)[:, 0]
    return out


def _bce_from_logits(y: np.ndarray, z: np.ndarray) -> float:
    # Binary cross-entropy of sigmoid(z) written on logits: exact where sigmoid saturates.
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # float64 and clipped: no overflow warning, and p < 1 stays representable far into the tails.
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500.0, 500.0)))
