"""Frozen backbone + preprocessing + layer tap + pooling, as one callable: images in, embeddings out.

    embedder = build_embedder("vgg16", weights="none", image_size=224, pooling="avg")
    features = embedder(uint8_batch)          # [B, 512] float32
    embedder.describe()                       # what the cache records next to the features

Images are RGB batches [B, S, S, 3] with values 0..255 (uint8 or float). Preprocessing is the
backbone's own (the spec's mode) unless explicitly overridden, and is recorded in `describe()`.
"""

from __future__ import annotations

import re
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras.applications import imagenet_utils

from featurekit.backbones import POOLINGS, PREPROCESSING_MODES, BackboneSpec, create_backbone, get_spec
from featurekit.backbones.loading import resolve_weights, weights_provenance
from featurekit.errors import FeaturekitError

# Layer names worth offering when a tap is unknown: block outputs and pools first, then convolutions.
_BLOCK_LAYER = re.compile(r"mixed\d+|inception_\d[a-z]|(stem_)?pool\d+|block\d+_pool|max_pooling2d(_\d+)?")
_CONV_LAYER = re.compile(r".*conv(\d+|2d)?(_\d+)?|.*_(1x1|3x3|5x5)")
_MAX_SUGGESTIONS = 20


def preprocess(images: Any, mode: str) -> tf.Tensor:
    """Map float pixels in [0, 255] (RGB) to the input a backbone expects.

    Args:
        images: Batch [B, S, S, 3] (array or tensor); not modified.
        mode: "caffe" (RGB->BGR, minus the ImageNet mean per channel), "tf" (to [-1, 1]), "torch"
            (to [0, 1], minus mean, over std per channel), or "rescale" (x / 255, the original study's input).

    Returns:
        float32 tensor of the same shape.
    """
    _check_preprocessing(mode)
    # A tensor, not a NumPy array: imagenet_utils edits NumPy inputs in place.
    x = tf.convert_to_tensor(images, dtype=tf.float32)
    if mode == "rescale":
        return x / 255.0
    return imagenet_utils.preprocess_input(x, data_format="channels_last", mode=mode)


def _check_preprocessing(mode: str) -> None:
    if mode not in PREPROCESSING_MODES:
        raise FeaturekitError(
            f"Unknown preprocessing {mode!r}.",
            received=f"--preprocessing {mode}",
            fix=f"Choose one of: {', '.join(PREPROCESSING_MODES)} (or leave it out to use the backbone's own).",
        )


def pooled_dim(feature_shape: tuple[int, ...], pooling: str) -> int:
    """Embedding size after `pooling` of one example's feature map.

    Args:
        feature_shape: Shape without the batch axis, (H, W, C) or (D,).
        pooling: One of POOLINGS.

    Returns:
        H*W*C for "flatten", C for "avg"/"max", 2C for "meanstd"; D for a vector with "flatten".
    """
    _check_pooling(pooling)
    if len(feature_shape) == 1:
        if pooling != "flatten":
            raise FeaturekitError(
                f"Pooling {pooling!r} needs a spatial feature map, but the tapped layer gives a vector.",
                received=f"--pooling {pooling}",
                fix="Use --pooling flatten, or tap a convolutional layer.",
            )
        return int(feature_shape[0])
    if len(feature_shape) != 3:
        raise FeaturekitError(f"Cannot pool features of shape {tuple(feature_shape)}; expected (H, W, C) or (D,).")
    height, width, channels = (int(d) for d in feature_shape)
    return {"flatten": height * width * channels, "avg": channels, "max": channels, "meanstd": 2 * channels}[pooling]


def _check_pooling(pooling: str) -> None:
    if pooling not in POOLINGS:
        raise FeaturekitError(
            f"Unknown pooling {pooling!r}.",
            received=f"--pooling {pooling}",
            fix=f"Choose one of: {', '.join(POOLINGS)}.",
        )


def _pool(features: tf.Tensor, pooling: str) -> tf.Tensor:
    if features.shape.rank == 2:
        return features
    if pooling == "flatten":
        return tf.reshape(features, [tf.shape(features)[0], -1])
    if pooling == "avg":
        return tf.reduce_mean(features, axis=[1, 2])
    if pooling == "max":
        return tf.reduce_max(features, axis=[1, 2])
    # meanstd: first and second moments per channel over positions, a cheap texture/style descriptor.
    mean = tf.reduce_mean(features, axis=[1, 2])
    std = tf.math.reduce_std(features, axis=[1, 2])
    return tf.concat([mean, std], axis=-1)


def _output_layer_name(model: keras.Model) -> str:
    history = getattr(model.outputs[0], "_keras_history", None)
    return history[0].name if history else model.layers[-1].name


