"""Hand-made features behind the embedder interface that extraction and prediction use (numpy only).

A `featurekit.handmade.HandmadeSpec` builds these through its registry protocol (`build_embedder`,
`rebuild_embedder`); this module knows nothing of the registry.

`extract` talks to a `MultiEmbedder`: ``embedder(uint8 batch) -> [features per tap]``, ``embedder.image_size``,
``embedder.batch_size`` and ``embedder.embedders[i].describe()``; `predict` to a single `Embedder`:
``embedder(uint8 batch) -> features``. `HandmadeEmbedder` and `HandmadeTap` offer the same, so the extraction
loop and its engines need no change, and nothing here imports Keras or TensorFlow.

What a hand-made cache records, chosen so that names, identity and `compare` rows read naturally:

- ``backbone``: the feature's name (`spam`, `spectrum`); ``weights`` "none", ``weights_label``
  "hand-made (no weights)", ``weights_sha256`` "", ``random_features`` False (the features are not random:
  they are a fixed computation); ``backbone_params`` 0.
- ``layer``: the feature's parameters, in full and in declaration order, e.g.
  ``threshold=3+order=2+normalisation=joint``: what a layer tap says of a CNN (which features), and part of
  the identity, so SPAM at T=2 is never answered by a T=3 cache. `--layer` takes overrides in the same
  grammar (``--layer threshold=2`` or ``--layer threshold=2+order=1``; several variants, comma-separated,
  are computed from one decode of each image, as several taps of a CNN come from one forward pass).
  The default cache name carries only the overrides: ``<data>-spam-none-256.h5``,
  ``<data>-spam-threshold=2-none-256.h5``.
- ``pooling`` "none": the feature is one vector per image already. `--pooling flatten` (the declared default)
  and `none` are accepted and mean that; avg, max and meanstd are refused.
- ``preprocessing`` "none" (uint8 RGB as stored); ``precision`` "float32" (numpy; other precisions are
  refused); ``architecture_variant`` "handmade-v<version>" (the code version of the feature, so caches made
  before a change of the computation are told apart); ``handmade``: the spec's `describe()` (name,
  parameters, version, reference).
- ``image_size``: the data's own size (256 for the faces) with no resampling: without `image_size`, images
  must be stored at that size and any other is refused (`featurekit.views.ViewDecoder`); with an explicit
  `image_size` every image is resized to it, as for a CNN. Where the images already have that size the two
  give the same cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from featurekit.choices import HANDMADE_POOLING
from featurekit.errors import FeaturekitError, given, option_name

if TYPE_CHECKING:
    from featurekit.handmade.spec import HandmadeSpec

# What a hand-made feature records as its preprocessing and pooling: it takes uint8 RGB as stored, and its
# output is already one vector per image.
HANDMADE_PREPROCESSING = "none"
HANDMADE_WEIGHTS_LABEL = "hand-made (no weights)"
# The largest square input, as for CNNs (featurekit.backbones.checks.MAX_IMAGE_SIZE, not imported: the
# registry sits above this package): SPAM's bin codes for a batch of 2048 px images already take hundreds of MB.
MAX_IMAGE_SIZE = 2048
# Poolings that mean "the vector as it is" for a feature that is one vector per image.
IDENTITY_POOLINGS = ("flatten", HANDMADE_POOLING)
DEFAULT_BATCH_SIZE = 32


def variant_text(feature: HandmadeSpec, only: list[str] | None = None) -> str:
    """Parameters as `name=value` joined by "+", in declaration order (the recorded `layer`)."""
    names = list(feature.parameters) if only is None else [n for n in feature.parameters if n in only]
    return "+".join(f"{name}={_value_text(feature.parameters[name])}" for name in names)


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse_value(feature: HandmadeSpec, name: str, text: str, variant: str) -> Any:
    default = feature.parameters[name]
    try:
        if isinstance(default, bool):
            if text.lower() not in ("true", "false"):
                raise ValueError
            return text.lower() == "true"
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise FeaturekitError(
            f"Parameter {name!r} of {feature.name} takes {type(default).__name__} values.",
            received=given("layer", variant),
            fix=f"Write e.g. {option_name('layer')} {name}={_value_text(default)}.") from None
    return text


def parse_variant(feature: HandmadeSpec, text: str | None) -> HandmadeSpec:
    """The feature with the parameters a `layer` text sets: None or "" for the defaults, else
    `name=value` pairs joined by "+" (`threshold=2+order=1`); the full recorded text works too.

    Raises:
        FeaturekitError: an unknown parameter, a malformed pair, or a value the feature refuses.
    """
    if text is None or not str(text).strip():
        return feature
    overrides: dict[str, Any] = {}
    for pair in str(text).split("+"):
        name, equals, value = pair.strip().partition("=")
        if not equals or not name or not value:
            raise FeaturekitError(
                f"A variant of hand-made feature {feature.name!r} is name=value pairs joined by '+'.",
                received=given("layer", text),
                fix=f"Write e.g. {option_name('layer')} {variant_text(feature)} (its defaults), or leave "
                f"{option_name('layer')} out for the defaults.")
        if name not in feature.parameters:
            return feature.with_parameters(**{name: value})  # refuses, naming the parameters there are
        overrides[name] = _parse_value(feature, name, value, str(text))
    return feature.with_parameters(**overrides)


def overrides_text(default: HandmadeSpec, variant: HandmadeSpec) -> str | None:
    """The parameters of `variant` that differ from the registry's, for the default cache name (None: none)."""
    changed = [name for name, value in variant.parameters.items() if default.parameters.get(name) != value]
    return variant_text(variant, changed) if changed else None


