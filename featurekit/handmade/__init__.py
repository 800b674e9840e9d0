"""Hand-made forensic features that play the part of backbones: no weights, no Keras, no GPU.

Each feature is a frozen `HandmadeSpec`, data like a `BackboneSpec`, so the backbone registry can adopt
them and `extract` can store them in the same cache as CNN embeddings. The interface the extraction
loop uses is one call per batch::

    spec = get_handmade("spam")                   # or get_handmade("spam").with_parameters(threshold=2)
    features = spec.extract(uint8_batch)          # (B, H, W, 3) uint8 RGB -> (B, spec.feature_dim(H)) float32
    cache_attrs["handmade"] = spec.describe(H)    # provenance: name, parameters, code version, dimension

Unlike CNN backbones these features must see the pixels as stored: resampling smooths away the
pixel-level noise SPAM measures and reshapes the high frequencies the spectrum measures. So
`input_size` is the data's own size (256 for the 140k faces) and `resamples` is False: extraction
should decode at the images' own size and refuse (not resize) images of another size unless the user
asks for an explicit image size. There is no preprocessing: the functions take uint8 RGB.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

import numpy as np

from featurekit.errors import FeaturekitError, given
from featurekit.handmade.spam import check_spam_parameters, spam_feature_dim, spam_features
from featurekit.handmade.spectrum import check_spectrum_parameters, spectrum_feature_dim, spectrum_features

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
        resamples: Whether extraction may resize images for this feature (False: decode as stored).
        description: One line for listings.
        reference: The paper the computation follows.
    """

    name: str
    function: Callable[..., np.ndarray]
    dim_function: Callable[..., int]
    parameters: Mapping[str, Any] = field(default_factory=dict, hash=False)  # compared, not hashed (a mapping)
    version: str = "1"
    input_size: int = NATIVE_FACE_SIZE
    resamples: bool = False
    description: str = ""
    reference: str = ""

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


def _spam_dim(image_size: int, threshold: int, order: int, normalisation: str) -> int:
    check_spam_parameters(threshold, order, normalisation)
    return spam_feature_dim(threshold, order)


def _spectrum_dim(image_size: int, normalisation: str, include_corners: bool) -> int:
    check_spectrum_parameters(normalisation, include_corners)
    return spectrum_feature_dim(image_size, include_corners)


_REGISTRY: dict[str, HandmadeSpec] = {
    spec.name: spec
    for spec in (
        HandmadeSpec(
            name="spam",
            function=spam_features,
            dim_function=_spam_dim,
            parameters={"threshold": 3, "order": 2, "normalisation": "joint"},
            description="SPAM: co-occurrences of truncated pixel differences, per R, G, B, R-G, B-G (3,430 features)",
            reference="Pevny, Bas, Fridrich 2010, Steganalysis by Subtractive Pixel Adjacency Matrix, IEEE TIFS 5(2)",
        ),
        HandmadeSpec(
            name="spectrum",
            function=spectrum_features,
            dim_function=_spectrum_dim,
            parameters={"normalisation": "minmax", "include_corners": False},
            description="azimuthally averaged log power spectrum of the grayscale image (size // 2 features)",
            reference="Durall, Keuper, Keuper 2020, Watch your Up-Convolution, CVPR",
        ),
    )
}


def list_handmade() -> list[str]:
    """Registered hand-made feature names, sorted."""
    return sorted(_REGISTRY)


def get_handmade(name: str) -> HandmadeSpec:
    """The spec of one hand-made feature; unknown names list the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FeaturekitError(
            f"Unknown hand-made feature; valid: {', '.join(list_handmade())}.",
            received=given("name", name),
            fix="Pick one of the names above.",
        ) from None


__all__ = [
    "HandmadeSpec",
    "NATIVE_FACE_SIZE",
    "get_handmade",
    "list_handmade",
    "spam_feature_dim",
    "spam_features",
    "spectrum_feature_dim",
    "spectrum_features",
]
