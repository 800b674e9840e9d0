"""The cache's format and identity: names, attributes, the fingerprint, and the default cache path.

A finished cache is one HDF5 file with these names, which other tools may rely on:

- datasets ``features`` (N, D), ``labels`` (N,), ``paths`` (relative to the data folder, UTF-8),
  ``splits`` (train/valid/test), ``sha256`` (of each image file's bytes): one row per image; ``skipped_paths``
  and ``skipped_reasons`` (files that could not be decoded); ``ignored_paths`` and ``ignored_reasons``
  (what the data scan did not take: links it does not follow, unreadable files, names that are not UTF-8);
- root attributes ``backbone``, ``weights``, ``weights_label``, ``weights_sha256``, ``random_features``,
  ``layer``, ``pooling``, ``image_size``, ``preprocessing``, ``class_names``, ``positive_class`` (label 1),
  ``complete``, ``versions``, ``created_utc``, ``config`` (the resolved config, JSON), ``fingerprint``,
  ``n_samples`` (images the cache was made from: rows plus skipped), ``schema_version`` and
  ``content_checksums`` (JSON: a checksum of each row dataset and the identity the fingerprint was made from;
  see `featurekit.cache.checksums`; caches made before it was recorded have none).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

# 2: adds `n_samples`, `positive_class` and the ignored_* datasets. Readers read every version up to this one.
# `content_checksums` is an optional attribute within version 2: readers of version 2 ignore it.
SCHEMA_VERSION = 2
# Attributes that say what a cache is; a request that differs in any of them needs another cache.
IDENTITY_KEYS = (
    "backbone", "weights_label", "weights_sha256", "layer", "pooling", "image_size",
    "preprocessing", "precision", "architecture_variant", "dtype", "data_fingerprint", "view", "subset",
)
# Identity keys added later whose empty value is what every cache made before them was (the clean images, every
# split): left out of the fingerprint while empty, so those caches and the models fitted on them keep theirs.
EMPTY_BY_DEFAULT_KEYS = ("view", "subset")
# One row per image in each of these datasets.
ROW_DATASETS = ("features", "labels", "paths", "splits", "sha256")
JSON_ATTRS = ("config", "versions", "content_checksums")
TARGET_CHUNK_BYTES = 1 << 20
BLOCK_BYTES = 8 * TARGET_CHUNK_BYTES  # what one read of features holds, streamed or checked


def string_dtype():
    import h5py

    return h5py.string_dtype("utf-8")


def default_cache_path(data_root: str | Path, backbone: str, layer: str | None, pooling: str,
                       image_size: int, cache_dir: str | Path = "cache", tag: str | None = None) -> Path:
    """``cache/<data-folder-name>-<backbone>[-<layer>]-<pooling>-<size>[-<tag>].h5``."""
    parts = [Path(data_root).expanduser().resolve().name, backbone, layer, pooling, str(image_size), tag]
    return Path(cache_dir) / ("-".join(part for part in parts if part) + ".h5")


def library_versions() -> dict[str, str]:
    """Versions of what made a cache (recorded in it), with the Keras backend that computed.

    Only libraries already loaded are asked (see `featurekit.backend.backend_versions`): recording versions
    never imports TensorFlow, or Keras, into a process that did not use them (readers, scikit-learn probes).
    """
    import platform

    import h5py

    import featurekit
    from featurekit.backend import backend_versions

    return {"featurekit": featurekit.__version__, "python": platform.python_version(), "numpy": np.__version__,
            "h5py": h5py.__version__} | backend_versions()


def describe_differences(stored: dict[str, Any], requested: dict[str, Any], keys=IDENTITY_KEYS) -> list[str]:
    """Human-readable list of identity attributes that differ."""
    return ["the images differ (files added, removed or changed since it was made)" if key == "data_fingerprint"
            else f"{key} is {stored.get(key)!r} in the cache but {requested[key]!r} was asked for"
            for key in keys if key in requested and normalise_attr(stored.get(key)) != normalise_attr(requested[key])]


def normalise_attr(value: Any) -> Any:
    """An attribute value as identity comparisons see it: numpy scalars as Python values, None as ""."""
    if isinstance(value, np.generic):
        return value.item()
    return "" if value is None else value


def cache_fingerprint(attrs: dict[str, Any], n_rows: int, feature_dim: int) -> str:
    """A short stable id of a cache's content: its identity attributes and shape."""
    identity = {key: normalise_attr(attrs.get(key)) for key in IDENTITY_KEYS
                if key not in EMPTY_BY_DEFAULT_KEYS or normalise_attr(attrs.get(key)) != ""}
    identity.update(n_rows=int(n_rows), feature_dim=int(feature_dim))
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def rows_per_chunk(feature_dim: int, itemsize: int, n_rows: int) -> int:
    """Rows per HDF5 chunk so a chunk holds about 1 MiB (h5py's advice: 10 KiB to 1 MiB)."""
    return int(max(1, min(max(n_rows, 1), TARGET_CHUNK_BYTES // max(1, feature_dim * itemsize))))


def to_attr(value: Any) -> Any:
    """A Python value as an HDF5 attribute: dicts as JSON, lists as UTF-8 string arrays, None as ""."""
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (list, tuple)):
        return np.array([utf8(str(v)) for v in value], dtype=object) if value else "[]"
    if value is None:
        return ""
    return utf8(value) if isinstance(value, str) else value


def utf8(text: str) -> str:
    """Text HDF5 can store as UTF-8: bytes of a file name that were not UTF-8 become `\\xe9` escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def from_attr(key: str, value: Any) -> Any:
    """An HDF5 attribute as a Python value (the inverse of `to_attr`)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        return [decode(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if key in JSON_ATTRS and isinstance(value, str):
        return json.loads(value) if value else {}
    return value


def decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def is_featurekit_cache(path: str | Path) -> bool:
    """Whether `path` holds a file featurekit wrote as a cache (an HDF5 file with featurekit's schema attribute), or
    is a symbolic link (replaced by rename, its target untouched): the marker `overwrite` needs to replace it."""
    import h5py

    path = Path(path)
    if path.is_symlink():
        return True
    try:
        with h5py.File(path, "r") as f:
            return "schema_version" in f.attrs and "backbone" in f.attrs
    except (OSError, ValueError):
        return False
