"""Checks shared by the hand-made features: what a batch of images must look like."""

from __future__ import annotations

import numpy as np

from featurekit.errors import FeaturekitError


def require_uint8_rgb_batch(images: np.ndarray, min_size: int, feature: str) -> np.ndarray:
    """Refuse anything but uint8 RGB images of shape (B, H, W, 3).

    The features measure pixel-level noise, so a float batch (already scaled to [0, 1] or
    preprocessed for a CNN) would give silently meaningless numbers rather than an error.
    """
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise FeaturekitError(
            f"The {feature} features take a batch of uint8 RGB images of shape (batch, height, width, 3).",
            received=f"images of dtype {array.dtype} and shape {array.shape}",
            fix="Decode with featurekit.data.load_image (uint8 RGB) and stack the images with np.stack.",
        )
    if min(array.shape[1:3]) < min_size:
        raise FeaturekitError(
            f"The {feature} features need images of at least {min_size}x{min_size} pixels.",
            received=f"images of shape {array.shape}",
            fix=f"Use larger images, e.g. `image_size` 256 (the faces' own size).",
        )
    return array
