"""What rebuilds an embedder in any process: the taps of the shared forward pass and the typed build request.

Keras backbones and hand-made features answer every question of extraction themselves, through the registry
protocol (`featurekit.backbones.registry.RegistryEntry`): nothing in extraction (or its engines) branches on the kind.
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
    precision: str  # resolved: never "auto"
    batch_size: int

    def build(self) -> Any:
        """The embedder: `embedder(uint8 batch) -> [float32 features per tap]`, `embedders[i].describe()`."""
        from featurekit.backbones import get_spec

        return get_spec(self.backbone).build_embedder(
            [(tap.layer, tap.pooling) for tap in self.taps], weights=self.weights, image_size=self.image_size,
            preprocessing=self.preprocessing, seed=self.seed, precision=self.precision, batch_size=self.batch_size)
