"""`HandmadeSpec`: one hand-made forensic feature, as data, and a registry entry like a Keras backbone."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np

from featurekit.errors import FeaturekitError, given
from featurekit.handmade.embedder import (
    DEFAULT_BATCH_SIZE,
    HANDMADE_POOLING,
    HANDMADE_PREPROCESSING,
    HandmadeEmbedder,
    HandmadeTap,
    check_handmade_request,
    handmade_embedder_of,
    overrides_text,
    parse_variant,
    rebuilt_tap,
    variant_text,
)

# The faces' own size: hand-made features default to it instead of a CNN's 224/299.
NATIVE_FACE_SIZE = 256


@dataclass(frozen=True)
class HandmadeSpec:
    """Everything featurekit knows about one hand-made feature.

    Attributes:
        name: Registry name (what `--backbone NAME` will accept).
        function: `function(uint8_batch, **parameters) -> float32 (B, D)`.
        dim_function: `dim_function(image_size, **parameters) -> D`, without computing anything.
        parameters: The parameters `function` is called with (read-only).
        version: Version of the feature code; bump it whenever the same parameters would give
            different numbers, so caches made before the change are told apart.
        input_size: Native square input size in pixels (the data's own size, never resampled).
        min_input_size: Smallest image size it is computed at.
        resamples: Whether extraction may resize images for this feature (False: decode as stored).
        description: One line for listings.
        reference: The paper the computation follows.

    It is a registry entry (`featurekit.backbones.registry.RegistryEntry`): it checks a request, builds its
    own numpy embedder (`featurekit.handmade.embedder`) and describes itself, with no weights and no Keras.
    """

    kind: ClassVar[str] = "hand-made feature"
    preprocessing: ClassVar[str] = HANDMADE_PREPROCESSING
    is_test: ClassVar[bool] = False
    request_options: ClassVar[tuple[str, ...]] = ("layer", "image_size")
    # Read by the extraction dispatch until it calls the protocol; delete then.

    name: str
    function: Callable[..., np.ndarray]
    dim_function: Callable[..., int]
    parameters: Mapping[str, Any] = field(default_factory=dict, hash=False)  # compared, not hashed (a mapping)
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

    __call__ = extract

    def feature_dim(self, image_size: int | None = None) -> int:
        """Features per image at this square image size (default: the native size)."""
        return int(self.dim_function(self.input_size if image_size is None else image_size, **self.parameters))

    def with_parameters(self, **overrides: Any) -> "HandmadeSpec":
        """The same feature with other parameters; unknown names and bad values are refused here."""
        unknown = sorted(set(overrides) - set(self.parameters))
        if unknown:
            raise FeaturekitError(
                f"Feature {self.name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters are {', '.join(self.parameters)}.",
                received=", ".join(given(name, overrides[name]) for name in unknown),
                fix=f"Use one of: {', '.join(f'{k}={v!r}' for k, v in self.parameters.items())}.",
            )
        spec = replace(self, parameters={**self.parameters, **overrides})
        spec.feature_dim()  # validates the values before anything is extracted
        return spec

    def describe(self, image_size: int | None = None) -> dict[str, Any]:
        """Provenance to record in a cache: name, parameters, code version and dimension."""
        from featurekit import __version__

        size = self.input_size if image_size is None else image_size
        return {
            "name": self.name,
            "kind": "handmade",
            "parameters": dict(self.parameters),
            "version": self.version,
            "image_size": size,
            "feature_dim": self.feature_dim(size),
            "resamples": self.resamples,
            "reference": self.reference,
            "featurekit_version": __version__,
        }

    # --- the registry protocol (featurekit.backbones.registry.RegistryEntry) ---

    def check_request(self, image_size: Any = None, poolings: Sequence[str] = (HANDMADE_POOLING,),
                      preprocessing: str | None = None, precision: str = "float32",
                      weights: str | Sequence[str] = "default") -> tuple[tuple[str, ...], str]:
        """Refuse options that mean nothing for a hand-made feature, before any image is read.

        Returns:
            (poolings, precision): ("none",) and "float32", what every hand-made cache records.
        """
        check_handmade_request(self, image_size, list(poolings), preprocessing, precision, weights)
        return (HANDMADE_POOLING,), "float32"

    def build_embedder(self, taps: Sequence[tuple[str | None, str]], weights: str | Sequence[str] = "default",
                       image_size: int | None = None, preprocessing: str | None = None, seed: int = 0,
                       precision: str = "float32", batch_size: int = DEFAULT_BATCH_SIZE) -> HandmadeEmbedder:
        """A HandmadeEmbedder over (variant, pooling) taps: `layer` texts are parameter variants; `seed` is unused."""
        return handmade_embedder_of(self, list(taps), image_size, batch_size, preprocessing, precision, weights)

    def rebuild_embedder(self, embedding: dict[str, Any], weights: str | None = None) -> HandmadeTap:
        """The tap that made a cache, from its recorded attributes; refuses another code version."""
        return rebuilt_tap(self, embedding)

    def cache_name_layer(self, layer: str | None) -> str | None:
        """The parameters that differ from the registered ones (None when none do: `threshold=3` names the
        default cache)."""
        return overrides_text(self, parse_variant(self, layer))

    def listing(self) -> dict[str, Any]:
        """What `python cli.py backbones` shows: the keys of `BackboneSpec.listing`, with no weights."""
        dim = self.feature_dim(self.input_size)
        return {
            "name": self.name, "kind": self.kind, "description": f"hand-made: {self.description}",
            "input_size": self.input_size, "min_input_size": self.min_input_size,
            "preprocessing": self.preprocessing, "taps": [variant_text(self)], "output_layer": variant_text(self),
            "output_shape": [dim], "feature_dim": {"flatten": dim}, "params": 0, "pretrained": [],
            "default_weights": "none", "weights_options": [], "weights_text": "no weights (hand-made)",
            "weights_licence": "n/a (no weights)", "is_test": self.is_test, "handmade": self.describe(self.input_size),
        }