def check_handmade_request(spec: HandmadeSpec, image_size: Any = None, poolings: list[str] = (HANDMADE_POOLING,),
                           preprocessing: str | None = None, precision: str = "float32",
                           weights: str | list[str] = "default") -> int:
    """Refuse options that mean nothing for a hand-made feature, before any image is read.

    Returns:
        The image size to compute at (the feature's native size when `image_size` is None).
    """
    name = spec.name
    for pooling in poolings:
        if pooling not in IDENTITY_POOLINGS:
            raise FeaturekitError(
                f"Hand-made feature {name!r} is one vector per image already: pooling does not apply.",
                received=given("pooling", pooling),
                fix=f"Leave {option_name('pooling')} out (flatten and none both mean the vector as it is).")
    if preprocessing not in (None, HANDMADE_PREPROCESSING):
        raise FeaturekitError(
            f"Hand-made feature {name!r} reads the uint8 pixels as stored: it has no preprocessing to override.",
            received=given("preprocessing", preprocessing), fix=f"Leave {option_name('preprocessing')} out.")
    if precision not in ("float32", "auto"):
        raise FeaturekitError(
            f"Hand-made feature {name!r} is computed with numpy in float32 and higher; it has no {precision} mode.",
            received=given("precision", precision), fix=f"Leave {option_name('precision')} out (float32).")
    candidates = [weights] if isinstance(weights, str) else list(weights)
    if any(candidate not in ("default", "none") for candidate in candidates):
        raise FeaturekitError(
            f"Hand-made feature {name!r} has no weights.", received=given("weights", weights),
            fix=f"Leave {option_name('weights')} out.")
    if image_size is None:
        return spec.input_size
    if isinstance(image_size, (bool, np.bool_)) or not isinstance(image_size, (int, np.integer)) or \
            not spec.min_input_size <= int(image_size) <= MAX_IMAGE_SIZE:
        raise FeaturekitError(
            f"Hand-made feature {name!r} takes image sizes from {spec.min_input_size} to {MAX_IMAGE_SIZE} pixels.",
            received=given("image_size", image_size),
            fix=f"Leave {option_name('image_size')} out to compute at the images' own size ({spec.input_size}), or "
            "pass a size in that range to resample every image to it.")
    return int(image_size)


