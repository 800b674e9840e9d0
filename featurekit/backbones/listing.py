"""What the `backbones` command lists: each entry's own description, known without building a network."""

from __future__ import annotations

from typing import Any

from featurekit.backbones.registry import get_spec, list_backbones


def backbone_listing(name: str) -> dict[str, Any]:
    """One backbone's listing (the keys of `RegistryEntry.listing`), JSON-able; imports no backend."""
    return get_spec(name).listing()


def backbone_listings(include_test: bool = False) -> list[dict[str, Any]]:
    """The listing of every registered backbone, sorted by name; test backbones only when asked."""
    return [backbone_listing(name) for name in list_backbones(include_test)]
