"""SPAM: co-occurrences of truncated pixel differences (Pevny, Bas and Fridrich 2010).

T. Pevny, P. Bas, J. Fridrich, "Steganalysis by Subtractive Pixel Adjacency Matrix", IEEE Trans.
Information Forensics and Security 5(2), 2010. The paper models the differences of neighbouring pixels
along each of the 8 directions (left, right, up, down and the four diagonals) as a Markov chain:

- difference along direction ->: ``D[i, j] = I[i, j] - I[i, j + 1]`` (and likewise for the others);
- only values in ``[-T, T]`` are modelled;
- first order: the transition matrix ``M[u, v] = Pr(D[k+1] = u | D[k] = v)``, (2T+1)^2 values;
  second order: ``M[u, v, w] = Pr(D[k+2] = u | D[k+1] = v, D[k] = w)``, (2T+1)^3 values;
- the 8 matrices are averaged in two groups, horizontal/vertical (->, <-, down, up) and diagonal
  (the four diagonals), giving 2 (2T+1)^3 = 686 features at T = 3 (second order) per image.

The authors' own later implementation (DDE Lab, spam686.m, 2011) changes two details "for slightly
better performance": differences outside ``[-T, T]`` are clipped into the border bins instead of
dropped, and each direction is the joint distribution of the consecutive differences (a normalised
co-occurrence histogram) rather than the transition matrix. This module clips like the reference
code; ``normalisation="joint"`` (the default) is the reference code's histogram, and
``normalisation="transition"`` is the paper's conditional probability. The feature layout matches the
reference code's ``M(:)``: the first difference along the direction varies slowest.

The paper works on grayscale images. featurekit computes the same features on five planes: the R, G
and B channels and the R-G and B-G difference images (the colour differences expose demosaicing and
generator artefacts that a single channel hides), so the default dimension is 5 x 686 = 3,430.
Layout: plane-major (R, G, B, R-G, B-G), then group (horizontal/vertical, diagonal), then bins.

Speed: each direction is one ``np.bincount`` per plane over combined int16 bin codes; the
opposite direction is not recomputed, because its histogram is the forward one with every axis
reversed and every difference negated: ``H_back[a, b, c] = H_fwd[-c, -b, -a]``.
"""

from __future__ import annotations

import numpy as np

from featurekit.handmade._input import check_parameters, require_uint8_rgb_batch

SPAM_PLANES = ("R", "G", "B", "R-G", "B-G")
# The values each parameter takes: bin codes are int16, hence T <= 10; the paper uses T=3 for the second order
# and T=4 for the first; "joint" is the authors' reference code, "transition" the paper.
SPAM_PARAMETERS = {"threshold": range(1, 11), "order": (1, 2), "normalisation": ("joint", "transition")}
# Images per bincount: bounds the temporary code arrays to a few tens of MB at 256 px.
_IMAGES_PER_CHUNK = 8


def spam_feature_dim(threshold: int = 3, order: int = 2, normalisation: str = "joint") -> int:
    """Features per image: planes x 2 groups x (2T+1)^(order+1); 3,430 at the defaults.

    The dimension does not depend on the image size: SPAM is a histogram. Bad parameters are refused here,
    before any image is read (bin codes are int16, hence T <= 10).
    """
    check_parameters("spam", SPAM_PARAMETERS, threshold=threshold, order=order, normalisation=normalisation)
    return len(SPAM_PLANES) * 2 * (2 * threshold + 1) ** (order + 1)


def colour_planes(images: np.ndarray) -> np.ndarray:
    """R, G, B, R-G and B-G planes as int16 of shape (B, 5, H, W)."""
    red, green, blue = np.moveaxis(images.astype(np.int16), -1, 0)
    return np.stack([red, green, blue, red - green, blue - green], axis=1)


# Each forward direction as its step (rows, columns) from a pixel to the next: ->, down, down-right, up-right.
DIRECTIONS = {"horizontal": (0, 1), "vertical": (1, 0), "diagonal": (1, 1), "antidiagonal": (-1, 1)}


def _run_view(array: np.ndarray, step: tuple[int, int], k: int, order: int) -> np.ndarray:
    """Element k of every run of order+1 pixels (or differences) along `step`, as an aligned view of (N, H, W):
    element [n, i, j] of the views for k = 0 .. order belongs to the same run."""
    def window(size: int, stride: int) -> slice:
        start = k if stride > 0 else order - k  # a step up starts the run `order` rows down
        return slice(None) if stride == 0 else slice(start, size - order + start)

    return array[:, window(array.shape[1], step[0]), window(array.shape[2], step[1])]


