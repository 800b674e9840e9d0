"""The backbone registry: Keras networks and hand-made features, one entry each, as data.

`list_backbones()`, `get_spec(name)` and `create_backbone(name, ...)` are the ways in. Every entry
implements the small protocol of `registry.RegistryEntry` (check a request, build its embedder, describe
itself), so callers never ask what kind of entry they hold. Importing this package registers every entry
(`catalog.py`) and imports no Keras or TensorFlow; each entry's `listing()` says what the `backbones` listing shows.

Imports run one way: `catalog` -> `spec` (the entry, which builds itself) -> `embedder` -> `loading` ->
`weights`, `provenance`, `checks`, `registry`. The builders below the spec take it as an argument and import
nothing of it; the spec imports them inside its methods, so registering loads no backend.
"""

from featurekit.backbones.registry import RegistryEntry, create_backbone, get_spec, list_backbones, register_backbone
from featurekit.backbones.spec import BackboneSpec
from featurekit.backbones import catalog  # noqa: F401  (registers every entry)

__all__ = ["BackboneSpec", "RegistryEntry", "create_backbone", "get_spec", "list_backbones", "register_backbone"]
