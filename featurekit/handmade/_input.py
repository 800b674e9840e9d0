"""Checks shared by the hand-made features: what a batch of images must look like, and which values each
parameter takes (declared per feature as a table: name -> its values)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from featurekit.errors import FeaturekitError, given


def value_text(value: Any) -> str:
    """A parameter value as a `layer` text spells it: 3, joint, true."""
    return ("true" if value else "false") if isinstance(value, (bool, np.bool_)) else str(value)


def check_parameters(feature: str, domains: Mapping[str, Sequence[Any]], **values: Any) -> None:
    """Refuse a parameter the feature does not have, or a value that is not one of the declared ones, naming the
    parameter and what it takes.

    A value must equal a declared one and be spelled like it, so 3.0, True or "3" are no threshold of 3.
    """
    for name, value in values.items():
        domain = domains.get(name)
        if domain is None:
            raise FeaturekitError(f"Feature {feature!r} has no parameter {name!r}; its parameters are "
                                  f"{', '.join(domains)}.", received=given(name, value), fix="Use one of those.")
        if value not in domain or value_text(value) not in map(value_text, domain):
            spelled = (f"an integer from {domain.start} to {domain.stop - 1}" if isinstance(domain, range)
                       else f"one of: {', '.join(map(value_text, domain))}")
            raise FeaturekitError(f"Parameter {name!r} of {feature} takes {spelled}.", received=given(name, value),
                                  fix=f"Pass one of those values for {name}, or leave it out for the default.")


def require_uint8_rgb_batch(images: np.ndarray, min_size: int, feature: str) -> np.ndarray:
    """Refuse anything but uint8 RGB images of shape (B, H, W, 3).

    The features measure pixel-level noise, so a float batch (already scaled to [0, 1] or
    preprocessed for a CNN) would give silently meaningless numbers rather than an error.
    """
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3 or min(array.shape[1:3]) < min_size:
        raise FeaturekitError(
            f"The {feature} features take a batch of uint8 RGB images of shape (batch, height, width, 3), at least "
            f"{min_size}x{min_size} pixels.",
            received=f"images of dtype {array.dtype} and shape {array.shape}",
            fix="Decode with featurekit.data.load_image (uint8 RGB) and stack the images with np.stack; use larger "
            "images, e.g. `image_size` 256 (the faces' own size), if they are too small.",
        )
    return array
