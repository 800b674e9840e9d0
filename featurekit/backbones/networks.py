"""`create_backbone`: a registered Keras network, built frozen with the requested weights."""

from __future__ import annotations

from typing import Any

from featurekit.backbones.registry import get_spec
from featurekit.backbones.spec import BackboneSpec
from featurekit.errors import FeaturekitError, given


def network_spec(name: str) -> BackboneSpec:
    """The spec of a registered Keras network; an entry without a network (a hand-made feature) is refused."""
    spec = get_spec(name)
    if not isinstance(spec, BackboneSpec):
        raise FeaturekitError(
            f"Backbone {name!r} is a {spec.kind}: it has no Keras model and no weights.",
            received=given("backbone", name),
            fix=f"Extract it with `python cli.py extract --backbone {name} --data DIR` (it builds its own features).")
    return spec


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
