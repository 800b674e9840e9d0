"""The HDF5 embedding cache: format, crash-safe writer, reader (in memory or streamed).

A finished cache is one HDF5 file with these names, which other tools may rely on:

- datasets ``features`` (N, D), ``labels`` (N,), ``paths`` (relative to the data folder, UTF-8),
  ``splits`` (train/valid/test), ``sha256`` (of each image file's bytes): one row per image; ``skipped_paths``
  and ``skipped_reasons`` (files that could not be decoded); ``ignored_paths`` and ``ignored_reasons``
  (what the data scan did not take: links it does not follow, unreadable files, names that are not UTF-8);
- root attributes ``backbone``, ``weights``, ``weights_label``, ``weights_sha256``, ``random_features``,
  ``layer``, ``pooling``, ``image_size``, ``preprocessing``, ``class_names``, ``positive_class`` (label 1),
  ``complete``, ``versions``, ``created_utc``, ``config`` (the resolved config, JSON), ``fingerprint``,
  ``n_samples`` (images the cache was made from: rows plus skipped) and ``schema_version``.

While extraction runs, finished batches are written next to the cache, in ``NAME.h5.partial/``, one small
HDF5 file per batch (a fixed slice of the sorted file list), each created under a fresh temporary name and
renamed into place. A kill at any moment (SIGKILL included) therefore loses at most the batch in flight,
never a finished one, and a rerun computes only the batches that are missing or not well formed. When all
are there they are verified (every image exactly once) and merged into ``NAME.h5``, again through a
temporary name, so a file at the cache path is always complete. Nothing is written through a symbolic
link, and a full disk or a read-only folder ends in a clear error with the finished batches kept.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.errors import FeaturekitError, option_name
from featurekit.fsutil import (
    atomic_write_json,
    commit_file,
    discard_temporaries,
    NewFileSink,
    exclusive_lock,
    make_folder,
    storage_error,
    temporary_sibling,
)

# 2: adds `n_samples`, `positive_class` and the ignored_* datasets. Readers read every version up to this one.
SCHEMA_VERSION = 2
# Attributes that say what a cache is; a request that differs in any of them needs another cache.
IDENTITY_KEYS = (
    "backbone", "weights_label", "weights_sha256", "layer", "pooling", "image_size",
    "preprocessing", "precision", "architecture_variant", "dtype", "data_fingerprint", "view", "subset",
)
# Identity keys added later whose empty value is what every cache made before them was (the clean images, every
# split): left out of the fingerprint while empty, so those caches and the models fitted on them keep theirs.
EMPTY_BY_DEFAULT_KEYS = ("view", "subset")
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

    The lock file ``NAME.h5.lock`` is opened with O_NOFOLLOW: a symbolic link planted at its path is refused,
    never written through (it could otherwise make a run overwrite any file the user may write).
    """
    cache_path = Path(cache_path)
    lock_path = Path(f"{cache_path}.lock")
    make_folder(lock_path.parent, "create the cache folder")
    with ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(
                lock_path, "Another process ({holder}) is writing this cache right now.", received=str(cache_path),
                fix=f"Wait for it to finish (it resumes where it stands if stopped), or write another {option_name('cache')}."))
        except OSError as error:
            raise storage_error(error, "create the cache's lock file", lock_path) from None
        yield


@contextmanager
def _new_hdf5_file(path: Path) -> Iterator[Any]:
    """A new HDF5 file at `path`, created exclusively (O_EXCL, O_NOFOLLOW: never through a planted link).

    HDF5 writes through a `NewFileSink`, so a write that fails (a full disk, a folder made read-only) never
    leaves the library half-closed (which crashed the process at exit); the first such OSError is raised
    here, after HDF5 has closed the file cleanly. The caller removes the file on any error.
    """
    import h5py

    sink = NewFileSink(path)
    try:
        with h5py.File(sink, "w") as f:
            yield f
        sink.raise_failure()
    finally:
        sink.close()


BATCH_FILE = re.compile(r"batch-(\d{7})\.h5")
RESUME_HINT = "Then run the same command again: the finished batches are kept and it resumes where it stopped."


