"""The original study's Keras classification head, as a scikit-learn estimator on any Keras backend.

Dense(units, relu) -> Dropout -> Dense(1) -> sigmoid, trained with Adam on binary cross-entropy.
The last Dense and its sigmoid are two layers ("logit", "probability"): the same function as
Dense(1, activation="sigmoid"), but `decision_function` can return the exact logit instead of
inverting a saturated float32 probability.

Training is plain compiled Keras 3 (`train_on_batch` on a model whose loss sees the logits), so it
runs on the TensorFlow, JAX and torch backends alike; nothing here imports a backend directly.
Keras is imported inside methods so that `import featurekit.probes` stays fast.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions

from featurekit.probes.epochs import SEED_MODEL, EpochProbe

# Rows per forward pass at prediction time: bounds memory for any n, large enough to be fast.
PREDICT_ROWS = 8192
# batch_size="auto": about this many steps per epoch, as a power of two within the bounds below.
AUTO_BATCH_STEPS = 64
AUTO_BATCH_MIN, AUTO_BATCH_MAX = 256, 4096


def auto_batch_size(n_rows: int) -> int:
    """The batch size "auto" picks for `n_rows` training rows.

    256 (the study's size) up to 16,384 rows, so small sets keep many Adam steps per epoch; then
    the power of two that gives about 64 steps per epoch, up to 4096. An epoch costs the same
    arithmetic at any batch size, but each step has a fixed cost that dominates at small batches.
    """
    target = max(1, n_rows // AUTO_BATCH_STEPS)
    return int(min(AUTO_BATCH_MAX, max(AUTO_BATCH_MIN, 2 ** int(np.floor(np.log2(target))))))


class DenseHeadClassifier(EpochProbe):
    """Dense(units, relu) -> Dropout -> Dense(1, sigmoid) on frozen embeddings.

    The defaults are the study's head; the `fit_head` options declare the same ones (a test keeps them equal).

    Args:
        units: Width of the hidden layer.
        dropout: Dropout rate after the hidden layer (training only).
        learning_rate: Adam learning rate.
        epochs: Maximum number of epochs.
        batch_size: Rows per gradient step, or "auto" (`auto_batch_size`: 256 for up to 16k rows,
            larger for large caches, where per-step costs would dominate an epoch).
        patience: Epochs without improvement of `monitor` before stopping (valid data only).
        monitor: "val_loss" or "val_auc"; the best epoch by this value is restored.
        random_state: Seed of the initial weights, dropout and shuffles; nothing global is seeded.
        verbose: Print one line per epoch (loss, val_loss, val_auc) when > 0.
        standardize: Train on features scaled to zero mean and unit variance (training-split
            statistics), then fold the scaling into the hidden layer, so `model_` takes raw features.
            The study's head had no such step; without it, raw VGG activations (hundreds, caffe
            preprocessing) or mean+std pooled features can stall Adam at one class.

    Attributes:
        model_: The trained `keras.Model`, outputs P(positive class) from raw features.
        batch_size_: The batch size used (resolves "auto").
        classes_, n_features_in_, history_, best_epoch_, mean_, scale_: see `EpochProbe`
            (`mean_`/`scale_` are not restored by loading: the scaling lives in `model_`).
    """

    _parameter_constraints: dict = {
        **EpochProbe._parameter_constraints,
        "units": [Interval(Integral, 1, None, closed="left")],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
    }

    def __init__(
        self,
        units: int = 512,
        dropout: float = 0.5,
        learning_rate: float = 1e-3,
        epochs: int = 30,
        batch_size: int | str = "auto",
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

    # -- training steps ------------------------------------------------------------------------

    def _start_training(self, n_rows: int, seed: int) -> None:
        import keras

        self.batch_size_ = auto_batch_size(n_rows) if self.batch_size == "auto" else int(self.batch_size)
        seeds = [int(s) for s in np.random.default_rng([seed, SEED_MODEL]).integers(1, 2**31 - 1, size=3)]
        layers: list[Any] = [keras.Input(shape=(self.n_features_in_,), name="embedding")]
        if self.mean_ is not None:
            # Scaling inside the graph: no scaled copy of the training matrix, folded away afterwards.
            layers.append(keras.layers.Normalization(mean=self.mean_, variance=self.scale_.astype(np.float64) ** 2,
                                                     name="standardize"))
        layers += head_layers(int(self.units), float(self.dropout), seeds)
        self._net = keras.Sequential(layers, name="dense_head_training")
        # The loss sees the logits: stable where the sigmoid saturates, on every backend.
        # Padded rows weigh 0 and the mean runs over the weights, so a padded step equals an unpadded one.
        self._net.compile(optimizer=keras.optimizers.Adam(learning_rate=float(self.learning_rate)),
                    loss=keras.losses.BinaryCrossentropy(from_logits=True, reduction="mean_with_sample_weight"))
        self._step_shape = min(self.batch_size_, n_rows)
        self.__dict__.pop("model_", None)  # a refit: predictions come from the new training net until it ends

    def _step(self, X: np.ndarray, y: np.ndarray) -> float:
        """One Adam step; every step has the same shape (short batches padded with zero-weight rows),
        so the backend compiles the step once per fit instead of once per distinct batch length."""
        pad = max(0, self._step_shape - len(X))
        weights = np.pad(np.ones(len(X), dtype=np.float32), (0, pad))
        X, y = np.pad(X, ((0, pad), (0, 0))), np.pad(y, (0, pad))
        return float(self._net.train_on_batch(X, y[:, None], sample_weight=weights))

    def _get_state(self) -> list[np.ndarray]:
        return self._net.get_weights()

    def _set_state(self, state: list[np.ndarray]) -> None:
        self._net.set_weights(state)

    def _folded_weights(self) -> list[np.ndarray]:
        """[W1, b1, w2, b2] of the inference model: the training net's scaling folded into the hidden layer.

        hidden((x - mean) / scale) = x @ (W / scale[:, None]) + (b - mean @ (W / scale[:, None])), exactly;
        computed in float64 and rounded to float32, the saved model's weights, so validation scores equal
        the final model's.
        """
        kernel, bias = (w.astype(np.float64) for w in self._net.get_layer("hidden").get_weights())
        if self.mean_ is not None:
            kernel /= self.scale_.astype(np.float64)[:, None]
            bias -= self.mean_.astype(np.float64) @ kernel
        return [kernel.astype(np.float32), bias.astype(np.float32), *self._net.get_layer("logit").get_weights()]

    def _finish_training(self, chunks: Any, n_rows: int, seed: int) -> None:
        weights = self._folded_weights()
        del self._net, self._step_shape  # free the training state first
        self.model_ = build_inference_model(self.n_features_in_, int(self.units), float(self.dropout))
        self.model_.set_weights(weights)

    # -- scores --------------------------------------------------------------------------------

    def _decision(self, X: np.ndarray) -> np.ndarray:
        return forward_logits(self.model_.get_weights() if hasattr(self, "model_") else self._folded_weights(), X)


def head_layers(units: int, dropout: float, seeds: list[int] | None = None) -> list[Any]:
    """hidden -> dropout -> logit, the stack the training net and the saved model share.

    With `seeds` (training): Glorot initialisers seeded by `seeds[0]` and `seeds[2]`, dropout by `seeds[1]`.
    Without (the saved model, whose weights the caller sets): zero initialisers and a fixed dropout seed, so
    building it draws nothing from Keras' global seed (which would advance Python's `random`).
    """
    import keras

    hidden, logit = [keras.initializers.GlorotUniform(seed=s) for s in seeds[::2]] if seeds else ["zeros", "zeros"]
    return [keras.layers.Dense(units, activation="relu", name="hidden", kernel_initializer=hidden),
            keras.layers.Dropout(dropout, seed=seeds[1] if seeds else 1, name="dropout"),
            keras.layers.Dense(1, name="logit", kernel_initializer=logit)]


def build_inference_model(n_features: int, units: int, dropout: float) -> Any:
    """The saved head: raw features in, P(positive) out (`head_layers` then a sigmoid), weights to be set by the
    caller."""
    import keras

    return keras.Sequential([keras.Input(shape=(n_features,), name="embedding"), *head_layers(units, dropout),
                             keras.layers.Activation("sigmoid", name="probability")], name="dense_head")


def forward_logits(weights: list[np.ndarray], X: np.ndarray) -> np.ndarray:
    """Logits of the head in eval mode (no dropout), in NumPy float64.

    No float32 rounding, so a row's score does not depend on which rows share its batch, and
    predicting needs no backend graph.
    """
    w1, b1, w2, b2 = (np.asarray(w, dtype=np.float64) for w in weights)
    out = np.empty(X.shape[0], dtype=np.float64)
    rows = max(1, min(PREDICT_ROWS, 2**22 // max(1, X.shape[1])))  # <= 32 MB of float64 rows
    for start in range(0, X.shape[0], rows):
        h = np.maximum(X[start : start + rows].astype(np.float64) @ w1 + b1, 0.0)
        out[start : start + rows] = (h @ w2 + b2)[:, 0]
    return out
