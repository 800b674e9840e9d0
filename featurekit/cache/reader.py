"""The reader: a finished cache, checked on open, its features loaded into memory or streamed in blocks.

Opening reads metadata only and checks it before anything is allocated by a declared size: the shapes each
dataset declares against the bytes the file really holds, the schema version, one row per image in every
row dataset, the identity attributes against the fingerprint and the identity recorded when the cache was
finished, and `positive_class` against `class_names`. The contents themselves are checked on request
(`verify_contents`), before a probe is fitted or reused.
"""

from __future__ import annotations

import math
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.cache.access import SplitAccess
from featurekit.cache.batches import PartialCache
from featurekit.cache.checksums import changed_datasets, edited_identity, remembered_checksums
from featurekit.cache.format import (
    BLOCK_BYTES,
    ROW_DATASETS,
    SCHEMA_VERSION,
    cache_fingerprint,
    decode,
    from_attr,
)
from featurekit.cache.lock import lock_holder
from featurekit.errors import FeaturekitError

# Every row of a cache stores at least a 16-byte reference in each of `paths`, `splits` and `sha256` (variable-
# length strings), so a file declaring more rows than its size / 16 cannot hold them: it is refused before any
# of its datasets is read.
MIN_FILE_BYTES_PER_ROW = 16
LIST_DATASETS = ("skipped_paths", "skipped_reasons", "ignored_paths", "ignored_reasons")
REBUILD = "Rebuild it: extract it again with `overwrite`."


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
        self.name = self.path.name
        self.run_name = self.path.stem
        self.member_paths = [self.path]
        if not self.path.exists():
            raise _absent_cache(self.path)
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as error:
            raise FeaturekitError(f"Not a readable HDF5 cache ({error}).", received=str(self.path),
                                  fix=REBUILD) from None
        with ExitStack() as closing:  # closes the file if a check refuses it
            closing.callback(self._file.close)
            self._check_and_load()
            closing.pop_all()

    def _check_and_load(self) -> None:
        missing = [name for name in ROW_DATASETS if name not in self._file]
        if missing:
            raise FeaturekitError(f"Not a featurekit cache: datasets {missing} are missing.", received=str(self.path),
                                  fix="Point `cache` at a file written by the `extract` command.")
        self._check_declared_sizes()
        try:
            self.attrs: dict[str, Any] = {key: from_attr(key, value) for key, value in self._file.attrs.items()}
        except (ValueError, OSError, RuntimeError) as error:
            raise self._damaged(f"its attributes cannot be read ({error})") from None
        self._check_schema_version()
        self.content_checksums: dict[str, str] | None = self._recorded("datasets")
        if self.attrs.get("complete") is not True:
            raise FeaturekitError(f"Cache {self.path} is marked incomplete.", received=str(self.path),
                                  fix="Re-run its extract command to finish it, or pass `overwrite` to rebuild.")
        self.features = self._file["features"]
        self._check_row_counts()
        self.n_rows, self.feature_dim = (int(size) for size in self.features.shape)
        self.class_names: list[str] = list(self.attrs.get("class_names", []))
        self._check_identity()
        self.fingerprint = str(self.attrs.get("fingerprint")
                               or cache_fingerprint(self.attrs, self.n_rows, self.feature_dim))
        # The class that is label 1 (what P(positive) and every "p_fake" column are the probability of).
        names = self.class_names
        self.positive_class = self.attrs.get("positive_class") or (names[1] if len(names) == 2 else None)
        self.labels: np.ndarray = self._file["labels"][()].astype(np.int64)
        if not np.isin(self.labels, (0, 1)).all():
            raise self._damaged(f"labels other than 0 and 1: {np.setdiff1d(self.labels, (0, 1))[:5].tolist()}")
        self.splits: np.ndarray = np.array([decode(s) for s in self._file["splits"][()]])
        unknown = sorted(set(self.splits.tolist()) - {"train", "valid", "test"})
        if unknown:
            raise self._damaged(f"unknown split names {unknown[:5]}")
        self.paths: list[str] = [decode(p) for p in self._file["paths"][()]]

    def _check_declared_sizes(self) -> None:
        """Refuse datasets that declare more than the file holds, before reading any of them.

        (HDF5 itself refuses an attribute whose declared size exceeds what its header holds.)
        """
        import h5py

        file_size = self.path.stat().st_size
        for name in (*ROW_DATASETS, *(name for name in LIST_DATASETS if name in self._file)):
            dataset = self._file[name]
            if not isinstance(dataset, h5py.Dataset):
                raise self._damaged(f"{name} is not a dataset")
            rows = int(dataset.shape[0]) if dataset.shape else 0
            if rows * MIN_FILE_BYTES_PER_ROW > file_size:
                raise self._damaged(f"{name} declares {rows:,} rows, more than a file of {file_size:,} bytes can "
                                    "hold; it was not written by featurekit or was truncated")
            if not _stored_in_full(dataset):
                raise self._damaged(f"{name} declares shape {dataset.shape} but the file does not hold its data")

    def _check_row_counts(self) -> None:
        if self.features.ndim != 2:
            raise self._damaged(f"features has shape {self.features.shape}, not (images, features)")
        n_rows = self.features.shape[0]
        wrong = {name: self._file[name].shape for name in ROW_DATASETS[1:] if self._file[name].shape != (n_rows,)}
        if wrong:
            described = ", ".join(f"{name} has {shape[0] if len(shape) == 1 else shape} rows" for name, shape in wrong.items())
            raise self._damaged(f"features has {n_rows} rows but {described} (one row per image is expected)")
        n_skipped = self._file["skipped_paths"].shape[0] if "skipped_paths" in self._file else 0
        n_samples = self.attrs.get("n_samples")
        if isinstance(n_samples, int) and n_rows + n_skipped != n_samples:
            raise self._damaged(f"it holds {n_rows} rows and {n_skipped} skipped files, but was made from "
                                f"{n_samples} images")

    def _check_identity(self) -> None:
        """Refuse identity attributes edited after the cache was made, and a contradicting `positive_class`.

        The fingerprint is recomputed: from the identity recorded with the content checksums where there is one
        (attributes absent from the file then count as their defaults, as for caches made before them), else
        from the attributes themselves.
        """
        recorded = self._recorded("identity")
        edited = edited_identity(self.attrs, recorded or {})
        if edited:
            raise self._edited("; ".join(edited))
        stored = self.attrs.get("fingerprint")
        if stored:
            expected = cache_fingerprint(self.attrs if recorded is None else recorded, self.n_rows, self.feature_dim)
            if stored != expected:
                raise self._edited(f"its fingerprint {stored!r} is not the one its attributes give ({expected!r})")
        positive, names = self.attrs.get("positive_class"), self.class_names
        if positive and (positive not in names or (len(names) == 2 and positive != names[1])):
            raise self._damaged(f"positive_class {positive!r} contradicts class_names {names} (label 1 is "
                                f"{names[1] if len(names) == 2 else 'not defined'!r})")

    def _check_schema_version(self) -> None:
        version = self.attrs.get("schema_version")
        if version in (None, ""):
            raise FeaturekitError(f"Cache {self.path} has no schema_version, so it is not a finished featurekit cache.",
                                  received=str(self.path), fix=REBUILD)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise self._damaged(f"its schema_version {version!r} is not a version number")
        if version > SCHEMA_VERSION:
            raise FeaturekitError(
                f"Cache {self.path} was written by a newer featurekit (schema version {version}; this one reads up to "
                f"{SCHEMA_VERSION}).", received=str(self.path),
                fix="Upgrade featurekit (`pip install -U featurekit`), or rebuild the cache with this version "
                    "(extract it again with `overwrite`).")

    def _damaged(self, problem: str) -> FeaturekitError:
        return FeaturekitError(f"Cache {self.path} is damaged: {problem}.", received=str(self.path), fix=REBUILD)

    def _edited(self, problem: str) -> FeaturekitError:
        return FeaturekitError(f"Cache {self.path} was changed after it was made: {problem}.",
                               received=str(self.path), fix=f"Restore the original file, or {REBUILD[0].lower()}{REBUILD[1:]}")

    def close(self) -> None:
        self._file.close()

    def _recorded(self, part: str) -> dict[str, Any] | None:
        """A part of what was recorded when the cache was finished: "datasets" (the checksum of each row dataset) or
        "identity" (what its fingerprint was made from); None for caches made before it was recorded."""
        record = self.attrs.get("content_checksums")
        found = record.get(part) if isinstance(record, dict) else None
        return found if isinstance(found, dict) else None

    def verify_contents(self) -> list[str]:
        """Check every row dataset against the checksum recorded when the cache was finished.

        Streamed, and computed once per file identity (path, size, mtime, inode) in a process.

        Returns:
            Notes on what could not be checked (a cache made before checksums were recorded); empty when verified.

        Raises:
            FeaturekitError: A dataset differs; the message names which (features, labels, paths, splits, ...).
        """
        if self.content_checksums is None:
            return [f"note: {self.described} was made before featurekit recorded content checksums, so its contents "
                    "cannot be verified (re-extract it with `overwrite` to record them)."]
        changed = changed_datasets(self.content_checksums, remembered_checksums(self._file, str(self.path)))
        if changed:
            raise self._edited(f"its {', '.join(changed)} differ from what was recorded when it was made")
        return []

    @property
    def sha256(self) -> list[str]:
        return [decode(s) for s in self._file["sha256"][()]]

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return self._listed("skipped_paths", "skipped_reasons")

    @property
    def ignored(self) -> list[tuple[str, str]]:
        """(path, reason) of files the data scan did not take: links not followed, unreadable files, ..."""
        return self._listed("ignored_paths", "ignored_reasons")

    def _listed(self, paths: str, reasons: str) -> list[tuple[str, str]]:
        if paths not in self._file:
            return []
        return list(zip((decode(p) for p in self._file[paths][()]), (decode(r) for r in self._file[reasons][()])))

    def _plan_blocks(self, rows: np.ndarray) -> list[np.ndarray]:
        """Blocks of whole HDF5 chunks (about 8 MiB), at fixed positions in the file; a block may hold no row."""
        starts = np.arange(0, self.n_rows, _block_rows(self.features))
        return np.split(rows, np.searchsorted(rows, starts[1:]))

    def _read_block(self, rows: np.ndarray) -> np.ndarray:
        return read_rows(self.features, rows)