@dataclass
class _Batch:
    """What one well-formed batch file holds, apart from its features."""

    index: int
    path: Path
    rows: np.ndarray  # rows of the sample list whose features the file holds, ascending
    skipped: np.ndarray  # rows that did not decode
    reasons: list[str]
    start: int  # the batch is the slice start:stop of the sample list
    stop: int
    feature_dim: int


class PartialCache:
    """The finished batches of an extraction that is still running or was interrupted.

    Each batch is one HDF5 file ``batch-NNNNNNN.h5`` for a fixed slice of the sorted sample list: its kept rows
    with their features and its skipped rows with their reasons. Only well-formed files count as done, so a
    file that was truncated, damaged, misplaced or planted is computed again (and replaced) by the next run.
    """

    def __init__(self, cache_path: str | Path):
        self.cache_path = Path(cache_path)
        self.directory = partial_dir_for(cache_path)

    @property
    def request_path(self) -> Path:
        return self.directory / "request.json"

    def exists(self) -> bool:
        return self.request_path.exists()

    def read_request(self) -> dict[str, Any]:
        """The settings the interrupted run was started with (refused clearly when its record is damaged)."""
        try:
            request = json.loads(self.request_path.read_text(encoding="utf-8"))
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as error:
            raise FeaturekitError(
                f"The record of an interrupted extraction is damaged ({error}), so its finished batches cannot be "
                "trusted.", received=str(self.request_path),
                fix=f"Pass {option_name('overwrite')} to start this cache over.") from None
        return request

    def start(self, request: dict[str, Any]) -> None:
        """Record the request of a new extraction (fsynced, atomic) so a rerun can check it resumes the same one."""
        self._refuse_link()
        make_folder(self.directory, "create the folder for finished batches")
        try:
            atomic_write_json(self.request_path, request)
        except OSError as error:
            raise storage_error(error, "record the extraction request", self.request_path) from None

    def batch_path(self, index: int) -> Path:
        return self.directory / f"batch-{index:07d}.h5"

    def done_batches(self) -> set[int]:
        """Indices of the batches whose files are well formed and hold exactly their slice of rows."""
        layout = self._layout(self._request_or_empty())
        return {index for index, path in self._batch_files()
                if isinstance(_inspect_batch(path, index, layout), _Batch)}

    def write_batch(self, index: int, row_indices: np.ndarray, features: np.ndarray,
                    skipped_indices: np.ndarray, skipped_reasons: list[str], dtype: str) -> None:
        """Write one finished batch atomically: a new file under a fresh temporary name, fsync, rename.

        The temporary name is unpredictable and created exclusively (h5py mode "x", O_EXCL), so a symbolic link
        planted in the folder is never written through. Its features carry HDF5's Fletcher-32 checksum, so
        the merge notices a damaged file instead of copying garbage into the cache.

        Args:
            index: The batch number.
            row_indices: Rows (of the sorted sample list) whose features follow, ascending.
            features: One row per kept row.
            skipped_indices: Rows of this batch that did not decode.
            skipped_reasons: Why, one per skipped row.
            dtype: Stored feature dtype.
        """
        rows = np.asarray(row_indices, dtype=np.int64).reshape(-1)
        skipped = np.asarray(skipped_indices, dtype=np.int64).reshape(-1)
        covered = np.sort(np.concatenate([rows, skipped]))
        if len(covered) == 0 or np.any(np.diff(covered) != 1) or len(skipped_reasons) != len(skipped):
            raise ValueError(f"batch {index}: rows must be one contiguous run, each once, with a reason per skipped row")
        features = np.asarray(features, dtype=dtype)
        self._refuse_link()
        final = self.batch_path(index)
        temporary = temporary_sibling(final)
        try:
            with _new_hdf5_file(temporary) as f:
                f.attrs.update(batch_index=index, row_start=int(covered[0]), row_stop=int(covered[-1]) + 1)
                f.create_dataset("row_indices", data=rows)
                f.create_dataset("features", data=features, **({"fletcher32": True} if features.size else {}))
                f.create_dataset("skipped_indices", data=skipped)
                f.create_dataset("skipped_reasons", data=np.asarray(skipped_reasons, dtype=object), dtype=_string_dtype())
            commit_file(temporary, final)
        except BaseException as error:
            temporary.unlink(missing_ok=True)
            if isinstance(error, OSError):
                raise storage_error(error, f"write batch {index} of the cache", final, then=RESUME_HINT) from None
            raise

    def verified_batches(self, n_samples: int, feature_dim: int) -> list[_Batch]:
        """Every batch, checked to cover rows 0..n_samples-1 exactly once between them (kept plus skipped).

        Damaged or misplaced batch files are removed, so that the rerun the error asks for recomputes exactly
        the batches it names.

        Raises:
            FeaturekitError: batches are missing, damaged or overlap; it names them.
        """
        request = self.read_request()
        layout = self._layout(request, n_samples)
        batches: list[_Batch] = []
        damaged: dict[int, str] = {}
        for index, path in self._batch_files():
            found = _inspect_batch(path, index, layout)
            if isinstance(found, _Batch) and found.feature_dim != feature_dim and len(found.rows):
                found = f"holds {found.feature_dim}-dimensional features, not {feature_dim}"
            if isinstance(found, _Batch) and found.stop > n_samples:
                found = f"holds rows up to {found.stop - 1}, but there are only {n_samples} images"
            if isinstance(found, str):
                damaged[index] = found
                path.unlink(missing_ok=True)
            else:
                batches.append(found)
        coverage = np.zeros(n_samples, dtype=np.int64)
        for batch in batches:
            coverage[batch.start:batch.stop] += 1
        n_batches = request.get("n_batches")
        expected = range(int(n_batches)) if isinstance(n_batches, int) else range(0)
        present = {batch.index for batch in batches}
        missing = [index for index in expected if index not in present and index not in damaged]
        problems = []
        if missing:
            problems.append(f"{_count(len(missing), 'batch', 'batches')} {_ranges(missing)} "
                            f"{'is' if len(missing) == 1 else 'are'} missing (deleted while the run went on?)")
        if damaged:
            first = next(iter(damaged.items()))
            problems.append(f"{_count(len(damaged), 'batch', 'batches')} {_ranges(sorted(damaged))} "
                            f"{'was' if len(damaged) == 1 else 'were'} damaged and removed (batch {first[0]}: {first[1]})")
        uncovered = np.flatnonzero(coverage == 0)
        if len(uncovered) and not missing and not damaged:
            problems.append(f"rows {_ranges(uncovered.tolist())} are in no batch")
        doubled = np.flatnonzero(coverage > 1)
        if len(doubled):
            problems.append(f"rows {_ranges(doubled.tolist())} are in more than one batch")
        if problems:
            raise FeaturekitError(
                f"Cannot finish cache {self.cache_path}: {'; '.join(problems)}. Nothing was written at the cache path.",
                received=str(self.directory),
                fix="Run the same command again: it recomputes only those batches and keeps the others."
                    + ("" if not len(doubled) else f" If this repeats, pass {option_name('overwrite')} to start over."))
        return sorted(batches, key=lambda batch: batch.start)

    def remove(self) -> None:
        if self.directory.is_symlink():
            self.directory.unlink()
        else:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _request_or_empty(self) -> dict[str, Any]:
        try:
            return self.read_request()
        except FeaturekitError:
            return {}

    @staticmethod
    def _layout(request: dict[str, Any], n_samples: int | None = None) -> tuple[int, int] | None:
        """(batch size, number of samples) when the request says where each batch's rows lie."""
        batch_size, stored = request.get("batch_size"), request.get("n_samples")
        n_samples = stored if n_samples is None else n_samples
        if isinstance(batch_size, int) and batch_size > 0 and isinstance(n_samples, int):
            return batch_size, n_samples
        return None

    def _batch_files(self) -> list[tuple[int, Path]]:
        """(index, path) of every file named like a batch; links and other non-files are not ours."""
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return []
        found = []
        for entry in entries:
            match = BATCH_FILE.fullmatch(entry.name)
            if match and entry.is_file(follow_symlinks=False):
                found.append((int(match.group(1)), Path(entry.path)))
        return sorted(found)

    def _refuse_link(self) -> None:
        if self.directory.is_symlink():
            raise FeaturekitError(
                "The folder for finished batches is a symbolic link; featurekit does not write through links.",
                received=f"{self.directory} -> {os.readlink(self.directory)}",
                fix=f"Remove the link (`rm {self.directory}`) and run the command again.")


