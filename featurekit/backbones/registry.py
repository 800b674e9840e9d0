"""The backbone registry: names -> entries, and the small protocol every entry implements.

An entry is a Keras network (`featurekit.backbones.spec.BackboneSpec`) or a hand-made feature
(`featurekit.handmade.HandmadeSpec`). Callers never ask which: each entry checks a request, builds its own
embedder and describes itself. This module only stores entries; `featurekit.backbones.catalog` registers
them when the package is imported. Nothing here imports a backend, nor any other featurekit module but errors.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from featurekit.errors import FeaturekitError, given, refuse_unknown


class RegistryEntry(Protocol):
    """What every registered backbone offers (a Keras network or a hand-made feature).

    Attributes:
        name: Registry name (`backbone=NAME`).
        kind: What it is, in words ("Keras network", "hand-made feature").
        input_size: Native square input size in pixels.
        min_input_size: Smallest input size it accepts.
        preprocessing: Its own preprocessing mode ("none" for a hand-made feature).
        is_test: Hidden from user-facing listings.
        request_options: The extraction parameters that mean something for it (`weights`, `pooling` ...).
    """

    name: str
    kind: str
    input_size: int
    min_input_size: int
    preprocessing: str
    is_test: bool
    request_options: tuple[str, ...]

    def check_request(self, image_size: Any = None, poolings: Sequence[str] = ("flatten",),
                      preprocessing: str | None = None, precision: str = "float32",
                      weights: str | Sequence[str] = "default") -> tuple[tuple[str, ...], str]:
        """Refuse what does not apply, before any image is read; returns (poolings, precision) to use."""

    def build_embedder(self, taps: Sequence[tuple[str | None, str]], weights: str = "default",
                       image_size: int | None = None, preprocessing: str | None = None, seed: int = 0,
                       precision: str = "float32", batch_size: int = 32) -> Any:
        """The embedder of several (layer, pooling) taps from one pass over each batch (`embedders`, `__call__`), for
        a request `check_request` has passed (`precision` resolved): it is not checked again."""

    def rebuild_embedder(self, embedding: dict[str, Any], weights: str | None = None) -> Any:
        """The one-tap embedder that made a cache, from its recorded attributes (`weights` overrides the record)."""

    def cache_name_layer(self, layer: str | None) -> str | None:
        """The layer part of a default cache name for the tap asked for as `layer`."""

    def listing(self) -> dict[str, Any]:
        """What `backbones` lists for the entry, JSON-able, known without building anything."""


_REGISTRY: dict[str, RegistryEntry] = {}


def register_backbone(entry: RegistryEntry) -> RegistryEntry:
    """Add an entry to the registry (once per name)."""
    if entry.name in _REGISTRY:
        raise ValueError(f"backbone {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def list_backbones(include_test: bool = False) -> list[str]:
    """Registered backbone names, sorted; test backbones only when asked."""
    return sorted(name for name, entry in _REGISTRY.items() if include_test or not entry.is_test)


def get_spec(name: str) -> RegistryEntry:
    """The entry of a registered backbone; an unknown name gets an error listing the valid ones (not the test ones)."""
    if name not in _REGISTRY:
        refuse_unknown("backbone", name, list_backbones(), " (the `backbones` listing describes them)")
    return _REGISTRY[name]


def network_spec(name: str) -> Any:
    """The entry of a registered Keras network (one whose request takes `weights`, so it can `create_network`);
    other entries are refused."""
    entry = get_spec(name)
    if "weights" not in entry.request_options:
        raise FeaturekitError(
            f"Backbone {name!r} is a {entry.kind}: it has no Keras model and no weights.",
            received=given("backbone", name),
            fix=f"Extract its features with {given('backbone', name)}: it computes them itself, without a network.")
    return entry


def create_backbone(name: str, weights: str = "default", image_size: int | None = None, seed: int = 0) -> Any:
    """Build a frozen backbone (no classification top) as a keras.Model.

    Args:
        name: Registry name of a Keras network.
        weights: "default" (the shipped file, else the spec's pretrained weights, else random), "imagenet",
            "none" (seeded random init: a random-features baseline), or a path to a `.weights.h5` or
            `.keras` file. A known file (see `weights.py`) builds the architecture variant it was trained in.
        image_size: Square input size; defaults to the spec's native size.
        seed: Seed of the random initialisation for weights="none" (no global random state is changed).

    Returns:
        The model, with `trainable = False`.
    """
    return network_spec(name).create_network(weights, image_size, seed)