def _tap_suggestions(model: keras.Model) -> str:
    names = [layer.name for layer in model.layers]
    blocks = [n for n in names if _BLOCK_LAYER.fullmatch(n)]
    convs = [n for n in names if n not in blocks and _CONV_LAYER.fullmatch(n)]
    shown = (blocks + convs)[:_MAX_SUGGESTIONS]
    more = f" ... ({len(names)} layers in all)" if len(blocks) + len(convs) > len(shown) else ""
    return ", ".join(shown) + more


class Embedder:
    """A frozen backbone with its preprocessing, a layer tap and a pooling: images -> float32 embeddings.

    Build it with `build_embedder`. Calling it runs one traced `tf.function` in inference mode
    (`training=False`, so batch norm uses its moving statistics).

    Attributes:
        spec: The backbone's registry spec.
        model: The frozen sub-model from the image input to the tapped layer.
        layer: Name of the tapped layer.
        pooling: One of POOLINGS.
        preprocessing: One of PREPROCESSING_MODES.
        image_size: Square input size in pixels.
        feature_shape: Shape of the tapped layer's output for one image, e.g. (7, 7, 512).
        feature_dim: Length of each embedding.
    """

    def __init__(
        self,
        spec: BackboneSpec,
        backbone: keras.Model,
        layer: str | None,
        pooling: str,
        preprocessing: str,
        image_size: int,
        provenance: dict[str, Any],
    ):
        _check_pooling(pooling)
        self.spec = spec
        self.pooling = pooling
        self.preprocessing = preprocessing
        self.image_size = image_size
        self._provenance = provenance
        self._backbone_params = int(backbone.count_params())
        if layer is None:
            self.layer = _output_layer_name(backbone)
            self.model = backbone
        else:
            try:
                tapped = backbone.get_layer(layer)
            except ValueError:
                raise FeaturekitError(
                    f"Backbone {spec.name!r} has no layer {layer!r}.",
                    received=f"--layer {layer}",
                    fix=f"Use one of: {_tap_suggestions(backbone)}; or leave --layer out to tap the last block "
                    f"({_output_layer_name(backbone)}).",
                ) from None
            self.layer = layer
            self.model = keras.Model(backbone.input, tapped.output, name=f"{backbone.name}_{layer}")
            self.model.trainable = False
        self.feature_shape = tuple(int(d) for d in self.model.outputs[0].shape[1:])
        self.feature_dim = pooled_dim(self.feature_shape, pooling)
        # One fixed signature: a single trace serves every batch size.
        signature = [tf.TensorSpec([None, image_size, image_size, 3], tf.float32)]
        self._forward = tf.function(self._embed, input_signature=signature)

    def _embed(self, pixels: tf.Tensor) -> tf.Tensor:
        features = self.model(preprocess(pixels, self.preprocessing), training=False)
        return _pool(features, self.pooling)

    def _as_pixels(self, images: Any) -> np.ndarray:
        pixels = np.asarray(images)
        expected = (self.image_size, self.image_size, 3)
        if pixels.ndim != 4 or pixels.shape[1:] != expected:
            raise FeaturekitError(
                f"Embedder for {self.spec.name!r} takes image batches of shape [B, {self.image_size}, "
                f"{self.image_size}, 3].",
                received=f"an array of shape {pixels.shape}",
                fix="Resize the images to the embedder's image_size and stack them into one batch.",
            )
        return pixels.astype(np.float32, copy=False)

    def preprocess(self, images: Any) -> np.ndarray:
        """The network's input for `images` ([B, S, S, 3], 0..255): this embedder's preprocessing applied."""
        return preprocess(self._as_pixels(images), self.preprocessing).numpy()

    def __call__(self, images: Any) -> np.ndarray:
        """Embed a batch.

        Args:
            images: uint8 or float RGB batch [B, S, S, 3] with values 0..255.

        Returns:
            float32 array [B, feature_dim].
        """
        return self._forward(tf.constant(self._as_pixels(images))).numpy()

    def describe(self) -> dict[str, Any]:
        """JSON-able attributes that identify these embeddings (stored with the cache, compared on reopen)."""
        return {
            "backbone": self.spec.name,
            **self._provenance,
            "layer": self.layer,
            "pooling": self.pooling,
            "image_size": self.image_size,
            "preprocessing": self.preprocessing,
            "feature_dim": self.feature_dim,
            "backbone_params": self._backbone_params,
        }

    def __repr__(self) -> str:
        d = self.describe()
        return (
            f"Embedder({d['backbone']}, weights={d['weights_label']!r}, layer={d['layer']!r}, "
            f"pooling={d['pooling']!r}, image_size={d['image_size']}, preprocessing={d['preprocessing']!r}, "
            f"feature_dim={d['feature_dim']})"
        )


