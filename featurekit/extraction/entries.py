"""What extraction needs to know of a registry entry: check a request, build its embedder, name its caches.

Keras backbones and hand-made features differ in exactly these few things; `entry_for` is the one place that
tells them apart, so nothing else in extraction (or in its engines) branches on the kind of entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from featurekit.errors import FeaturekitError, given
from featurekit.extraction.request import Tap

# Bytes of one image in the forward pass besides the feature maps: the decoded uint8 pixels, their float32
# copy and the preprocessed float32 input.
_INPUT_BYTES_PER_VALUE = 1 + 4 + 4
# Feature maps alive at once in inference, roughly: a layer's input, its output, and a skip connection.
_MAPS_ALIVE = 3
# Numpy features work in float64 and keep a few intermediate arrays per image.
_HANDMADE_BYTES_PER_VALUE = 1 + 4 * 8


@dataclass(frozen=True)
class EmbedderRequest:
    """What rebuilds the driver's embedder in any process (a Ray worker builds from it, never from a pickle)."""

    backbone: str
    taps: tuple[Tap, ...]
    weights: str
    image_size: int | None
    preprocessing: str | None
    seed: int
    precision: str
    batch_size: int

    def build(self) -> Any:
        """The embedder: `embedder(uint8 batch) -> [float32 features per tap]`, `embedders[i].describe()`."""
        return entry_for(self.backbone).build(self)


def entry_for(backbone: str) -> "KerasEntry | HandmadeEntry":
    """The extraction entry of a registered name (unknown names are refused, listing the valid ones)."""
    from featurekit.backbones import get_spec

    spec = get_spec(backbone)
    return HandmadeEntry(spec) if spec.is_handmade else KerasEntry(spec)


class KerasEntry:
    """A Keras backbone: taps are layers, pooled; it computes in the precision asked for."""

    def __init__(self, spec: Any):
        self.spec = spec

    def check(self, taps: tuple[Tap, ...], image_size: Any, preprocessing: str | None, precision: str,
              weights: tuple[str, ...]) -> tuple[tuple[Tap, ...], str]:
        """Refuse a bad size or pooling; returns the taps and the resolved precision."""
        from featurekit.backbones import POOLINGS
        from featurekit.backend import resolve_precision
        from featurekit.embedder import check_image_size

        check_image_size(self.spec, image_size)
        for tap in taps:
            if tap.pooling not in POOLINGS:
                raise FeaturekitError(f"Unknown pooling {tap.pooling!r}.", received=given("pooling", tap.pooling),
                                      fix=f"Choose one of: {', '.join(POOLINGS)}.")
        return taps, resolve_precision(precision)

    def build(self, request: EmbedderRequest) -> Any:
        from featurekit.embedder import build_multi_embedder

        return build_multi_embedder(request.backbone, taps=[(tap.layer, tap.pooling) for tap in request.taps],
                                    weights=request.weights, image_size=request.image_size,
                                    preprocessing=request.preprocessing, seed=request.seed,
                                    precision=request.precision, batch_size=request.batch_size)

    def cache_layer(self, tap: Tap, built: Any) -> str | None:
        """The layer part of a default cache name: the layer asked for."""
        return tap.layer

    def check_folder(self, embedder: Any, root: Any, paths: list[str]) -> None:
        """Nothing to check: every image is resized to the input size."""

    def bytes_per_image(self, embedder: Any) -> int:
        """Memory one image takes in the forward pass, roughly: its input and the largest feature maps."""
        size = embedder.image_size
        largest = 0
        for layer in embedder.embedders[0].backbone.layers:
            try:
                shape = layer.output.shape[1:]
            except (AttributeError, ValueError):  # a layer used twice, or a nested model: its parts are listed
                continue
            if shape and all(isinstance(d, int) for d in shape):
                largest = max(largest, _product(shape))
        return size * size * 3 * _INPUT_BYTES_PER_VALUE + _MAPS_ALIVE * 4 * largest


class HandmadeEntry:
    """A hand-made feature (numpy): taps are parameter variants, one vector per image, float32."""

    def __init__(self, spec: Any):
        self.spec = spec

    def check(self, taps: tuple[Tap, ...], image_size: Any, preprocessing: str | None, precision: str,
              weights: tuple[str, ...]) -> tuple[tuple[Tap, ...], str]:
        from featurekit.backbones import HANDMADE_POOLING
        from featurekit.handmade.embedder import check_handmade_request

        check_handmade_request(self.spec, image_size, [tap.pooling for tap in taps], preprocessing, precision,
                               list(weights))
        return tuple(dict.fromkeys(Tap(tap.layer, HANDMADE_POOLING) for tap in taps)), "float32"

    def build(self, request: EmbedderRequest) -> Any:
        from featurekit.handmade.embedder import build_handmade_embedder

        return build_handmade_embedder(request.backbone, [(tap.layer, tap.pooling) for tap in request.taps],
                                       request.image_size, request.batch_size, request.preprocessing,
                                       request.precision, request.weights)

    def cache_layer(self, tap: Tap, built: Any) -> str | None:
        """The parameters that differ from the feature's defaults (None when none do, so `layer="threshold=3"`
        names the default cache)."""
        from featurekit.handmade.embedder import overrides_text

        return overrides_text(self.spec.handmade, built.feature)

    def check_folder(self, embedder: Any, root: Any, paths: list[str]) -> None:
        """Refuse images not stored at the feature's size when it reads them as stored."""
        if embedder.stored_size is not None:
            from featurekit.handmade.embedder import refuse_other_sizes

            refuse_other_sizes(root, paths, embedder.stored_size, self.spec.name)

    def bytes_per_image(self, embedder: Any) -> int:
        return embedder.image_size ** 2 * 3 * _HANDMADE_BYTES_PER_VALUE


def _product(shape: Any) -> int:
    total = 1
    for d in shape:
        total *= int(d)
    return total


__all__ = ["EmbedderRequest", "HandmadeEntry", "KerasEntry", "entry_for"]