def read_rows(features: Any, rows: np.ndarray, span_rows: int | None = None) -> np.ndarray:
    """Rows of an HDF5 feature dataset (or an in-memory array) in the order given, as float32, reading bounded
    contiguous windows.

    h5py reads a contiguous slice far faster than a long list of points. Each read spans at most `span_rows`
    rows (None: one block of about `BLOCK_BYTES`, from the dataset's chunks), so memory stays bounded whatever
    the order of `rows`; rows in increasing order (the usual case: members extracted from one folder list it
    in the same order) read every block once.
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.empty((len(rows), int(features.shape[1])), dtype=np.float32)
    block_rows = span_rows or _block_rows(features)
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    index = 0
    while index < len(ordered):
        start = int(ordered[index])
        end = int(np.searchsorted(ordered, start + block_rows))
        out[order[index:end]] = features[start:int(ordered[end - 1]) + 1][ordered[index:end] - start]
        index = end
    return out


def _block_rows(features: Any) -> int:
    """Rows of whole HDF5 chunks of a feature dataset that hold about `BLOCK_BYTES` (at least one chunk)."""
    chunk_rows = (features.chunks or (1024,))[0]
    return max(1, BLOCK_BYTES // max(1, int(features.shape[1]) * features.dtype.itemsize) // chunk_rows) * chunk_rows


def _stored_in_full(dataset: Any) -> bool:
    """Whether the file holds data for every element a dataset declares (not a fill value for most of it)."""
    n_elements = math.prod(dataset.shape or ())
    if dataset.chunks is None:
        return dataset.id.get_storage_size() >= n_elements * max(1, min(dataset.dtype.itemsize, 8))
    n_chunks = math.prod(-(-size // chunk) for size, chunk in zip(dataset.shape, dataset.chunks))
    return dataset.id.get_num_chunks() >= n_chunks


def _absent_cache(path: Path) -> FeaturekitError:
    """Why there is no cache file: an extraction under way, one that stopped, or none at all."""
    partial, holder, done = PartialCache(path), lock_holder(path), None
    if partial.exists():
        request = partial.request_or_empty() if holder else partial.read_request()
        done = f"{len(partial.done_batches())} of {request.get('n_batches', '?')} batches"
    if holder is not None:
        return FeaturekitError(
            f"Cache {path} is still being extracted: another process ({holder}) is writing it right now"
            + (f" ({done} done so far)." if done else "."),
            received=str(path), fix="Wait for that extraction to finish, then run this command again.")
    if done:
        return FeaturekitError(
            f"Cache {path} is incomplete: its extraction stopped after {done}.", received=str(path),
            fix=f"Re-run the same extract command to finish it: `{request.get('command', 'python cli.py extract ...')}`.")
    return FeaturekitError("Cache file not found.", received=str(path),
                           fix="Make it with the `extract` command (`backbone` NAME, `data` DIR), or list caches with `ls cache/`.")


def open_cache(path: str | Path) -> CacheReader:
    """Open a finished cache for reading (errors name what is wrong and how to fix it)."""
    return CacheReader(path)
