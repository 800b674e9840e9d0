"""A pretrained backbone cut in two at a layer: the frozen trunk below, the top that fine-tunes, and a head.

A layer can end the trunk only where the network has no bypass around it: every tensor made before it must be
used up by then, so the top receives that layer's output alone (a "cut point": `mixed0`..`mixed10` in
InceptionV3, every layer of MobileNet or VGG16 outside residual connections). The top is a Keras model over the
backbone's own layers (shared, not copied), so training it changes the backbone that is saved afterwards.
Its batch-norm layers stay frozen: `trainable = False` runs them in inference mode with the parent's moving
statistics, which the small batches of fine-tuning would otherwise overwrite (the Keras transfer-learning
guide's rule).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

import keras
import numpy as np
from keras import ops

from featurekit.errors import FeaturekitError, given

# Inside the square root of the standard deviation: a ReLU channel that is zero everywhere has variance 0, and
# the gradient of sqrt at 0 is infinite (NaN losses when training through mean+std pooling).
STD_EPSILON = 1e-6
HEAD_DROPOUT = 0.2
POOLING_LAYER, NORMALIZATION_LAYER, DROPOUT_LAYER, OUTPUT_LAYER = (
    "head_pooling", "head_standardise", "head_dropout", "head_output")
_MAX_LISTED = 24
_BLOCK_OUTPUT = re.compile(r"mixed\d+|conv\d*_relu|conv_pw_\d+_relu|block\d+_pool|pool\d+|conv\d+")


@keras.saving.register_keras_serializable(package="featurekit")
class MeanStdPooling(keras.layers.Layer):
    """[B, H, W, C] -> [B, 2C]: per-channel mean and standard deviation over positions, trainable through."""

    def call(self, x: Any) -> Any:
        x = ops.cast(x, "float32")
        mean = ops.mean(x, axis=(1, 2))
        variance = ops.mean(ops.square(x - mean[:, None, None, :]), axis=(1, 2))
        return ops.concatenate([mean, ops.sqrt(variance + STD_EPSILON)], axis=-1)


def cut_points(model: keras.Model) -> list[str]:
    """Names of the layers whose output alone carries everything the layers after them need."""
    layers = model.layers
    position = {id(layer): i for i, layer in enumerate(layers)}
    last_use = list(range(len(layers)))  # the last layer that reads each layer's output (in order: the latest wins)
    for i, layer in enumerate(layers[1:], start=1):
        for tensor in layer._inbound_nodes[0].input_tensors:  # the backbone's own call (its first)
            last_use[position[id(tensor._keras_history.operation)]] = i
    reach = list(itertools.accumulate(last_use, max))  # reach[i]: the furthest layer reading any of layers 0..i
    return [layer.name for i, layer in enumerate(layers[:-1]) if i and reach[i - 1] <= i]


def _suggestions(names: list[str]) -> str:
    """Block outputs first (mixedN, conv_pw_N_relu, blockN_pool ...), at most _MAX_LISTED names."""
    blocks = [name for name in names if _BLOCK_OUTPUT.fullmatch(name)] or names
    more = f" ({len(blocks) - _MAX_LISTED} more)" if len(blocks) > _MAX_LISTED else ""
    return ", ".join(blocks[:_MAX_LISTED]) + more


def split_backbone(model: keras.Model, backbone: str, unfreeze_from: str, top_layer: str | None):
    """(trunk images -> the layer's map, top map -> `top_layer`'s output, the top layer's name).

    Raises:
        FeaturekitError: a layer that is no cut point, an unknown top layer, or a top layer not above it.
    """
    names, points = [layer.name for layer in model.layers], cut_points(model)
    if unfreeze_from not in points:
        raise FeaturekitError(
            f"Backbone {backbone!r} cannot be cut at {unfreeze_from!r}: "
            + ("no such layer." if unfreeze_from not in names else
               "other tensors bypass it (a branch or residual connection), so its output alone cannot feed the top."),
            received=given("unfreeze_from", unfreeze_from),
            fix=f"Use `unfreeze_from` with one of: {_suggestions(points)}.")
    top_name = top_layer or names[-1]
    if top_name not in names or names.index(top_name) <= names.index(unfreeze_from):
        above = names[names.index(unfreeze_from) + 1:]
        choices = _suggestions([name for name in above if name in points] or above)
        raise FeaturekitError(
            f"The top layer must be a layer of {backbone!r} above {unfreeze_from!r}.",
            received=given("top_layer", top_layer),
            fix=f"Use `top_layer` with one of: {choices}, or leave it out for the backbone's output.")
    cut = model.get_layer(unfreeze_from).output
    return (keras.Model(model.input, cut, name=f"{backbone}_trunk"),
            keras.Model(cut, model.get_layer(top_name).output, name=f"{backbone}_top"), top_name)


def build_head(top: keras.Model, pooling: str, seed: int) -> keras.Model:
    """Cached maps -> top -> pooling (mean+std with an epsilon, or average) -> standardisation -> dropout ->
    Dense(1, sigmoid); the top's layers train, batch norm excepted."""
    top.trainable = True
    for layer in top.layers:  # each layer itself: the backbone they belong to was frozen as a whole
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    inputs = keras.Input(tuple(top.input.shape[1:]), name="trunk_maps")
    x = top(inputs)
    if len(x.shape) == 4:
        x = (MeanStdPooling(name=POOLING_LAYER) if pooling == "meanstd"
             else keras.layers.GlobalAveragePooling2D(name=POOLING_LAYER))(x)
    # Standardised features (statistics set by `linear_probe_init`): dropout then removes information, not a
    # feature's large mean, which the linear probe's bias would otherwise have to cancel.
    x = keras.layers.Normalization(name=NORMALIZATION_LAYER)(x)
    x = keras.layers.Dropout(HEAD_DROPOUT, seed=seed, name=DROPOUT_LAYER)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid", name=OUTPUT_LAYER,
                                 kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
    return keras.Model(inputs, outputs, name=f"{top.name}_classifier")


def linear_probe_init(classifier: keras.Model, maps: np.ndarray, labels: np.ndarray, batch_size: int) -> float:
    """Set the head's standardisation to the pooled features of `maps` and its Dense layer to a logistic
    regression fitted on them.

    Fine-tuning under a randomly initialised head sends noise into the pretrained layers for many steps (at a
    fine-tuning rate the head itself barely moves: the run stays near chance). Fitting the head first on the
    parent's features, then fine-tuning everything, is the Keras guide's two stages in one run, and "linear
    probe, then fine-tune" (LP-FT, Kumar et al. 2022), which also distorts the pretrained features less, so
    they hold up better out of distribution.

    Returns:
        The regression's training accuracy.
    """
    from sklearn.linear_model import LogisticRegression

    pooled = keras.Model(classifier.input, classifier.get_layer(NORMALIZATION_LAYER).input)
    features = np.concatenate([np.asarray(pooled(np.asarray(maps[i:i + batch_size], np.float32), training=False))
                               for i in range(0, len(maps), batch_size)])
    standardise = classifier.get_layer(NORMALIZATION_LAYER)
    standardise.adapt(features)
    standardised = np.asarray(standardise(features))
    regression = LogisticRegression(C=1.0, max_iter=2000).fit(standardised, labels)
    classifier.get_layer(OUTPUT_LAYER).set_weights([regression.coef_[0][:, None].astype(np.float32),
                                                    regression.intercept_.astype(np.float32)])
    return float(regression.score(standardised, labels))
