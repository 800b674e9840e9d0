"""`HandmadeSpec`: one hand-made forensic feature, as data, and a registry entry like a Keras backbone."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from featurekit.parameters import BATCH_SIZE, HANDMADE_POOLING, MAX_IMAGE_SIZE
from featurekit.errors import FeaturekitError, given
from featurekit.handmade._input import check_parameters, value_text
from featurekit.handmade.embedder import HANDMADE_PREPROCESSING, HandmadeEmbedder, HandmadeTap

# The faces' own size: hand-made features default to it instead of a CNN's 224/299.
NATIVE_FACE_SIZE = 256
# Poolings that mean "the vector as it is" for a feature that is one vector per image.
IDENTITY_POOLINGS = ("flatten", HANDMADE_POOLING)


@dataclass(frozen=True)
class HandmadeSpec:
    """Everything featurekit knows about one hand-made feature.

    Attributes:
        name: Registry name (what `backbone` accepts).
        function: `function(uint8_batch, **parameters) -> float32 (B, D)`.
        dim_function: `dim_function(image_size, **parameters) -> D`, without computing anything.
        parameters: The parameters `function` is called with (read-only).
        domains: The values each parameter takes, by name (the feature's own table; every parameter has one).
        version: Version of the feature code; bump it whenever the same parameters would give
            different numbers, so caches made before the change are told apart.
        input_size: Native square input size in pixels (the data's own size, never resampled).
        min_input_size: Smallest image size it is computed at.
        resamples: Whether extraction may resize images for this feature (False: decode as stored).
        description: One line for listings.
        reference: The paper the computation follows.

    It is a registry entry (`featurekit.backbones.registry.RegistryEntry`): it checks a request, builds its
    own numpy embedder (`featurekit.handmade.embedder`) and describes itself, with no weights and no Keras.
    The `layer` of a request names a variant: `name=value` pairs joined by "+" (`threshold=2+order=1`).
    """

    kind: ClassVar[str] = "hand-made feature"
    preprocessing: ClassVar[str] = HANDMADE_PREPROCESSING
    is_test: ClassVar[bool] = False
    request_options: ClassVar[tuple[str, ...]] = ("layer", "image_size")

    name: str
    function: Callable[..., np.ndarray]
    dim_function: Callable[..., int]
    parameters: Mapping[str, Any] = field(default_factory=dict, hash=False)  # compared, not hashed (a mapping)
    domains: Mapping[str, Sequence[Any]] = field(default_factory=dict, hash=False)
    version: str = "1"
    input_size: int = NATIVE_FACE_SIZE
    resamples: bool = False
    description: str = ""
    reference: str = ""
    min_input_size: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "parameters", MappingProxyType(dict(self.parameters)))

    def extract(self, images: np.ndarray) -> np.ndarray:
        """Features of a uint8 RGB batch (B, H, W, 3) as float32 (B, D)."""
        return self.function(images, **self.parameters)

    def feature_dim(self, image_size: int | None = None) -> int:
        """Features per image at this square image size (default: the native size)."""
        return int(self.dim_function(self.input_size if image_size is None else image_size, **self.parameters))

    def with_parameters(self, **overrides: Any) -> "HandmadeSpec":
        """The same feature with other parameters; unknown names and bad values are refused here."""
        check_parameters(self.name, self.domains, **overrides)
        return replace(self, parameters={**self.parameters, **overrides})

    def describe(self, image_size: int | None = None) -> dict[str, Any]:
        """Provenance to record in a cache: name, parameters, code version and dimension."""
        from featurekit import __version__

        size = self.input_size if image_size is None else image_size
        return {
            "name": self.name, "kind": "handmade", "parameters": dict(self.parameters), "version": self.version,
            "image_size": size, "feature_dim": self.feature_dim(size), "resamples": self.resamples,
            "reference": self.reference, "featurekit_version": __version__,
        }

    def variant_text(self, only: Sequence[str] | None = None) -> str:
        """Parameters as `name=value` joined by "+", in declaration order (the recorded `layer`)."""
        names = [n for n in self.parameters if only is None or n in only]
        return "+".join(f"{name}={value_text(self.parameters[name])}" for name in names)

    def variant(self, text: str | None) -> "HandmadeSpec":
        """The feature with the parameters a `layer` text sets: None or "" for the defaults, else
        `name=value` pairs joined by "+"; the full recorded text works too.

        Raises:
            FeaturekitError: an unknown parameter, a malformed pair, or a value the feature refuses.
        """
        if text is None or not str(text).strip():
            return self
        pairs = [pair.strip().partition("=") for pair in str(text).split("+")]
        if not all(name and equals and value for name, equals, value in pairs):
            raise FeaturekitError(
                f"A variant of hand-made feature {self.name!r} is name=value pairs joined by '+'.",
                received=given("layer", text),
                fix=f"Write e.g. `layer` {self.variant_text()} (its defaults), or leave `layer` out for the defaults.")
        # Each value text becomes the declared value spelled so; any other stays text, which the feature refuses.
        parsed = {name: next((v for v in self.domains.get(name, ()) if value_text(v) == value), value)
                  for name, _, value in pairs}
        return self.with_parameters(**parsed)

    # --- the registry protocol (featurekit.backbones.registry.RegistryEntry) ---

    def check_request(self, image_size: Any = None, poolings: Sequence[str] = (HANDMADE_POOLING,),
                      preprocessing: str | None = None, precision: str = "float32",
                      weights: str | Sequence[str] = "default") -> tuple[tuple[str, ...], str]:
        """Refuse options that mean nothing for a hand-made feature, before any image is read.

        Returns:
            (poolings, precision): ("none",) and "float32", what every hand-made cache records.
        """
        bad_pooling = next((pooling for pooling in poolings if pooling not in IDENTITY_POOLINGS), None)
        candidates = [weights] if isinstance(weights, str) else list(weights)
        refusals = (  # (refused, parameter, value, problem, how to leave it out)
            (bad_pooling is not None, "pooling", bad_pooling, "is one vector per image already: pooling does not "
             "apply.", " (flatten and none both mean the vector as it is)"),
            (preprocessing not in (None, HANDMADE_PREPROCESSING), "preprocessing", preprocessing,
             "reads the uint8 pixels as stored: it has no preprocessing to override.", ""),
            (precision not in ("float32", "auto"), "precision", precision,
             f"is computed with numpy in float32 and higher; it has no {precision} mode.", " (float32)"),
            (any(c not in ("default", "none") for c in candidates), "weights", weights, "has no weights.", ""),
        )
        for refused, parameter, value, problem, note in refusals:
            if refused:
                raise FeaturekitError(f"Hand-made feature {self.name!r} {problem}", received=given(parameter, value),
                                      fix=f"Leave `{parameter}` out{note}.")
        self._image_size(image_size)
        return (HANDMADE_POOLING,), "float32"

    def _image_size(self, image_size: Any) -> int:
        """The image size to compute at (the native size for None); sizes out of range are refused."""
        if image_size is None:
            return self.input_size
        if isinstance(image_size, (bool, np.bool_)) or not isinstance(image_size, (int, np.integer)) or \
                not self.min_input_size <= int(image_size) <= MAX_IMAGE_SIZE:
            raise FeaturekitError(
                f"Hand-made feature {self.name!r} takes image sizes from {self.min_input_size} to {MAX_IMAGE_SIZE} "
                "pixels.", received=given("image_size", image_size),
                fix=f"Leave `image_size` out to compute at the images' own size ({self.input_size}), "
                "or pass a size in that range to resample every image to it.")
        return int(image_size)

    def build_embedder(self, taps: Sequence[tuple[str | None, str]], weights: str | Sequence[str] = "default",
                       image_size: int | None = None, preprocessing: str | None = None, seed: int = 0,
                       precision: str = "float32", batch_size: int = BATCH_SIZE) -> HandmadeEmbedder:
        """A HandmadeEmbedder over (variant, pooling) taps of a checked request: `layer` texts are parameter variants
        (refused here when bad); `seed` is unused."""
        size = self._image_size(image_size)
        return HandmadeEmbedder([HandmadeTap(self.variant(layer), size, batch_size) for layer, _ in taps],
                                batch_size, stored_size=size if image_size is None and not self.resamples else None)

    def rebuild_embedder(self, embedding: dict[str, Any], weights: str | None = None) -> HandmadeTap:
        """The tap that made a cache, from its recorded attributes; refuses another code version."""
        tap = HandmadeTap(self.variant(embedding.get("layer")), int(embedding["image_size"]))
        recorded, current = embedding.get("architecture_variant"), tap.describe()["architecture_variant"]
        if recorded not in (None, "") and recorded != current:
            raise FeaturekitError(
                f"The cache was made by version {recorded!r} of {self.name}; this featurekit computes "
                f"{current!r}, which gives other numbers.",
                received=f"backbone {self.name}, architecture_variant {recorded}",
                fix="Re-extract the cache and refit the model with this version.")
        return tap

    def cache_name_layer(self, layer: str | None) -> str | None:
        """The parameters that differ from the registered ones (None when none do: `threshold=3` names the
        default cache)."""
        variant = self.variant(layer)
        changed = [name for name, value in variant.parameters.items() if self.parameters.get(name) != value]
        return variant.variant_text(changed) if changed else None

    def listing(self) -> dict[str, Any]:
        """What `backbones` lists: the keys of `BackboneSpec.listing`, with no weights."""
        dim, variant = self.feature_dim(self.input_size), self.variant_text()
        return {
            "name": self.name, "kind": self.kind, "description": f"hand-made: {self.description}",
            "input_size": self.input_size, "min_input_size": self.min_input_size,
            "preprocessing": self.preprocessing, "taps": [variant], "output_layer": variant,
            "output_shape": [dim], "feature_dim": {"flatten": dim}, "params": 0, "pretrained": [],
            "default_weights": "none", "weights_options": [], "weights_text": "no weights (hand-made)",
            "weights_licence": "n/a (no weights)", "is_test": self.is_test, "handmade": self.describe(self.input_size),
        }
