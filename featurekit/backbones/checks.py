"""What a network's request must satisfy, checked before anything is built: preprocessing, pooling, image size.

Plain Python: checking a request imports no Keras, so a refused request costs nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from featurekit.errors import FeaturekitError, given, refuse_unknown
from featurekit.parameters import MAX_IMAGE_SIZE, PREPROCESSING_MODES


def check_preprocessing(mode: str) -> None:
    """Refuse a preprocessing mode that is not one of PREPROCESSING_MODES."""
    refuse_unknown("preprocessing", mode, PREPROCESSING_MODES, " (or leave it out to use the backbone's own)")


def check_image_size(spec: Any, image_size: Any) -> int:
    """The square input size to use: the native size for None; refuse anything outside
    [spec.min_input_size, MAX_IMAGE_SIZE] before any work is done (0 is refused, not read as "native")."""
    if image_size is None:
        return spec.input_size
    if isinstance(image_size, (bool, np.bool_)) or not isinstance(image_size, (int, np.integer)) or \
            not spec.min_input_size <= int(image_size) <= MAX_IMAGE_SIZE:
        raise FeaturekitError(
            f"Backbone {spec.name!r} takes image sizes from {spec.min_input_size} to {MAX_IMAGE_SIZE} pixels, whole "
            f"numbers (at least {spec.min_input_size}x{spec.min_input_size} for its architecture; above "
            f"{MAX_IMAGE_SIZE} a batch no longer fits in memory).",
            received=given("image_size", image_size),
            fix=f"Use `image_size` {spec.input_size} (native) or another size in that range; "
            "leave it out for the native size.")
    return int(image_size)


def pooled_dim(feature_shape: tuple[int, ...], pooling: str) -> int:
    """Embedding size after `pooling` of one example's feature map.

    Args:
        feature_shape: Shape without the batch axis: (H, W, C); flatten takes any shape, e.g. a vector (D,).
        pooling: One of POOLINGS (checked with the request).

    Returns:
        The number of values for "flatten" (H*W*C; D for a vector), C for "avg"/"max", 2C for "meanstd".
    """
    if pooling == "flatten":
        return int(np.prod(feature_shape))
    if len(feature_shape) != 3:
        raise FeaturekitError(
            f"Pooling {pooling!r} needs a spatial feature map (H, W, C), but the tapped layer gives shape "
            f"{tuple(feature_shape)}.", received=given("pooling", pooling),
            fix="Use `pooling` flatten, or tap a convolutional layer.")
    return int(feature_shape[-1]) * (2 if pooling == "meanstd" else 1)