def _clipped_differences(planes: np.ndarray, step: tuple[int, int], threshold: int) -> np.ndarray:
    """Differences along one forward direction (a pixel minus the next), clipped to [-T, T] and shifted to bin
    digits 0 .. 2T: horizontal D[i, j] = I[i, j] - I[i, j+1]; antidiagonal D[i, j] = I[i+1, j] - I[i, j+1]."""
    d = _run_view(planes, step, 0, 1) - _run_view(planes, step, 1, 1)
    return np.clip(d, -threshold, threshold, out=d) + threshold


def _forward_histograms(planes: np.ndarray, direction: str, threshold: int, order: int) -> np.ndarray:
    """Counts of clipped difference runs along one direction: (N, n, ..., n) with order+1 axes of n = 2T+1."""
    n = 2 * threshold + 1
    step = DIRECTIONS[direction]
    d = _clipped_differences(planes, step, threshold)
    runs = [_run_view(d, step, k, order) for k in range(order + 1)]
    code = runs[0].copy()  # bin codes stay below 2T+1 cubed (9261 at T=10): int16 suffices
    for run in runs[1:]:
        code *= np.int16(n)
        code += run
    # One bincount per plane: measured faster than a single bincount over per-plane offsets, whose
    # int64 codes cost more memory traffic than the Python loop over planes (not pixels) costs here.
    counts = np.stack([np.bincount(plane_codes.ravel(), minlength=n ** (order + 1)) for plane_codes in code])
    return counts.reshape(len(planes), *([n] * (order + 1))).astype(np.float64)


def _opposite(histogram: np.ndarray) -> np.ndarray:
    """Histogram of the opposite direction: negate every difference and reverse the run's order."""
    axes = tuple(range(1, histogram.ndim))
    return np.flip(histogram, axis=axes).transpose(0, *reversed(axes))  # flip: bin of v -> bin of -v


def _normalise(histogram: np.ndarray, normalisation: str) -> np.ndarray:
    # joint: over every bin; transition: condition on every difference but the last (contexts never seen give 0)
    total = histogram.sum(axis=tuple(range(1, histogram.ndim)) if normalisation == "joint" else -1, keepdims=True)
    return np.divide(histogram, total, out=np.zeros_like(histogram), where=total > 0)


def _spam_of_planes(planes: np.ndarray, threshold: int, order: int, normalisation: str) -> np.ndarray:
    groups = []
    for pair in (("horizontal", "vertical"), ("diagonal", "antidiagonal")):
        forwards = [_forward_histograms(planes, direction, threshold, order) for direction in pair]
        summed = sum(_normalise(h, normalisation) for forward in forwards for h in (forward, _opposite(forward)))
        groups.append((summed / 4.0).reshape(len(planes), -1))
    return np.concatenate(groups, axis=1)


def spam_features(images: np.ndarray, threshold: int = 3, order: int = 2,
                  normalisation: str = "joint") -> np.ndarray:
    """SPAM features of a batch of images, per plane R, G, B, R-G, B-G (see the module docstring).

    Args:
        images: uint8 RGB batch of shape (B, H, W, 3). Never resized here: resampling smooths exactly
            the pixel-level noise these features measure.
        threshold: T; differences are clipped to [-T, T].
        order: 1 (pairs of differences) or 2 (triples, the paper's 686-feature model).
        normalisation: "joint" (co-occurrence, the authors' reference code) or "transition" (the
            paper's conditional probabilities).

    Returns:
        float32 of shape (B, spam_feature_dim(threshold, order)).
    """
    dim = spam_feature_dim(threshold, order, normalisation)  # refuses bad parameters first
    images = require_uint8_rgb_batch(images, min_size=order + 2, feature="SPAM")
    out = np.empty((len(images), dim), dtype=np.float32)
    for start in range(0, len(images), _IMAGES_PER_CHUNK):
        planes = colour_planes(images[start: start + _IMAGES_PER_CHUNK])
        features = _spam_of_planes(planes.reshape(-1, *planes.shape[2:]), threshold, order, normalisation)
        out[start: start + len(planes)] = features.reshape(len(planes), -1)
    return out
