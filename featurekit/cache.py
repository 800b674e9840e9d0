"""The HDF5 embedding cache: format, crash-safe writer, reader (in memory or streamed).

A finished cache is one HDF5 file with these names, which other tools may rely on:

- datasets ``features`` (N, D), ``labels`` (N,), ``paths`` (relative to the data folder, UTF-8),
  ``splits`` (train/valid/test), ``sha256`` (of each image file's bytes), ``skipped_paths`` and
  ``skipped_reasons`` (files that could not be decoded);
- root attributes ``backbone``, ``weights``, ``weights_label``, ``weights_sha256``, ``random_features``,
  ``layer``, ``pooling``, ``image_size``, ``preprocessing``, ``class_names``, ``complete``, ``versions``,
  ``created_utc``, ``config`` (the resolved config, JSON), ``fingerprint`` and the schema version.

While extraction runs, finished batches are written next to the cache, in ``NAME.h5.partial/``, one small
HDF5 file per batch, each created under a temporary name and renamed into place. A kill at any moment
(SIGKILL included) therefore loses at most the batch in flight, never a finished one, and a rerun picks
up the batches that are missing. When all are there they are merged into ``NAME.h5`` (again through a
temporary name), so a file at the cache path is always complete.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.errors import FeaturekitError

SCHEMA_VERSION = 1
# Attributes that say what a cache is; a request that differs in any of them needs another cache.
IDENTITY_KEYS = (
    "backbone", "weights_label", "weights_sha256", "layer", "pooling", "image_size",
    "preprocessing", "precision", "dtype", "data_fingerprint",
)
TARGET_CHUNK_BYTES = 1 << 20


def _string_dtype():
    import h5py

    return h5py.string_dtype("utf-8")


def default_cache_path(data_root: str | Path, backbone: str, layer: str | None, pooling: str,
                       image_size: int, cache_dir: str | Path = "cache", tag: str | None = None) -> Path:
    """``cache/<data-folder-name>-<backbone>[-<layer>]-<pooling>-<size>[-<tag>].h5``."""
    name = Path(data_root).expanduser().resolve().name
    parts = [name, backbone] + ([layer] if layer else []) + [pooling, str(image_size)] + ([tag] if tag else [])
    return Path(cache_dir) / ("-".join(parts) + ".h5")


def partial_dir_for(cache_path: str | Path) -> Path:
    return Path(f"{cache_path}.partial")


def library_versions() -> dict[str, str]:
    """Versions of what made a cache (recorded in it), with the Keras backend that computed.

    Only libraries already loaded are asked (see `featurekit.backend.backend_versions`): recording versions
    never imports TensorFlow, or Keras, into a process that did not use them (readers, scikit-learn probes).
    """
    import platform

    import h5py

    import featurekit
    from featurekit.backend import backend_versions

    versions = {"featurekit": featurekit.__version__, "python": platform.python_version(),
                "numpy": np.__version__, "h5py": h5py.__version__}
    versions.update(backend_versions())
    return versions


def describe_differences(stored: dict[str, Any], requested: dict[str, Any], keys=IDENTITY_KEYS) -> list[str]:
    """Human-readable list of identity attributes that differ."""
    differences = []
    for key in keys:
        if key in requested and _normalise(stored.get(key)) != _normalise(requested[key]):
            if key == "data_fingerprint":
                differences.append("the images differ (files added, removed or changed since it was made)")
            else:
                differences.append(f"{key} is {stored.get(key)!r} in the cache but {requested[key]!r} was asked for")
    return differences


def _normalise(value: Any) -> Any:
    if isinstance(value, (np.generic,)):
        return value.item()
    if value is None:
        return ""
    return value


@contextmanager
def writer_lock(cache_path: str | Path) -> Iterator[None]:
    """Exclusive lock so two processes never write one cache; released by the kernel even on SIGKILL.

    The lock file is removed on release; a process that locked a file just removed by its holder sees
    that the path now names another file (or none) and locks again.
    """
    lock_path = Path(f"{cache_path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise FeaturekitError(
                f"Another process ({holder}) is writing this cache right now.",
                received=str(cache_path),
                fix="Wait for it to finish (it resumes where it stands if stopped), or write another --cache.",
            ) from None
        try:
            if os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        lock_path.unlink(missing_ok=True)  # while still holding it: nobody can lock this file meanwhile
        handle.close()


class PartialCache:
    """The finished batches of an extraction that is still running or was interrupted."""

    def __init__(self, cache_path: str | Path):
        self.cache_path = Path(cache_path)
        self.directory = partial_dir_for(cache_path)

    @property
    def request_path(self) -> Path:
        return self.directory / "request.json"

    def exists(self) -> bool:
        return self.request_path.exists()

    def read_request(self) -> dict[str, Any]:
        return json.loads(self.request_path.read_text())

    def start(self, request: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(self.request_path, json.dumps(request, indent=2, sort_keys=True))

    def batch_path(self, index: int) -> Path:
        return self.directory / f"batch-{index:07d}.h5"

    def done_batches(self) -> set[int]:
        return {int(p.stem.split("-")[1]) for p in self.directory.glob("batch-*.h5")}

    def write_batch(self, index: int, row_indices: np.ndarray, features: np.ndarray,
                    skipped_indices: np.ndarray, skipped_reasons: list[str], dtype: str) -> None:
        """Write one finished batch atomically (temporary name, fsync, rename)."""
        import h5py

        final = self.batch_path(index)
        temporary = final.with_suffix(".tmp")
        with h5py.File(temporary, "w") as f:
            f.create_dataset("row_indices", data=np.asarray(row_indices, dtype=np.int64))
            f.create_dataset("features", data=np.asarray(features, dtype=dtype))
            f.create_dataset("skipped_indices", data=np.asarray(skipped_indices, dtype=np.int64))
            f.create_dataset("skipped_reasons", data=np.asarray(skipped_reasons, dtype=object), dtype=_string_dtype())
        _fsync_path(temporary)
        os.replace(temporary, final)

    def read_batches(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]]:
        import h5py

        for index in sorted(self.done_batches()):
            with h5py.File(self.batch_path(index), "r") as f:
                yield (f["row_indices"][()], f["features"][()], f["skipped_indices"][()],
                       [r.decode() if isinstance(r, bytes) else r for r in f["skipped_reasons"][()]])

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    _fsync_path(temporary)
    os.replace(temporary, path)


def cache_fingerprint(attrs: dict[str, Any], n_rows: int, feature_dim: int) -> str:
    """A short stable id of a cache's content: its identity attributes and shape."""
    identity = {key: _normalise(attrs.get(key)) for key in IDENTITY_KEYS}
    identity.update(n_rows=int(n_rows), feature_dim=int(feature_dim))
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def rows_per_chunk(feature_dim: int, itemsize: int, n_rows: int) -> int:
    """Rows per HDF5 chunk so a chunk holds about 1 MiB (h5py's advice: 10 KiB to 1 MiB)."""
    return int(max(1, min(max(n_rows, 1), TARGET_CHUNK_BYTES // max(1, feature_dim * itemsize))))


def finalize_cache(partial: PartialCache, samples: list, attrs: dict[str, Any]) -> Path:
    """Merge the finished batches into the cache file, through a temporary name.

    Args:
        partial: The batches; all of them must be there.
        samples: The data folder's samples (objects with path, label, split, sha256), in row order.
        attrs: Root attributes; `class_names` a list, `config`/`versions` dicts (stored as JSON).
    """
    import h5py

    dtype = attrs["dtype"]
    feature_dim = int(attrs["feature_dim"])
    kept: list[int] = []
    skipped: dict[int, str] = {}
    for row_indices, _, skipped_indices, reasons in partial.read_batches():
        kept.extend(int(i) for i in row_indices)
        skipped.update({int(i): reason for i, reason in zip(skipped_indices, reasons)})
    n_rows = len(kept)
    if n_rows == 0:
        raise FeaturekitError(
            "No image in the data folder could be decoded, so the cache would be empty.",
            received=f"{len(skipped)} files, all skipped (first: {samples[next(iter(skipped))].path if skipped else '-'})",
            fix="Check that the files are JPEG, PNG, BMP or GIF images.",
        )
    order = np.argsort(np.asarray(kept))
    if not np.all(np.diff(np.asarray(kept)[order]) > 0):
        raise RuntimeError("duplicate rows in partial cache batches")  # a bug, not a user error

    cache_path = partial.cache_path
    temporary = cache_path.with_name(cache_path.name + ".tmp")
    strings = _string_dtype()
    kept_sorted = [kept[i] for i in order]
    with h5py.File(temporary, "w") as f:
        chunk_rows = rows_per_chunk(feature_dim, np.dtype(dtype).itemsize, n_rows)
        features = f.create_dataset("features", shape=(n_rows, feature_dim), maxshape=(None, feature_dim),
                                    dtype=dtype, chunks=(chunk_rows, feature_dim))
        position = {row: i for i, row in enumerate(kept_sorted)}
        for row_indices, batch_features, _, _ in partial.read_batches():
            if len(row_indices):
                targets = np.array([position[int(r)] for r in row_indices])
                # Batches are contiguous runs of rows, so one slice write per batch.
                if np.all(np.diff(targets) == 1):
                    features[targets[0]:targets[-1] + 1] = batch_features
                else:
                    for target, row in zip(targets, batch_features):
                        features[target] = row
        chosen = [samples[i] for i in kept_sorted]
        f.create_dataset("labels", data=np.array([s.label for s in chosen], dtype=np.int8))
        f.create_dataset("paths", data=np.array([s.path for s in chosen], dtype=object), dtype=strings)
        f.create_dataset("splits", data=np.array([s.split for s in chosen], dtype=object), dtype=strings)
        f.create_dataset("sha256", data=np.array([s.sha256 for s in chosen], dtype=object), dtype=strings)
        skipped_rows = sorted(skipped)
        f.create_dataset("skipped_paths", data=np.array([samples[i].path for i in skipped_rows], dtype=object), dtype=strings)
        f.create_dataset("skipped_reasons", data=np.array([skipped[i] for i in skipped_rows], dtype=object), dtype=strings)
        stored = dict(attrs)
        stored.update(schema_version=SCHEMA_VERSION, complete=True, n_rows=n_rows, n_skipped=len(skipped_rows),
                      fingerprint=cache_fingerprint(attrs, n_rows, feature_dim))
        for key, value in stored.items():
            f.attrs[key] = _to_attr(value)
    _fsync_path(temporary)
    os.replace(temporary, cache_path)
    partial.remove()
    return cache_path


def _to_attr(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (list, tuple)):
        return np.array([str(v) for v in value], dtype=object) if value else "[]"
    if value is None:
        return ""
    return value


JSON_ATTRS = ("config", "versions")


def _from_attr(key: str, value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        return [v.decode() if isinstance(v, bytes) else str(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if key in JSON_ATTRS and isinstance(value, str):
        return json.loads(value) if value else {}
    return value


class CacheReader:
    """Read access to a finished cache; features load into memory or stream in chunk-sized blocks."""

    def __init__(self, path: str | Path):
        import h5py

        self.path = Path(path)
        if not self.path.exists():
            partial = PartialCache(self.path)
            if partial.exists():
                request = partial.read_request()
                done, total = len(partial.done_batches()), request.get("n_batches", "?")
                raise FeaturekitError(
                    f"Cache {self.path} is incomplete: its extraction stopped after {done} of {total} batches.",
                    received=str(self.path),
                    fix=f"Re-run the same extract command to finish it: `{request.get('command', 'python cli.py extract ...')}`.",
                )
            raise FeaturekitError("Cache file not found.", received=str(self.path),
                                  fix="Make it with `python cli.py extract --backbone NAME --data DIR`, or list caches with `ls cache/`.")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise FeaturekitError(f"Not a readable HDF5 cache ({error}).", received=str(self.path),
                                  fix="Rebuild it with `python cli.py extract ... --overwrite`.") from None
        missing = [name for name in ("features", "labels", "paths", "splits") if name not in self._file]
        if missing:
            raise FeaturekitError(f"Not a featurekit cache: datasets {missing} are missing.", received=str(self.path),
                                  fix="Point --cache at a file written by `python cli.py extract`.")
        self.attrs: dict[str, Any] = {key: _from_attr(key, value) for key, value in self._file.attrs.items()}
        if not self.attrs.get("complete", False):
            raise FeaturekitError(f"Cache {self.path} is marked incomplete.", received=str(self.path),
                                  fix="Re-run its extract command to finish it, or pass --overwrite to rebuild.")
        self.features = self._file["features"]
        self.labels: np.ndarray = self._file["labels"][()].astype(np.int64)
        self.splits: np.ndarray = np.array([_decode(s) for s in self._file["splits"][()]])
        self.paths: list[str] = [_decode(p) for p in self._file["paths"][()]]

    def __enter__(self) -> "CacheReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def n_rows(self) -> int:
        return int(self.features.shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def fingerprint(self) -> str:
        return str(self.attrs.get("fingerprint") or cache_fingerprint(self.attrs, self.n_rows, self.feature_dim))

    @property
    def class_names(self) -> list[str]:
        return list(self.attrs.get("class_names", []))

    @property
    def sha256(self) -> list[str]:
        return [_decode(s) for s in self._file["sha256"][()]]

    @property
    def skipped(self) -> list[tuple[str, str]]:
        if "skipped_paths" not in self._file:
            return []
        return list(zip((_decode(p) for p in self._file["skipped_paths"][()]),
                        (_decode(r) for r in self._file["skipped_reasons"][()])))

    def split_indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def nbytes(self, split: str | None = None) -> int:
        """Bytes the split's features take in memory as float32."""
        rows = self.n_rows if split is None else len(self.split_indices(split))
        return rows * self.feature_dim * 4

    def require_splits(self, splits: tuple[str, ...] = ("train", "valid", "test")) -> None:
        """Refuse a cache whose splits cannot train and evaluate a binary classifier."""
        for split in splits:
            labels = self.labels[self.splits == split]
            if len(labels) == 0:
                raise FeaturekitError(f"Cache {self.path.name} has no {split!r} split.", received=str(self.path),
                                      fix="Re-extract with split fractions that give every split images, e.g. --split 0.7,0.15,0.15.")
            if len(np.unique(labels)) < 2:
                only = self.class_names[int(labels[0])] if self.class_names else int(labels[0])
                raise FeaturekitError(f"The {split!r} split of {self.path.name} holds one class only ({only!r}).",
                                      received=str(self.path), fix="Add images of both classes, or change the split fractions.")

    def load(self, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Features (float32) and labels of one split (or all rows), in memory."""
        rows = np.arange(self.n_rows) if split is None else self.split_indices(split)
        blocks = [x for x, _ in self._blocks(rows, shuffle=False, seed=0)]
        features = np.concatenate(blocks) if blocks else np.zeros((0, self.feature_dim), np.float32)
        return features, self.labels[rows]

    def iter_batches(self, split: str | None, batch_rows: int, shuffle: bool = False,
                     seed: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream (X, y) batches of one split with memory bounded by a block of HDF5 chunks.

        Shuffling is at block level (block order) plus within each block, so it never reads the whole cache.
        """
        rows = np.arange(self.n_rows) if split is None else self.split_indices(split)
        pending_x: list[np.ndarray] = []
        pending_y: list[np.ndarray] = []
        count = 0
        for x, y in self._blocks(rows, shuffle, seed, with_labels=True):
            pending_x.append(x)
            pending_y.append(y)
            count += len(x)
            while count >= batch_rows:
                x_all, y_all = np.concatenate(pending_x), np.concatenate(pending_y)
                yield x_all[:batch_rows], y_all[:batch_rows]
                pending_x, pending_y = [x_all[batch_rows:]], [y_all[batch_rows:]]
                count = len(pending_x[0])
        if count:
            yield np.concatenate(pending_x), np.concatenate(pending_y)

    def _blocks(self, rows: np.ndarray, shuffle: bool, seed: int, with_labels: bool = False):
        chunk_rows = (self.features.chunks or (1024,))[0]
        block_rows = max(chunk_rows, (8 * TARGET_CHUNK_BYTES) // max(1, self.feature_dim * self.features.dtype.itemsize))
        block_rows = max(chunk_rows, block_rows // chunk_rows * chunk_rows)
        starts = np.arange(0, self.n_rows, block_rows)
        rng = np.random.default_rng(seed)
        if shuffle:
            rng.shuffle(starts)
        wanted = np.zeros(self.n_rows, dtype=bool)
        wanted[rows] = True
        for start in starts:
            stop = min(start + block_rows, self.n_rows)
            mask = wanted[start:stop]
            if not mask.any():
                continue
            block = self.features[start:stop][mask].astype(np.float32, copy=False)
            labels = self.labels[start:stop][mask]
            if shuffle:
                permutation = rng.permutation(len(block))
                block, labels = block[permutation], labels[permutation]
            yield (block, labels) if with_labels else (block, None)


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def open_cache(path: str | Path) -> CacheReader:
    """Open a finished cache for reading (errors name what is wrong and how to fix it)."""
    return CacheReader(path)
