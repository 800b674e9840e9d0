"""The hand-made features featurekit offers (SPAM, the power spectrum), as data; the backbone registry adopts them."""

from __future__ import annotations

from featurekit.errors import refuse_unknown
from featurekit.handmade.spam import SPAM_PARAMETERS, spam_feature_dim, spam_features
from featurekit.handmade.spec import HandmadeSpec
from featurekit.handmade.spectrum import SPECTRUM_PARAMETERS, spectrum_feature_dim, spectrum_features

HANDMADE_FEATURES: tuple[HandmadeSpec, ...] = (
    HandmadeSpec(
        name="spam", function=spam_features, parameters={"threshold": 3, "order": 2, "normalisation": "joint"},
        domains=SPAM_PARAMETERS,
        dim_function=lambda image_size, **parameters: spam_feature_dim(**parameters),  # the same at any size
        description="SPAM: co-occurrences of truncated pixel differences, per R, G, B, R-G, B-G (3,430 features)",
        reference="Pevny, Bas, Fridrich 2010, Steganalysis by Subtractive Pixel Adjacency Matrix, IEEE TIFS 5(2)",
    ),
    HandmadeSpec(
        name="spectrum", function=spectrum_features, dim_function=spectrum_feature_dim,
        parameters={"normalisation": "minmax", "include_corners": False}, domains=SPECTRUM_PARAMETERS,
        description="azimuthally averaged log power spectrum of the grayscale image (size // 2 features)",
        reference="Durall, Keuper, Keuper 2020, Watch your Up-Convolution, CVPR",
    ),
)
_BY_NAME = {feature.name: feature for feature in HANDMADE_FEATURES}


def list_handmade() -> list[str]:
    """Registered hand-made feature names, sorted."""
    return sorted(_BY_NAME)


def get_handmade(name: str) -> HandmadeSpec:
    """The spec of one hand-made feature; unknown names list the valid ones."""
    refuse_unknown("name", name, list_handmade(), " (the hand-made features)")
    return _BY_NAME[name]