def _inspect_batch(path: Path, index: int, layout: tuple[int, int] | None) -> _Batch | str:
    """The batch a file holds, or why it cannot be trusted (unreadable, malformed, not its slice)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            absent = [name for name in ("row_indices", "features", "skipped_indices", "skipped_reasons") if name not in f]
            if absent:
                return f"datasets {absent} are missing"
            rows, skipped = f["row_indices"][()], f["skipped_indices"][()]
            reasons = [_decode(r) for r in f["skipped_reasons"][()]]
            shape = f["features"].shape
            stored = (f.attrs.get("row_start"), f.attrs.get("row_stop"))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        return f"unreadable ({error})"
    if rows.ndim != 1 or skipped.ndim != 1 or len(shape) != 2 or shape[0] != len(rows) or len(reasons) != len(skipped):
        return "its datasets do not agree in length"
    if not (np.issubdtype(rows.dtype, np.integer) and np.issubdtype(skipped.dtype, np.integer)):
        return "its row numbers are not integers"
    covered = np.sort(np.concatenate([rows, skipped]))
    if len(covered) == 0 or covered[0] < 0 or np.any(np.diff(covered) != 1):
        return "its rows are not one contiguous run, each once"
    start, stop = int(covered[0]), int(covered[-1]) + 1
    if stored[0] is not None and (int(stored[0]), int(stored[1])) != (start, stop):
        return "its rows differ from the slice it records"
    if layout is not None:
        batch_size, n_samples = layout
        expected = (index * batch_size, min((index + 1) * batch_size, n_samples))
        if (start, stop) != expected:
            return f"holds rows {start}-{stop - 1} instead of {expected[0]}-{expected[1] - 1}"
    order = np.argsort(rows)
    return _Batch(index, path, rows[order], skipped, reasons, start, stop, int(shape[1]))


def _read_batch_features(batch: _Batch, dtype: str) -> np.ndarray:
    import h5py

    with h5py.File(batch.path, "r") as f:
        features = f["features"][()]  # Fletcher-32 checksums are verified here
        rows = f["row_indices"][()]
    return np.asarray(features[np.argsort(rows)], dtype=dtype)


class _DamagedBatch(Exception):
    def __init__(self, batch: _Batch, error: Exception):
        super().__init__(f"batch {batch.index}: {error}")
        self.batch, self.error = batch, error


def _count(n: int, one: str, many: str) -> str:
    return one if n == 1 else many


def _ranges(values: list[int], limit: int = 8) -> str:
    """`3, 7-9, 12` for [3, 7, 8, 9, 12] (the first `limit` runs, then how many more)."""
    runs: list[list[int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1][1] = value
        else:
            runs.append([value, value])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[:limit])
    return text + (f" and {len(runs) - limit} more runs" if len(runs) > limit else "")


def cache_fingerprint(attrs: dict[str, Any], n_rows: int, feature_dim: int) -> str:
    """A short stable id of a cache's content: its identity attributes and shape."""
    identity = {key: _normalise(attrs.get(key)) for key in IDENTITY_KEYS
                if key not in EMPTY_BY_DEFAULT_KEYS or _normalise(attrs.get(key)) != ""}
    identity.update(n_rows=int(n_rows), feature_dim=int(feature_dim))
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def rows_per_chunk(feature_dim: int, itemsize: int, n_rows: int) -> int:
    """Rows per HDF5 chunk so a chunk holds about 1 MiB (h5py's advice: 10 KiB to 1 MiB)."""
    return int(max(1, min(max(n_rows, 1), TARGET_CHUNK_BYTES // max(1, feature_dim * itemsize))))


def finalize_cache(partial: PartialCache, samples: list, attrs: dict[str, Any],
                   ignored: list[tuple[str, str]] = ()) -> Path:
    """Merge the finished batches into the cache file, through a fresh temporary file, once they are verified.

    The batches must cover every sample exactly once (kept or skipped), each holding exactly its slice;
    otherwise nothing is written and the error names the batches a rerun recomputes. On any failure (a full
    disk, a read-only folder, a damaged batch) the temporary file is closed and removed, the cache path is
    never touched, and the finished batches stay for the rerun.

    Args:
        partial: The batches; all of them must be there.
        samples: The data folder's samples (objects with path, label, split, sha256), in row order.
        attrs: Root attributes; `class_names` a list, `config`/`versions` dicts (stored as JSON).
        ignored: (path, reason) of files the scan did not take (links not followed, unreadable files, ...).
    """
    dtype = attrs["dtype"]
    feature_dim = int(attrs["feature_dim"])
    batches = partial.verified_batches(len(samples), feature_dim)
    kept = np.sort(np.concatenate([batch.rows for batch in batches]))
    skipped = {int(row): reason for batch in batches for row, reason in zip(batch.skipped, batch.reasons)}
    n_rows = len(kept)
    if n_rows == 0:
        raise FeaturekitError(
            "No image in the data folder could be decoded, so the cache would be empty.",
            received=f"{len(skipped)} files, all skipped (first: {samples[min(skipped)].path if skipped else '-'}: "
                     f"{skipped[min(skipped)] if skipped else '-'})",
            fix="Check that the files are JPEG, PNG, BMP or GIF images.",
        )
    cache_path = partial.cache_path
    if cache_path.is_dir() and not cache_path.is_symlink():
        raise FeaturekitError("The cache path is a folder.", received=str(cache_path),
                              fix=f"Pass a file name such as {cache_path / 'features.h5'} as {option_name('cache')}.")
    _refuse_when_short_of_space(cache_path, n_rows * feature_dim * np.dtype(dtype).itemsize + 256 * len(samples))
    discard_temporaries(cache_path)  # left by merges that were killed (we hold the writer lock)
    temporary = temporary_sibling(cache_path)
    strings = _string_dtype()
    try:
        with _new_hdf5_file(temporary) as f:
            chunk_rows = rows_per_chunk(feature_dim, np.dtype(dtype).itemsize, n_rows)
            features = f.create_dataset("features", shape=(n_rows, feature_dim), maxshape=(None, feature_dim),
                                        dtype=dtype, chunks=(chunk_rows, feature_dim))
            for batch in batches:
                if not len(batch.rows):
                    continue
                try:
                    batch_features = _read_batch_features(batch, dtype)
                except (OSError, ValueError, KeyError) as error:
                    raise _DamagedBatch(batch, error) from None
                targets = np.searchsorted(kept, batch.rows)
                # Batches are contiguous runs of rows, so one slice write per batch.
                if targets[-1] - targets[0] == len(targets) - 1:
                    features[targets[0]:targets[-1] + 1] = batch_features
                else:
                    for target, row in zip(targets, batch_features):
                        features[target] = row
            chosen = [samples[i] for i in kept]
            f.create_dataset("labels", data=np.array([s.label for s in chosen], dtype=np.int8))
            f.create_dataset("paths", data=np.array([s.path for s in chosen], dtype=object), dtype=strings)
            f.create_dataset("splits", data=np.array([s.split for s in chosen], dtype=object), dtype=strings)
            f.create_dataset("sha256", data=np.array([s.sha256 for s in chosen], dtype=object), dtype=strings)
            skipped_rows = sorted(skipped)
            f.create_dataset("skipped_paths", data=np.array([samples[i].path for i in skipped_rows], dtype=object), dtype=strings)
            f.create_dataset("skipped_reasons", data=np.array([skipped[i] for i in skipped_rows], dtype=object), dtype=strings)
            f.create_dataset("ignored_paths", data=np.array([p for p, _ in ignored], dtype=object), dtype=strings)
            f.create_dataset("ignored_reasons", data=np.array([r for _, r in ignored], dtype=object), dtype=strings)
            stored = dict(attrs)
            class_names = list(attrs.get("class_names") or [])
            stored.update(schema_version=SCHEMA_VERSION, complete=True, n_rows=n_rows, n_skipped=len(skipped_rows),
                          n_samples=len(samples), fingerprint=cache_fingerprint(attrs, n_rows, feature_dim))
            if len(class_names) == 2:
                stored.setdefault("positive_class", class_names[1])
            for key, value in stored.items():
                f.attrs[key] = _to_attr(value)
        commit_file(temporary, cache_path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, _DamagedBatch):
            error.batch.path.unlink(missing_ok=True)
            raise FeaturekitError(
                f"Cannot finish cache {cache_path}: batch {error.batch.index} is damaged ({error.error}) and was "
                "removed. Nothing was written at the cache path.", received=str(partial.directory),
                fix="Run the same command again: it recomputes only that batch and keeps the others.") from None
        if isinstance(error, OSError):
            raise storage_error(error, "write the finished cache", cache_path, then=RESUME_HINT) from None
        raise
    partial.remove()
    return cache_path


def _refuse_when_short_of_space(cache_path: Path, needed: int) -> None:
    """Refuse the merge up front when the disk clearly cannot hold the cache (the batches stay)."""
    try:
        free = shutil.disk_usage(cache_path.parent).free
    except OSError:
        return
    if free < needed:
        raise FeaturekitError(
            f"Could not write the finished cache: the disk is full (it needs about {needed / 2**20:,.1f} MiB, "
            f"{free / 2**20:,.1f} MiB are free).", received=str(cache_path),
            fix=f"Free some space on that disk. {RESUME_HINT}")


def _to_attr(value: Any) -> Any:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (list, tuple)):
        return np.array([_utf8(str(v)) for v in value], dtype=object) if value else "[]"
    if value is None:
        return ""
    if isinstance(value, str):
        return _utf8(value)
    return value


def _utf8(text: str) -> str:
    """Text HDF5 can store as UTF-8: bytes of a file name that were not UTF-8 become `\\xe9` escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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


class SplitAccess:
    """What fitting and compare ask of any source of rows (a cache, a fusion of caches): split rows, sizes, checks.

    Subclasses provide `labels`, `splits`, `n_rows`, `feature_dim`, `class_names` and `described` (how
    messages name them: "cache x.h5", "fusion fuse(a.h5+b.h5)").
    """

    described: str

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def split_indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.splits == split)

    def nbytes(self, split: str | None = None) -> int:
        """Bytes the split's features take in memory as float32."""
        rows = self.n_rows if split is None else len(self.split_indices(split))
        return rows * self.feature_dim * 4

    def require_splits(self, splits: tuple[str, ...] = ("train", "valid", "test")) -> None:
        """Refuse rows whose splits cannot train and evaluate a binary classifier."""
        for split in splits:
            labels = self.labels[self.splits == split]
            if len(labels) == 0:
                raise FeaturekitError(f"The {self.described} has no {split!r} split.", received=self.described,
                                      fix="Re-extract with split fractions that give every split images, e.g. "
                                      f"{option_name('split')} 0.7,0.15,0.15.")
            if len(np.unique(labels)) < 2:
                only = self.class_names[int(labels[0])] if self.class_names else int(labels[0])
                raise FeaturekitError(f"The {split!r} split of the {self.described} holds one class only ({only!r}).",
                                      received=self.described,
                                      fix="Add images of both classes, or change the split fractions.")


class CacheReader(SplitAccess):
    """Read access to a finished cache; features load into memory or stream in chunk-sized blocks.

    Opening checks that the file is a finished cache this code can read: a known schema version, and one row
    per image in `features`, `labels`, `paths`, `splits` and `sha256` (a damaged file is refused here, not
    later with an IndexError).
    """

    def __init__(self, path: str | Path):
        import h5py

        self.path = Path(path)
        self.described = f"cache {self.path.name}"
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
        try:
            self._check_and_load()
        except BaseException:
            self._file.close()
            raise

    def _check_and_load(self) -> None:
        missing = [name for name in ("features", "labels", "paths", "splits", "sha256") if name not in self._file]
        if missing:
            raise FeaturekitError(f"Not a featurekit cache: datasets {missing} are missing.", received=str(self.path),
                                  fix="Point --cache at a file written by `python cli.py extract`.")
        try:
            self.attrs: dict[str, Any] = {key: _from_attr(key, value) for key, value in self._file.attrs.items()}
        except (ValueError, OSError) as error:
            raise self._damaged(f"its attributes cannot be read ({error})") from None
        self._check_schema_version()
        if self.attrs.get("complete") is not True:
            raise FeaturekitError(f"Cache {self.path} is marked incomplete.", received=str(self.path),
                                  fix="Re-run its extract command to finish it, or pass --overwrite to rebuild.")
        self.features = self._file["features"]
        if self.features.ndim != 2:
            raise self._damaged(f"features has shape {self.features.shape}, not (images, features)")
        n_rows = self.features.shape[0]
        lengths = {name: self._file[name].shape for name in ("labels", "paths", "splits", "sha256")}
        wrong = {name: shape for name, shape in lengths.items() if shape != (n_rows,)}
        if wrong:
            described = ", ".join(f"{name} has {shape[0] if len(shape) == 1 else shape} rows" for name, shape in wrong.items())
            raise self._damaged(f"features has {n_rows} rows but {described} (one row per image is expected)")
        n_skipped = self._file["skipped_paths"].shape[0] if "skipped_paths" in self._file else 0
        n_samples = self.attrs.get("n_samples")
        if isinstance(n_samples, int) and n_rows + n_skipped != n_samples:
            raise self._damaged(f"it holds {n_rows} rows and {n_skipped} skipped files, but was made from "
                                f"{n_samples} images")
        self.labels: np.ndarray = self._file["labels"][()].astype(np.int64)
        if not np.isin(self.labels, (0, 1)).all():
            raise self._damaged(f"labels other than 0 and 1: {sorted(set(np.unique(self.labels).tolist()) - {0, 1})[:5]}")
        self.splits: np.ndarray = np.array([_decode(s) for s in self._file["splits"][()]])
        unknown = sorted(set(self.splits.tolist()) - {"train", "valid", "test"})
        if unknown:
            raise self._damaged(f"unknown split names {unknown[:5]}")
        self.paths: list[str] = [_decode(p) for p in self._file["paths"][()]]

    def _check_schema_version(self) -> None:
        version = self.attrs.get("schema_version")
        if version is None or version == "":
            raise FeaturekitError(f"Cache {self.path} has no schema_version, so it is not a finished featurekit cache.",
                                  received=str(self.path), fix="Rebuild it with `python cli.py extract ... --overwrite`.")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise self._damaged(f"its schema_version {version!r} is not a version number")
        if version > SCHEMA_VERSION:
            raise FeaturekitError(
                f"Cache {self.path} was written by a newer featurekit (schema version {version}; this one reads up to "
                f"{SCHEMA_VERSION}).", received=str(self.path),
                fix="Upgrade featurekit (`pip install -U featurekit`), or rebuild the cache with this version "
                    "(`python cli.py extract ... --overwrite`).")

    def _damaged(self, problem: str) -> FeaturekitError:
        return FeaturekitError(f"Cache {self.path} is damaged: {problem}.", received=str(self.path),
                               fix="Rebuild it with `python cli.py extract ... --overwrite`.")

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
    def positive_class(self) -> str | None:
        """The class that is label 1 (what P(positive) and every "p_fake" column are the probability of)."""
        names = self.class_names
        return self.attrs.get("positive_class") or (names[1] if len(names) == 2 else None)

    @property
    def sha256(self) -> list[str]:
        return [_decode(s) for s in self._file["sha256"][()]]

    @property
    def skipped(self) -> list[tuple[str, str]]:
        if "skipped_paths" not in self._file:
            return []
        return list(zip((_decode(p) for p in self._file["skipped_paths"][()]),
                        (_decode(r) for r in self._file["skipped_reasons"][()])))

    @property
    def ignored(self) -> list[tuple[str, str]]:
        """(path, reason) of files the data scan did not take: links not followed, unreadable files, ..."""
        if "ignored_paths" not in self._file:
            return []
        return list(zip((_decode(p) for p in self._file["ignored_paths"][()]),
                        (_decode(r) for r in self._file["ignored_reasons"][()])))


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
