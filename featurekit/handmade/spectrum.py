"""Azimuthally averaged log power spectrum (Durall, Keuper and Keuper 2020).

R. Durall, M. Keuper, J. Keuper, "Watch your Up-Convolution: CNN Based Generative Deep Neural Networks
are Failing to Reproduce Spectral Distributions", CVPR 2020. Up-sampling layers of generators leave
excess or missing energy at high spatial frequencies; averaging the 2-D spectrum over rings of equal
frequency turns that into a short 1-D profile a linear classifier can read.

Steps per image, as in the authors' code: grayscale (ITU-R BT.601 luma, Pillow's "L" weights), 2-D FFT,
fftshift (zero frequency in the middle), log power ``log(|F|^2 + eps)``, then the mean over each ring of
integer radius ``floor(hypot(y - H//2, x - W//2))``. The authors take ``20 log10 |F|``, which is the
same profile up to a constant factor, and min-max scale each profile to [0, 1]
(``normalisation="minmax"``, the default); ``"none"`` keeps the log power, whose level also carries
the image's contrast.

Feature size: ``min(H, W) // 2`` rings (the full circles inside the image: 128 at 256 px), or up to the
corner with ``include_corners=True`` (``floor(hypot(H//2, W//2)) + 1``: 182 at 256 px). Unlike SPAM the
size depends on the image size, so a cache of spectra is only comparable at one image size.
"""

from __future__ import annotations

import numpy as np

from featurekit.handmade._input import check_parameters, require_uint8_rgb_batch

# The values each parameter takes: "minmax" is the paper's profile scaled to [0, 1], "none" the log power.
SPECTRUM_PARAMETERS = {"normalisation": ("minmax", "none"), "include_corners": (False, True)}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_EPS = 1e-8
_IMAGES_PER_CHUNK = 32


def spectrum_feature_dim(image_size: int | tuple[int, int], include_corners: bool = False,
                         normalisation: str = "minmax") -> int:
    """Rings in the profile of an image of this size (an int means a square image); bad parameters are refused
    here, before any image is read."""
    check_parameters("spectrum", SPECTRUM_PARAMETERS, normalisation=normalisation, include_corners=include_corners)
    height, width = (image_size, image_size) if np.isscalar(image_size) else image_size
    return int(np.floor(np.hypot(height // 2, width // 2))) + 1 if include_corners else min(height, width) // 2


def _ring_index(height: int, width: int, n_rings: int) -> np.ndarray:
    """Integer radius of every pixel of the shifted spectrum; pixels beyond the last ring get n_rings."""
    y, x = np.indices((height, width))
    radius = np.floor(np.hypot(y - height // 2, x - width // 2)).astype(np.int64)
    return np.minimum(radius, n_rings).ravel()


def spectrum_features(images: np.ndarray, normalisation: str = "minmax", include_corners: bool = False) -> np.ndarray:
    """Azimuthally averaged log power spectra of a batch of images (see the module docstring).

    Args:
        images: uint8 RGB batch of shape (B, H, W, 3). Never resized here: resampling changes the very
            high frequencies the profile is about.
        normalisation: "minmax" (each profile scaled to [0, 1], as the paper) or "none".
        include_corners: Also average the partial rings between the inscribed circle and the corners.

    Returns:
        float32 of shape (B, spectrum_feature_dim((H, W), include_corners)).
    """
    images = require_uint8_rgb_batch(images, min_size=4, feature="spectrum")
    height, width = images.shape[1:3]
    n_rings = spectrum_feature_dim((height, width), include_corners, normalisation)
    rings = _ring_index(height, width, n_rings)
    pixels_per_ring = np.bincount(rings, minlength=n_rings + 1)[:n_rings].astype(np.float64)
    out = np.empty((len(images), n_rings), dtype=np.float32)
    for start in range(0, len(images), _IMAGES_PER_CHUNK):
        gray = images[start: start + _IMAGES_PER_CHUNK].astype(np.float32) @ _LUMA
        spectrum = np.fft.fftshift(np.fft.fft2(gray, axes=(1, 2)), axes=(1, 2))
        log_power = np.log(spectrum.real ** 2 + spectrum.imag ** 2 + _EPS).reshape(len(gray), -1)
        # Ring sums of every image at once: one bincount with a per-image offset of n_rings + 1 bins.
        offsets = (np.arange(len(gray)) * (n_rings + 1))[:, None]
        sums = np.bincount((rings[None, :] + offsets).ravel(), weights=log_power.ravel(),
                           minlength=len(gray) * (n_rings + 1)).reshape(len(gray), n_rings + 1)[:, :n_rings]
        out[start: start + len(gray)] = sums / pixels_per_ring
    if normalisation == "minmax":
        low, high = out.min(axis=1, keepdims=True), out.max(axis=1, keepdims=True)
        out = np.divide(out - low, high - low, out=np.zeros_like(out), where=(high - low) > 0)
    return out
