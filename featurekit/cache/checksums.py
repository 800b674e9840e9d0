"""What a cache was when it was finished: a checksum of each row dataset and the identity it was made with.

The merge records them (attribute ``content_checksums``); a reader compares the identity attributes and the
fingerprint with them on every open (cheap), and the contents before a probe is fitted or reused
(`CacheReader.verify_contents`): streamed in blocks, and remembered by file identity (path, size, mtime,
inode) so a process checks one file once. A mismatch is refused naming what changed.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

from featurekit.cache.format import BLOCK_BYTES, IDENTITY_KEYS, ROW_DATASETS, normalise_attr, utf8

ALGORITHM = "sha256"
# How a refusal names each dataset that changed.
WHAT_CHANGED = {"sha256": "image hashes (sha256)"}  # the others by their names
_REMEMBERED = 64
_verified: dict[tuple, dict[str, str]] = {}  # file identity -> checksums computed from it, oldest first


def dataset_checksum(dataset: Any) -> str:
    """sha256 of a dataset's shape, type and values, read in blocks of about `BLOCK_BYTES`.

    Numbers are hashed as their little-endian bytes; strings as UTF-8, each followed by a NUL byte.
    """
    digest = hashlib.new(ALGORITHM)
    digest.update(f"{dataset.shape}|{dataset.dtype.kind}|".encode())
    n_rows = int(dataset.shape[0]) if dataset.shape else 0
    row_bytes = max(1, int(np.prod(dataset.shape[1:], dtype=np.int64)) * max(1, dataset.dtype.itemsize))
    block_rows = max(1, BLOCK_BYTES // row_bytes)
    for start in range(0, n_rows, block_rows):
        block = dataset[start:start + block_rows]
        if block.dtype.kind == "O":
            digest.update(b"".join((v if isinstance(v, bytes) else str(v).encode()) + b"\0" for v in block))
        else:
            digest.update(np.ascontiguousarray(block, dtype=block.dtype.newbyteorder("<")).data)
    return digest.hexdigest()


def content_checksums_of(file: Any) -> dict[str, str]:
    """The checksum of every row dataset of an open HDF5 cache."""
    return {name: dataset_checksum(file[name]) for name in ROW_DATASETS}


def content_record(file: Any, attrs: dict[str, Any]) -> dict[str, Any]:
    """What the merge records: the algorithm, each dataset's checksum, and the identity of the fingerprint."""
    identity = {key: utf8(value) if isinstance(value, str) else value
                for key, value in ((key, normalise_attr(attrs.get(key))) for key in IDENTITY_KEYS)}
    return {"algorithm": ALGORITHM, "datasets": content_checksums_of(file), "identity": identity}


def remembered_checksums(file: Any, path: str) -> dict[str, str]:
    """`content_checksums_of(file)`, computed once per file identity (path, size, mtime, ctime, inode)."""
    found = os.fstat(file.id.get_vfd_handle())
    key = (os.path.realpath(path), found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)
    if key not in _verified:
        _verified[key] = content_checksums_of(file)
        if len(_verified) > _REMEMBERED:
            del _verified[next(iter(_verified))]
    return _verified[key]


def changed_datasets(recorded: dict[str, str], found: dict[str, str]) -> list[str]:
    """How a message names each dataset whose checksum differs from the recorded one."""
    return [WHAT_CHANGED.get(name, name) for name in ROW_DATASETS
            if name in recorded and recorded[name] != found.get(name)]


def edited_identity(attrs: dict[str, Any], recorded: dict[str, Any]) -> list[str]:
    """Identity attributes present in `attrs` whose value is not the one recorded when the cache was made.

    An attribute absent from the file is left to the caller's default (as for caches made before it existed),
    and one the record does not hold (an identity key added later) is not judged.
    """
    return [f"{key} is {attrs[key]!r} but the cache was made with {recorded[key]!r}"
            for key in IDENTITY_KEYS
            if key in attrs and key in recorded and normalise_attr(attrs[key]) != normalise_attr(recorded[key])]
