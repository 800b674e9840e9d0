"""What the `backbones` command lists: each entry's own description, known without building a network."""

from __future__ import annotations

from typing import Any

from featurekit.backbones.registry import get_spec


def backbone_listing(name: str) -> dict[str, Any]:
    """One backbone's listing (the keys of `RegistryEntry.listing`), JSON-able; imports no backend."""
    return get_spec(name).listing()
