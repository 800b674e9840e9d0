"""The merge: verified batches -> the finished cache file, written through a fresh temporary name.

A file at the cache path is therefore always complete. The merge records a checksum of every row dataset
(`featurekit.cache.checksums`), so later edits of the contents are noticed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.cache.batches import RESUME_HINT, Batch, PartialCache, new_hdf5_file
from featurekit.cache.checksums import content_record
from featurekit.cache.format import SCHEMA_VERSION, cache_fingerprint, rows_per_chunk, string_dtype, to_attr
from featurekit.errors import FeaturekitError
from featurekit.fsutil import discard_stale_temporaries


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
    dtype, feature_dim = attrs["dtype"], int(attrs["feature_dim"])
    batches = partial.verified_batches(len(samples), feature_dim)
    kept, skipped = _kept_and_skipped(batches, samples)
    cache_path = partial.cache_path
    if cache_path.is_dir() and not cache_path.is_symlink():
        raise FeaturekitError("The cache path is a folder.", received=str(cache_path),
                              fix=f"Pass a file name such as {cache_path / 'features.h5'} as `cache`.")
    _refuse_when_short_of_space(cache_path, len(kept) * feature_dim * np.dtype(dtype).itemsize + 256 * len(samples))
    discard_stale_temporaries(cache_path, lock_held=True)  # left by merges that were killed (we hold the lock)
    with new_hdf5_file(cache_path, "write the finished cache") as f:
        _write_features(f, partial, batches, kept, dtype, feature_dim)
        _write_rows(f, samples, kept, skipped, ignored)
        for key, value in _finished_attrs(f, attrs, len(kept), len(skipped), len(samples)).items():
            f.attrs[key] = to_attr(value)
    partial.remove()
    return cache_path


def _kept_and_skipped(batches: list[Batch], samples: list) -> tuple[np.ndarray, dict[int, str]]:
    """Rows whose features the batches hold (ascending), and the reason of each skipped row; refuses no rows."""
    kept = np.sort(np.concatenate([batch.rows for batch in batches]))
    skipped = {int(row): reason for batch in batches for row, reason in zip(batch.skipped, batch.reasons)}
    if len(kept) == 0:
        raise FeaturekitError(
            "No image in the data folder could be decoded, so the cache would be empty.",
            received=f"{len(skipped)} files, all skipped (first: {samples[min(skipped)].path if skipped else '-'}: "
                     f"{skipped[min(skipped)] if skipped else '-'})",
            fix="Check that the files are JPEG, PNG, BMP or GIF images.",
        )
    return kept, skipped


def _write_features(f: Any, partial: PartialCache, batches: list[Batch], kept: np.ndarray, dtype: str,
                    feature_dim: int) -> None:
    """The features of the kept rows, batch by batch; a batch found damaged now is removed, for the rerun."""
    import h5py

    chunk_rows = rows_per_chunk(feature_dim, np.dtype(dtype).itemsize, len(kept))
    features = f.create_dataset("features", shape=(len(kept), feature_dim), maxshape=(None, feature_dim),
                                dtype=dtype, chunks=(chunk_rows, feature_dim))
    for batch in (batch for batch in batches if len(batch.rows)):
        try:
            with h5py.File(batch.path, "r") as stored:
                rows, batch_features = stored["row_indices"][()], stored["features"][()]  # Fletcher-32 verified here
        except (OSError, ValueError, KeyError) as error:
            batch.path.unlink(missing_ok=True)
            raise partial.cannot_finish([f"batch {batch.index} is damaged ({error}) and was removed"]) from None
        # A batch's kept rows are the kept rows of its slice (verified: slices cover every row once), so they are
        # consecutive in `kept`: one slice write per batch.
        start = int(np.searchsorted(kept, batch.rows[0]))
        features[start:start + len(batch.rows)] = np.asarray(batch_features[np.argsort(rows)], dtype=dtype)


def _write_rows(f: Any, samples: list, kept: np.ndarray, skipped: dict[int, str],
                ignored: list[tuple[str, str]]) -> None:
    """Labels, paths, splits and image hashes of the kept rows; the skipped and ignored files with reasons."""
    chosen = [samples[i] for i in kept]
    skipped_rows = sorted(skipped)
    f.create_dataset("labels", data=np.array([s.label for s in chosen], dtype=np.int8))
    for name, values in (("paths", [s.path for s in chosen]), ("splits", [s.split for s in chosen]),
                         ("sha256", [s.sha256 for s in chosen]),
                         ("skipped_paths", [samples[i].path for i in skipped_rows]),
                         ("skipped_reasons", [skipped[i] for i in skipped_rows]),
                         ("ignored_paths", [p for p, _ in ignored]), ("ignored_reasons", [r for _, r in ignored])):
        f.create_dataset(name, data=np.array(values, dtype=object), dtype=string_dtype())


def _finished_attrs(f: Any, attrs: dict[str, Any], n_rows: int, n_skipped: int, n_samples: int) -> dict[str, Any]:
    """The root attributes of the finished cache: the caller's, plus counts, fingerprint and content checksums."""
    names = list(attrs.get("class_names") or [])
    label_1 = {"positive_class": names[1]} if len(names) == 2 else {}  # unless the caller names it
    return label_1 | attrs | dict(
        schema_version=SCHEMA_VERSION, complete=True, n_rows=n_rows, n_skipped=n_skipped, n_samples=n_samples,
        fingerprint=cache_fingerprint(attrs, n_rows, int(attrs["feature_dim"])),
        content_checksums=content_record(f, attrs))


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
