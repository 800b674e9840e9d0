"""What extraction needs to know of a registry entry: check a request, build its embedder, name its caches.

Keras backbones and hand-made features differ in exactly these few things, and each registry entry answers them
itself (`featurekit.backbones.registry.RegistryEntry`): nothing in extraction (or its engines) branches on the kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Tap:
    """One output of the shared forward pass: a layer (None: the last block) and how it is pooled."""

    layer: str | None
    pooling: str


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


def entry_for(backbone: str) -> "Entry":
    """The extraction entry of a registered name (unknown names are refused, listing the valid ones)."""
    from featurekit.backbones import get_spec

    return Entry(get_spec(backbone))


class Entry:
    """A registry entry seen from extraction: every call goes to the entry's own protocol
    (`featurekit.backbones.registry.RegistryEntry`) or to the embedder it builds; nothing here asks which kind."""

    def __init__(self, spec: Any):
        self.spec = spec

    def check(self, taps: tuple[Tap, ...], image_size: Any, preprocessing: str | None, precision: str,
              weights: tuple[str, ...]) -> tuple[tuple[Tap, ...], str]:
        """Refuse what does not apply; returns the taps with the poolings the entry uses, and the precision."""
        asked = tuple(dict.fromkeys(tap.pooling for tap in taps))
        poolings, precision = self.spec.check_request(image_size, asked, preprocessing, precision, list(weights))
        used = dict(zip(asked, poolings)) if len(poolings) == len(asked) else {p: poolings[0] for p in asked}
        return tuple(dict.fromkeys(Tap(tap.layer, used[tap.pooling]) for tap in taps)), precision

    def build(self, request: EmbedderRequest) -> Any:
        return self.spec.build_embedder([(tap.layer, tap.pooling) for tap in request.taps], weights=request.weights,
                                        image_size=request.image_size, preprocessing=request.preprocessing,
                                        seed=request.seed, precision=request.precision,
                                        batch_size=request.batch_size)

    def cache_layer(self, tap: Tap, built: Any) -> str | None:
        """The layer part of a default cache name."""
        return self.spec.cache_name_layer(tap.layer)

    def check_folder(self, embedder: Any, root: Any, paths: list[str]) -> None:
        embedder.check_images(root, paths)

    def bytes_per_image(self, embedder: Any) -> int:
        return embedder.bytes_per_image()


__all__ = ["EmbedderRequest", "Entry", "Tap", "entry_for"]