class HandmadeTap:
    """One hand-made feature with its parameters at one image size: the `Embedder` interface, in numpy.

    Attributes:
        feature: The `HandmadeSpec` with this tap's parameters.
        image_size: Square input size.
        layer: The recorded parameter text (see the module docstring).
        pooling: "none".
        preprocessing: "none".
        feature_dim: Features per image.
        batch_size: Images per call (kept for the interface; a batch is computed whole).
    """

    def __init__(self, feature: HandmadeSpec, image_size: int, batch_size: int = DEFAULT_BATCH_SIZE):
        self.feature = feature
        self.image_size = int(image_size)
        self.layer = variant_text(feature)
        self.pooling = HANDMADE_POOLING
        self.preprocessing = HANDMADE_PREPROCESSING
        self.precision = "float32"
        self.batch_size = int(batch_size)
        self.feature_dim = feature.feature_dim(self.image_size)

    def _checked(self, images: Any) -> np.ndarray:
        pixels = np.asarray(images)
        if pixels.ndim != 4 or pixels.shape[1:] != (self.image_size, self.image_size, 3):
            raise FeaturekitError(
                f"Hand-made feature {self.feature.name!r} takes image batches of shape [B, {self.image_size}, "
                f"{self.image_size}, 3].", received=f"an array of shape {pixels.shape}",
                fix="Decode the images at the cache's image size and stack them into one batch.")
        return pixels

    def __call__(self, images: Any) -> np.ndarray:
        """Features of a uint8 RGB batch [B, S, S, 3] as float32 [B, feature_dim]."""
        return np.asarray(self.feature.extract(self._checked(images)), dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        """What the cache records (see the module docstring); the keys of `Embedder.describe()`."""
        return {
            "backbone": self.feature.name, "weights": "none", "weights_label": HANDMADE_WEIGHTS_LABEL,
            "weights_sha256": "", "random_features": False, "architecture_variant": f"handmade-v{self.feature.version}",
            "layer": self.layer, "pooling": self.pooling, "image_size": self.image_size,
            "preprocessing": self.preprocessing, "precision": self.precision, "backend": "numpy",
            "feature_dim": self.feature_dim, "backbone_params": 0, "handmade": self.feature.describe(self.image_size),
        }

    def __repr__(self) -> str:
        return (f"HandmadeTap({self.feature.name}, {self.layer}, image_size={self.image_size}, "
                f"feature_dim={self.feature_dim})")


class HandmadeEmbedder:
    """Several variants of one hand-made feature from one decode of each image: the `MultiEmbedder` interface.

    Attributes:
        embedders: One HandmadeTap per requested variant, in output order.
        image_size: Square input size.
        batch_size: Images per batch.
        stored_size: When set, images must be stored at this size (no resampling; see `featurekit.views`).
    """

    def __init__(self, embedders: list[HandmadeTap], batch_size: int | None = None, stored_size: int | None = None):
        if not embedders:
            raise ValueError("HandmadeEmbedder needs at least one HandmadeTap")
        self.embedders = embedders
        self.image_size = embedders[0].image_size
        self.preprocessing = HANDMADE_PREPROCESSING
        self.batch_size = int(batch_size or embedders[0].batch_size)
        self.stored_size = stored_size

    def __call__(self, images: Any) -> list[np.ndarray]:
        """One float32 array [B, D_i] per tap; a variant asked for twice is computed once."""
        computed: dict[str, np.ndarray] = {}
        outputs = []
        for tap in self.embedders:
            if tap.layer not in computed:
                computed[tap.layer] = tap(images)
            outputs.append(computed[tap.layer])
        return outputs

    def check_images(self, root: Any, paths: list[str]) -> None:
        """Refuse, before anything is written, images not stored at the size this feature reads them at."""
        if self.stored_size is not None:
            refuse_other_sizes(root, paths, self.stored_size, self.embedders[0].feature.name)

    def bytes_per_image(self) -> int:
        """Memory one image takes, roughly: its uint8 pixels and a few float64 intermediate arrays."""
        return self.image_size ** 2 * 3 * (1 + 4 * 8)


def handmade_embedder_of(feature: HandmadeSpec, taps: list[tuple[str | None, str]], image_size: int | None = None,
                         batch_size: int = DEFAULT_BATCH_SIZE, preprocessing: str | None = None,
                         precision: str = "float32", weights: str | list[str] = "default") -> HandmadeEmbedder:
    """A HandmadeEmbedder over (variant, pooling) taps of one registered hand-made feature (arguments as for
    `featurekit.backbones.embedder.build_multi_embedder`; `weights` must be "default" or "none")."""
    size = check_handmade_request(feature, image_size, [pooling for _, pooling in taps], preprocessing, precision,
                                  weights)
    stored = size if image_size is None and not feature.resamples else None
    return HandmadeEmbedder([HandmadeTap(parse_variant(feature, layer), size, batch_size) for layer, _ in taps],
                            batch_size, stored_size=stored)


def refuse_other_sizes(root: Any, paths: list[str], stored_size: int, feature: str) -> None:
    """Refuse, before anything is written, a folder holding images not stored at `stored_size` (square).

    Reads each file's header only (Pillow decodes nothing until asked); files that do not open are left to the
    decoder, which skips and lists them as for any backbone.
    """
    from pathlib import Path

    from PIL import Image

    for relative in paths:
        try:
            with Image.open(Path(root) / relative) as image:
                size = image.size
        except Exception:  # undecodable files are skipped and listed at decode time
            continue
        if size != (stored_size, stored_size):
            from featurekit.views import ViewDecoder

            raise ViewDecoder(stored_size=stored_size, feature=feature, root=str(root)).size_error(relative, size)


def rebuilt_tap(feature: HandmadeSpec, embedding: dict[str, Any]) -> HandmadeTap:
    """The tap that made a hand-made cache, from its recorded attributes (what `predict` rebuilds)."""
    tap = HandmadeTap(parse_variant(feature, embedding.get("layer")), int(embedding["image_size"]))
    recorded = embedding.get("architecture_variant")
    if recorded not in (None, "") and recorded != tap.describe()["architecture_variant"]:
        raise FeaturekitError(
            f"The cache was made by version {recorded!r} of {feature.name}; this featurekit computes "
            f"{tap.describe()['architecture_variant']!r}, which gives other numbers.",
            received=f"backbone {feature.name}, architecture_variant {recorded}",
            fix="Re-extract the cache and refit the model with this version.")
    return tap
