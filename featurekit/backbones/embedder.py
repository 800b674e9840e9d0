"""Frozen backbone + preprocessing + layer tap + pooling, as one Keras model: images in, embeddings out.

    embedder = build_embedder("vgg16", weights="none", image_size=224, pooling="avg")
    features = embedder(uint8_batch)          # [B, 512] float32
    embedder.describe()                       # what the cache records next to the features

Images are RGB batches [B, S, S, 3] with values 0..255 (uint8 or float). The embedding model is a
`keras.Model`: pixels -> `Preprocessing` (the backbone's own mode unless explicitly overridden, written with
`keras.ops`, the same numbers as `keras.applications.imagenet_utils.preprocess_input`) -> the backbone up to
the tapped layers -> `Pooling` layers (flatten / avg / max / meanstd in `keras.ops`). It runs through
Keras' own compiled inference (`predict_on_batch`) on whichever Keras backend is active, so nothing here
imports TensorFlow. Batches are padded to one fixed size, so a compiling backend (JAX) compiles once.

The backbone computes in the requested precision (a Keras mixed dtype policy); preprocessing and pooling
compute in float32, and the embeddings are float32 whatever the precision.

Extraction talks to embedders through a small interface only: `embedder(uint8 batch)` (a list of float32
arrays for a `MultiEmbedder`) and `embedders[i].describe()`; anything that offers it (a hand-made numpy
feature, a view of the images) can stand in.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, ClassVar

import keras
import numpy as np
from keras import ops

from featurekit.backbones.checks import check_preprocessing, pooled_dim
from featurekit.backbones.loading import build_with_weights, weights_provenance
from featurekit.backbones.provenance import trained_label, training_record_for
from featurekit.backbones.registry import get_spec, network_spec
from featurekit.backend import active_backend, dtype_policy
from featurekit.errors import FeaturekitError, given
from featurekit.parameters import BATCH_SIZE

# ImageNet statistics as keras.applications.imagenet_utils uses them (caffe: BGR order; torch: RGB, [0, 1]).
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN_RGB = (0.485, 0.456, 0.406)
TORCH_STD_RGB = (0.229, 0.224, 0.225)


def _float32(values: Any) -> Any:
    return ops.convert_to_tensor(np.asarray(values), dtype="float32")


# `preprocess_input` of keras.applications.imagenet_utils per mode, in keras.ops, on a float32 tensor: the same
# operations in the same order (divide, then add the negated mean, then divide by the std), so the numbers are
# identical to Keras' own on every backend.
PREPROCESSING_OPS = {
    "rescale": lambda x: x / 255.0,
    "tf": lambda x: x / 127.5 - 1.0,
    "torch": lambda x: (x / 255.0 + _float32(-np.array(TORCH_MEAN_RGB))) / _float32(TORCH_STD_RGB),
    "caffe": lambda x: ops.flip(x, axis=-1) + _float32(-np.array(CAFFE_MEAN_BGR)),
}


def preprocess(images: Any, mode: str) -> np.ndarray:
    """Map pixels in [0, 255] (RGB) to the input a backbone expects.

    Args:
        images: Batch [B, S, S, 3] (uint8 or float); not modified.
        mode: "caffe" (RGB->BGR, minus the ImageNet mean per channel), "tf" (to [-1, 1]), "torch"
            (to [0, 1], minus mean, over std per channel), or "rescale" (x / 255, the original study's input).

    Returns:
        float32 array of the same shape.
    """
    check_preprocessing(mode)
    return np.asarray(ops.convert_to_numpy(PREPROCESSING_OPS[mode](_float32(images))), dtype=np.float32)


# Each pooling of a feature map [B, H, W, C], in keras.ops (flatten keeps a vector [B, D] as it is).
POOLING_OPS = {
    "flatten": lambda x: ops.reshape(x, (-1, int(np.prod(x.shape[1:])))),
    "avg": lambda x: ops.mean(x, axis=(1, 2)),
    "max": lambda x: ops.max(x, axis=(1, 2)),
    "meanstd": lambda x: ops.concatenate([ops.mean(x, axis=(1, 2)), ops.std(x, axis=(1, 2))], axis=-1),
}


class _Float32Op(keras.layers.Layer):
    """One operation of a table (`OPS`, keyed by `op`) applied in float32, whatever the model's precision.

    `op` is checked with the request before any layer is built.
    """

    OPS: ClassVar[dict[str, Callable[[Any], Any]]] = {}

    def __init__(self, op: str, **kwargs: Any):
        super().__init__(**{"dtype": "float32", **kwargs})
        self.op = op

    def call(self, inputs: Any) -> Any:
        return self.OPS[self.op](ops.cast(inputs, "float32"))


class Preprocessing(_Float32Op):
    """Pixels 0..255 (any dtype) -> the backbone's input: `op` is one of PREPROCESSING_MODES."""

    OPS = PREPROCESSING_OPS


class Pooling(_Float32Op):
    """A feature map [B, H, W, C] -> [B, D] embedding (a bfloat16 backbone's output is cast first).

    flatten keeps every value (row-major H, W, C); avg and max pool over positions; meanstd is the per-channel
    mean and standard deviation over positions, a cheap texture descriptor (2C values). `op` is one of POOLINGS.
    """

    OPS = POOLING_OPS


def embedding_model(backbone: keras.Model, taps: list[tuple[str, str]], preprocessing: str, image_size: int,
                    name: str = "embedder") -> keras.Model:
    """The Keras model pixels [B, S, S, 3] -> one float32 embedding [B, D_i] per (layer, pooling) tap.

    The backbone's layers are shared, not copied: several taps of one backbone cost one forward pass.
    """
    layer_names = list(dict.fromkeys(layer for layer, _ in taps))
    tapped = keras.Model(backbone.inputs, [backbone.get_layer(layer).output for layer in layer_names],
                         name=f"{backbone.name}_taps")
    pixels = keras.Input((image_size, image_size, 3), dtype="float32", name="pixels")
    maps = tapped(Preprocessing(preprocessing, name="preprocess")(pixels))
    by_layer = dict(zip(layer_names, keras.tree.flatten(maps)))
    outputs = [Pooling(pooling, name=f"pool_{index}_{pooling}")(by_layer[layer])
               for index, (layer, pooling) in enumerate(taps)]
    model = keras.Model(pixels, outputs, name=name)
    model.trainable = False
    return model


def run_in_batches(model: keras.Model, pixels: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """`model.predict_on_batch` over fixed-size batches; a short last batch is padded and the padding dropped.

    One input shape means one compiled program on JAX (every new shape would compile again); in inference
    mode a row's output does not depend on the other rows, so the padding changes nothing.
    """
    parts: list[list[np.ndarray]] = []
    for start in range(0, max(len(pixels), 1), batch_size):
        n_real = min(batch_size, len(pixels) - start)
        chunk = np.pad(pixels[start:start + n_real], [(0, batch_size - n_real)] + [(0, 0)] * (pixels.ndim - 1))
        outputs = keras.tree.flatten(model.predict_on_batch(chunk))
        parts.append([np.asarray(output[:n_real], dtype=np.float32) for output in outputs])
    return [np.concatenate(columns) for columns in zip(*parts)]


@dataclass(eq=False, repr=False)
class Embedder:
    """A frozen backbone with its preprocessing, a layer tap and a pooling: images -> float32 embeddings.

    Build it with `build_embedder`. Calling it runs the embedding model (`model`, a keras.Model) through
    Keras' compiled inference in fixed-size batches (batch norm uses its moving statistics).

    Attributes:
        spec: The backbone's registry spec.
        backbone: The frozen backbone (a keras.Model) the tap reads from.
        layer: Name of the tapped layer.
        pooling: One of POOLINGS.
        preprocessing: One of PREPROCESSING_MODES.
        image_size: Square input size in pixels.
        provenance: What `weights_provenance` says of the weights (label, sha256, variant ...).
        precision: The backbone's compute precision: "float32", "bfloat16" or "float16".
        batch_size: Images per forward pass (the last batch is padded to it).
        feature_shape: Shape of the tapped layer's output for one image, e.g. (7, 7, 512).
        feature_dim: Length of each embedding.
    """

    spec: Any
    backbone: keras.Model
    layer: str | None
    pooling: str
    preprocessing: str
    image_size: int
    provenance: dict[str, Any]
    precision: str = "float32"
    batch_size: int = BATCH_SIZE

    def __post_init__(self) -> None:
        self.layer = self.spec.output_layer if self.layer is None else self.layer
        try:
            tapped = self.backbone.get_layer(self.layer)
        except ValueError:  # a layer the network does not have: every tap the spec declares, shallow to deep
            raise FeaturekitError(
                f"Backbone {self.spec.name!r} has no layer {self.layer!r}.", received=given("layer", self.layer),
                fix=f"Use one of its taps: {', '.join(self.spec.taps)} (any of its {len(self.backbone.layers)} layer "
                f"names works too); or leave `layer` out to tap the last block ({self.spec.output_layer}).",
            ) from None
        self.feature_shape = tuple(int(d) for d in tapped.output.shape[1:])
        self.feature_dim = pooled_dim(self.feature_shape, self.pooling)

    @cached_property
    def model(self) -> keras.Model:
        """The embedding keras.Model (pixels -> [B, feature_dim]), built on first use."""
        return embedding_model(self.backbone, [(self.layer, self.pooling)], self.preprocessing, self.image_size,
                               name=f"{self.spec.name}_{self.layer}_{self.pooling}")

    def _as_pixels(self, images: Any) -> np.ndarray:
        pixels = np.asarray(images)
        if pixels.ndim != 4 or pixels.shape[1:] != (self.image_size, self.image_size, 3):
            raise FeaturekitError(
                f"Embedder for {self.spec.name!r} takes image batches of shape [B, {self.image_size}, "
                f"{self.image_size}, 3].",
                received=f"an array of shape {pixels.shape}",
                fix="Resize the images to the embedder's image_size and stack them into one batch.",
            )
        # uint8 crosses to the device as it is (4x fewer bytes) and becomes float32 inside the model.
        return pixels if pixels.dtype == np.uint8 else pixels.astype(np.float32, copy=False)

    def preprocess(self, images: Any) -> np.ndarray:
        """The network's input for `images` ([B, S, S, 3], 0..255): this embedder's preprocessing applied."""
        return preprocess(self._as_pixels(images), self.preprocessing)

    def __call__(self, images: Any) -> np.ndarray:
        """Embed a batch.

        Args:
            images: uint8 or float RGB batch [B, S, S, 3] with values 0..255.

        Returns:
            float32 array [B, feature_dim].
        """
        return run_in_batches(self.model, self._as_pixels(images), self.batch_size)[0]

    def describe(self) -> dict[str, Any]:
        """JSON-able attributes that identify these embeddings (stored with the cache, compared on reopen).

        `backend` is recorded but is no part of a cache's identity: features of the same weights agree
        across backends to float tolerance.
        """
        return {
            "backbone": self.spec.name, **self.provenance, "layer": self.layer, "pooling": self.pooling,
            "image_size": self.image_size, "preprocessing": self.preprocessing, "precision": self.precision,
            "backend": active_backend(), "feature_dim": self.feature_dim,
            "backbone_params": int(self.backbone.count_params()),
        }

    def __repr__(self) -> str:
        return (f"Embedder({self.spec.name}, weights={self.provenance['weights_label']!r}, layer={self.layer!r}, "
                f"pooling={self.pooling!r}, image_size={self.image_size}, preprocessing={self.preprocessing!r}, "
                f"precision={self.precision!r}, feature_dim={self.feature_dim})")


class MultiEmbedder:
    """Several taps and poolings of one backbone, computed in ONE forward pass.

    Exploring which layer carries the signal (GAN traces live in low-level features) then costs one
    pass over the images instead of one per layer. `embedders[i].describe()` says what output i is.

    Attributes:
        embedders: One Embedder per tap, in output order.
        model: The keras.Model with one output per tap (built on first use).
        batch_size: Images per forward pass, its embedders' (the last batch is padded to it).
    """

    def __init__(self, embedders: list[Embedder]):
        self.embedders = embedders
        first = embedders[0]
        self.image_size, self.preprocessing, self.batch_size = first.image_size, first.preprocessing, first.batch_size

    @cached_property
    def model(self) -> keras.Model:
        """One keras.Model with the outputs of every Embedder (they tap the same backbone), built on first use."""
        first = self.embedders[0]
        return embedding_model(first.backbone, [(e.layer, e.pooling) for e in self.embedders], self.preprocessing,
                               self.image_size, name=f"{first.spec.name}_multi")

    def __call__(self, images: Any) -> list[np.ndarray]:
        """Embed a batch [B, S, S, 3] (0..255); returns one float32 array [B, D_i] per embedder."""
        return run_in_batches(self.model, self.embedders[0]._as_pixels(images), self.batch_size)

    def check_images(self, root: Any, paths: list[str]) -> None:
        """Nothing to check before a run: every image is resized to the input size."""

    def bytes_per_image(self) -> int:
        """Memory one image takes in the forward pass, roughly: its input (uint8 pixels, their float32 copy, the
        preprocessed input) and three of the largest feature maps (a layer's input, its output, a skip)."""
        largest = 0
        for layer in self.embedders[0].backbone.layers:
            try:
                shape = layer.output.shape[1:]
            except (AttributeError, ValueError):  # a layer used twice, or a nested model: its parts are listed
                continue
            if shape and all(isinstance(d, int) for d in shape):
                largest = max(largest, int(np.prod(shape)))
        return self.image_size * self.image_size * 3 * (1 + 4 + 4) + 3 * 4 * largest


def build_embedder(backbone: str, weights: str = "default", image_size: int | None = None, layer: str | None = None,
                   pooling: str = "flatten", preprocessing: str | None = None, seed: int = 0,
                   precision: str = "float32", batch_size: int = BATCH_SIZE) -> Embedder:
    """Build an Embedder for a registered Keras network.

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
        precision: The backbone's compute precision: "float32", "bfloat16", "float16", or "auto" (bfloat16
            where the hardware has it); the resolved value is in `describe()`.
        batch_size: Images per forward pass.

    Returns:
        The embedder.
    """
    network_spec(backbone)  # a hand-made feature is refused: it has no network
    return build_multi_embedder(backbone, [(layer, pooling)], weights, image_size, preprocessing, seed, precision,
                                batch_size).embedders[0]


def build_multi_embedder(backbone: str, taps: list[tuple[str | None, str]], weights: str = "default",
                         image_size: int | None = None, preprocessing: str | None = None, seed: int = 0,
                         precision: str = "float32", batch_size: int = BATCH_SIZE) -> Any:
    """The embedder of several (layer, pooling) taps of any registered backbone, from one pass over each batch.

    Arguments as for `build_embedder`; the backbone's registry entry checks the request, then builds it (for a
    Keras network a MultiEmbedder, for a hand-made feature its numpy embedder, whose `layer`s are parameter variants).
    """
    spec = get_spec(backbone)
    _, resolved = spec.check_request(image_size, [pooling for _, pooling in taps], preprocessing, precision, weights)
    return spec.build_embedder(taps, weights=weights, image_size=image_size, preprocessing=preprocessing, seed=seed,
                               precision=resolved, batch_size=batch_size)


def multi_embedder_for_spec(spec: Any, taps: list[tuple[str | None, str]], weights: str = "default",
                            image_size: int | None = None, preprocessing: str | None = None, seed: int = 0,
                            precision: str = "float32", batch_size: int = BATCH_SIZE) -> MultiEmbedder:
    """A MultiEmbedder over (layer, pooling) taps of a Keras network's `BackboneSpec` (what its `build_embedder`
    and `rebuild_embedder` call), the frozen backbone built once. The request is checked already
    (`spec.check_request`, as `build_multi_embedder` and extraction do): `precision` is a resolved one."""
    mode = spec.preprocessing if preprocessing is None else preprocessing
    size = spec.input_size if image_size is None else int(image_size)
    with dtype_policy(precision):
        model = build_with_weights(spec, weights, size, seed)
    provenance = weights_provenance(spec, weights, seed)
    trained = training_record_for(provenance["weights"], provenance["weights_sha256"])
    if trained is not None:  # a train-backbone file: say what it was trained on, not just its name
        provenance["weights_label"] = trained_label(trained)
    return MultiEmbedder([Embedder(spec, model, layer, pooling, mode, size, provenance, precision, batch_size)
                          for layer, pooling in taps])