def build_embedder(
    backbone: str,
    weights: str = "default",
    image_size: int | None = None,
    layer: str | None = None,
    pooling: str = "flatten",
    preprocessing: str | None = None,
    seed: int = 0,
) -> Embedder:
    """Build an Embedder for a registered backbone.

    Args:
        backbone: Registry name (see `list_backbones()`).
        weights: "default", "imagenet", "none" (seeded random init) or a path to a .weights.h5 / .keras file;
            see `create_backbone`.
        image_size: Square input size; None for the backbone's native size.
        layer: Layer to tap; None for the model output (the last block).
        pooling: One of POOLINGS: "flatten", "avg", "max", "meanstd" (per-channel mean and std, 2C values).
        preprocessing: None for the backbone's own mode (the right choice for pretrained weights); any of
            PREPROCESSING_MODES as an explicit override, e.g. "rescale" to reproduce the original study.
        seed: Random-init seed for weights="none".

    Returns:
        The embedder.
    """
    _check_pooling(pooling)
    return Embedder(*_frozen_backbone(backbone, weights, image_size, preprocessing, seed, layer, pooling))


def _frozen_backbone(backbone: str, weights: str, image_size: int | None, preprocessing: str | None, seed: int,
                     layer: str | None, pooling: str) -> tuple:
    """The Embedder constructor's arguments: spec, built backbone, tap, pooling, mode, size, provenance."""
    spec = get_spec(backbone)
    mode = spec.preprocessing if preprocessing is None else preprocessing
    _check_preprocessing(mode)
    size = image_size or spec.input_size
    model = create_backbone(backbone, weights=weights, image_size=size, seed=seed)
    provenance = weights_provenance(spec, resolve_weights(spec, weights), seed)
    return spec, model, layer, pooling, mode, size, provenance


def backbone_summary(name: str) -> dict[str, Any]:
    """What `python cli.py backbones` shows for one backbone; builds it once, random init, at native size.

    Args:
        name: Registry name.

    Returns:
        JSON-able dict: name, description, input_size, min_input_size, preprocessing, output_layer,
        output_shape [H, W, C], feature_dim per pooling at native size, params, pretrained weights,
        default_weights, weights_options, weights_licence, is_test.
    """
    spec = get_spec(name)
    model = create_backbone(name, weights="none", image_size=spec.input_size, seed=0)
    output_shape = tuple(int(d) for d in model.outputs[0].shape[1:])
    summary = {
        "name": spec.name,
        "description": spec.description,
        "input_size": spec.input_size,
        "min_input_size": spec.min_input_size,
        "preprocessing": spec.preprocessing,
        "output_layer": _output_layer_name(model),
        "output_shape": list(output_shape),
        "feature_dim": {pooling: pooled_dim(output_shape, pooling) for pooling in POOLINGS},
        "params": int(model.count_params()),
        "pretrained": list(spec.pretrained),
        "default_weights": spec.default_weights,
        "weights_options": [*spec.pretrained, "none", "PATH.weights.h5", "PATH.keras"],
        "weights_licence": spec.weights_licence,
        "is_test": spec.is_test,
    }
    return summary


class MultiEmbedder:
    """Several taps and poolings of one backbone, computed in ONE forward pass.

    Exploring which layer carries the signal (GAN traces live in low-level features) then costs one
    pass over the images instead of one per layer. `embedders[i].describe()` says what output i is.
    """

    def __init__(self, embedders: list[Embedder]):
        if not embedders:
            raise ValueError("MultiEmbedder needs at least one Embedder")
        self.embedders = embedders
        first = embedders[0]
        self.image_size, self.preprocessing = first.image_size, first.preprocessing
        # Every Embedder's model is a view of the same backbone graph: one model with all their outputs.
        self.model = keras.Model(first.model.inputs, [e.model.outputs[0] for e in embedders])
        self.model.trainable = False
        signature = [tf.TensorSpec([None, self.image_size, self.image_size, 3], tf.float32)]
        self._forward = tf.function(self._embed, input_signature=signature, reduce_retracing=True)

    def _embed(self, pixels: tf.Tensor) -> list[tf.Tensor]:
        outputs = self.model(preprocess(pixels, self.preprocessing), training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return [_pool(features, e.pooling) for features, e in zip(outputs, self.embedders)]

    def __call__(self, images: Any) -> list[np.ndarray]:
        """Embed a batch [B, S, S, 3] (0..255); returns one float32 array [B, D_i] per embedder."""
        pixels = self.embedders[0]._as_pixels(images)
        return [output.numpy() for output in self._forward(tf.constant(pixels))]


def build_multi_embedder(
    backbone: str,
    taps: list[tuple[str | None, str]],
    weights: str = "default",
    image_size: int | None = None,
    preprocessing: str | None = None,
    seed: int = 0,
) -> MultiEmbedder:
    """A MultiEmbedder over (layer, pooling) taps of one backbone; arguments as for `build_embedder`."""
    for _, pooling in taps:
        _check_pooling(pooling)
    spec, model, _, _, mode, size, provenance = _frozen_backbone(backbone, weights, image_size, preprocessing, seed,
                                                                 None, "avg")
    return MultiEmbedder([Embedder(spec, model, layer, pooling, mode, size, provenance) for layer, pooling in taps])
