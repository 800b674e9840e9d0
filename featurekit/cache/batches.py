"""The writer: finished batches of a running extraction, each its own crash-safe file, and their verification.

While extraction runs, finished batches are written next to the cache, in ``NAME.h5.partial/``, one small
HDF5 file per batch (a fixed slice of the sorted file list), each created under a fresh temporary name and
renamed into place. A kill at any moment (SIGKILL included) therefore loses at most the batch in flight,
never a finished one, and a rerun computes only the batches that are missing or not well formed. When all
are there they are verified (every image exactly once) and merged (`featurekit.cache.merge`). Nothing is
written through a symbolic link, and a full disk or a read-only folder ends in a clear error with the
finished batches kept.
"""

from __future__ import annotations

import json
import os
from itertools import groupby
import re
import shutil
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.cache.format import decode, string_dtype
from featurekit.errors import FeaturekitError
from featurekit.fsutil import NewFileSink, atomic_write_json, commit_file, make_folder, storage_error, temporary_sibling

BATCH_FILE = re.compile(r"batch-(\d{7})\.h5")
RESUME_HINT = "Then run the same command again: the finished batches are kept and it resumes where it stopped."


@contextmanager
def new_hdf5_file(final: Path, action: str) -> Iterator[Any]:
    """A new HDF5 file that replaces `final` (fsync, rename) once the block ends without an error.

    It is written under a fresh temporary name, created exclusively (O_EXCL, O_NOFOLLOW: never through a planted
    link), through a `NewFileSink`, so a write that fails (a full disk, a folder made read-only) never leaves the
    library half-closed (which crashed the process at exit). On any error the temporary file is removed and
    `final` is untouched; an OSError becomes a clear error saying what could not be done (`action`).
    """
    import h5py

    temporary = temporary_sibling(final)
    try:
        with closing(NewFileSink(temporary)) as sink:
            with h5py.File(sink, "w") as f:
                yield f
            sink.raise_failure()  # the first OSError of a write, raised once HDF5 has closed the file cleanly
        commit_file(temporary, final)
    except OSError as error:
        raise storage_error(error, action, final, then=RESUME_HINT) from None
    finally:
        temporary.unlink(missing_ok=True)  # gone already once committed




@dataclass
class Batch:
    """What one well-formed batch file holds, apart from its features."""

    index: int
    path: Path
    rows: np.ndarray  # rows of the sample list whose features the file holds, ascending
    skipped: np.ndarray  # rows that did not decode
    reasons: list[str]
    start: int  # the batch is the slice start:stop of the sample list
    stop: int


class PartialCache:
    """The finished batches of an extraction that is still running or was interrupted.

    Each batch is one HDF5 file ``batch-NNNNNNN.h5`` for a fixed slice of the sorted sample list: its kept rows
    with their features and its skipped rows with their reasons. Only well-formed files count as done, so a
    file that was truncated, damaged, misplaced or planted is computed again (and replaced) by the next run.
    """

    def __init__(self, cache_path: str | Path):
        self.cache_path = Path(cache_path)
        self.directory = Path(f"{cache_path}.partial")
        self.request_path = self.directory / "request.json"

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
                fix="Pass `overwrite` to start this cache over.") from None
        return request

    def start(self, request: dict[str, Any]) -> None:
        """Record the request of a new extraction (fsynced, atomic) so a rerun can check it resumes the same one."""
        self._refuse_link()
        make_folder(self.directory, "create the folder for finished batches")
        atomic_write_json(self.request_path, request)  # an OSError comes out as a FeaturekitError naming the condition

    def batch_path(self, index: int) -> Path:
        return self.directory / f"batch-{index:07d}.h5"

    def done_batches(self) -> set[int]:
        """Indices of the batches whose files are well formed and hold exactly their slice of rows."""
        request = self.request_or_empty()
        return {index for index, path in self._batch_files()
                if isinstance(_inspect_batch(path, index, request.get("batch_size"), request.get("n_samples")), Batch)}

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
        span = _span(rows, skipped)
        if span is None or len(skipped_reasons) != len(skipped):
            raise ValueError(f"batch {index}: rows must be one contiguous run, each once, with a reason per skipped row")
        features = np.asarray(features, dtype=dtype)
        self._refuse_link()
        with new_hdf5_file(self.batch_path(index), f"write batch {index} of the cache") as f:
            f.attrs.update(batch_index=index, row_start=span[0], row_stop=span[1])
            f.create_dataset("row_indices", data=rows)
            f.create_dataset("features", data=features, **({"fletcher32": True} if features.size else {}))
            f.create_dataset("skipped_indices", data=skipped)
            f.create_dataset("skipped_reasons", data=np.asarray(skipped_reasons, dtype=object), dtype=string_dtype())

    def verified_batches(self, n_samples: int, feature_dim: int) -> list[Batch]:
        """Every batch, checked to cover rows 0..n_samples-1 exactly once between them (kept plus skipped).

        Damaged or misplaced batch files are removed, so that the rerun the error asks for recomputes exactly
        the batches it names.

        Raises:
            FeaturekitError: batches are missing, damaged or overlap; it names them.
        """
        request = self.read_request()
        found = {index: _inspect_batch(path, index, request.get("batch_size"), n_samples, feature_dim)
                 for index, path in self._batch_files()}
        damaged = {index: why for index, why in found.items() if isinstance(why, str)}
        for index in damaged:
            self.batch_path(index).unlink(missing_ok=True)
        batches = [batch for batch in found.values() if isinstance(batch, Batch)]
        n_batches = request.get("n_batches")
        missing = [index for index in range(n_batches if isinstance(n_batches, int) else 0) if index not in found]
        problems, doubled = _coverage_problems(batches, n_samples, missing, damaged)
        if problems:
            raise self.cannot_finish(problems, doubled)
        return sorted(batches, key=lambda batch: batch.start)

    def cannot_finish(self, problems: list[str], doubled: bool = False) -> FeaturekitError:
        """Why the batches cannot be merged yet; a rerun recomputes the batches that were removed or are missing."""
        return FeaturekitError(
            f"Cannot finish cache {self.cache_path}: {'; '.join(problems)}. Nothing was written at the cache path.",
            received=str(self.directory),
            fix="Run the same command again: it recomputes only those batches and keeps the others."
                + (" If this repeats, pass `overwrite` to start over." if doubled else ""))

    def remove(self) -> None:
        if self.directory.is_symlink():
            self.directory.unlink()
        else:
            shutil.rmtree(self.directory, ignore_errors=True)

    def request_or_empty(self) -> dict[str, Any]:
        try:
            return self.read_request()
        except FeaturekitError:
            return {}

    def _batch_files(self) -> list[tuple[int, Path]]:
        """(index, path) of every file named like a batch; links and other non-files are not ours."""
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return []
        return sorted((int(match.group(1)), Path(entry.path)) for entry in entries
                      if (match := BATCH_FILE.fullmatch(entry.name)) and entry.is_file(follow_symlinks=False))

    def _refuse_link(self) -> None:
        if self.directory.is_symlink():
            raise FeaturekitError(
                "The folder for finished batches is a symbolic link; featurekit does not write through links.",
                received=f"{self.directory} -> {os.readlink(self.directory)}",
                fix=f"Remove the link (`rm {self.directory}`) and run the command again.")



def _inspect_batch(path: Path, index: int, batch_size: Any, n_samples: Any,
                   feature_dim: int | None = None) -> Batch | str:
    """The batch a file holds, or why it cannot be trusted: unreadable, malformed, not its slice (where the request
    gives `batch_size` and `n_samples`), rows past the last image, features of another width than `feature_dim`."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            rows, skipped = f["row_indices"][()], f["skipped_indices"][()]
            reasons = [decode(r) for r in f["skipped_reasons"][()]]
            shape = f["features"].shape
            stored = (f.attrs.get("row_start"), f.attrs.get("row_stop"))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        return f"unreadable ({error})"
    if rows.ndim != 1 or skipped.ndim != 1 or len(shape) != 2 or shape[0] != len(rows) or len(reasons) != len(skipped):
        return "its datasets do not agree in length"
    if not (np.issubdtype(rows.dtype, np.integer) and np.issubdtype(skipped.dtype, np.integer)):
        return "its row numbers are not integers"
    span = _span(rows, skipped)
    if span is None:
        return "its rows are not one contiguous run, each once"
    start, stop = span
    if stored[0] is not None and (int(stored[0]), int(stored[1])) != span:
        return "its rows differ from the slice it records"
    if isinstance(batch_size, int) and batch_size > 0 and isinstance(n_samples, int):
        expected = (index * batch_size, min((index + 1) * batch_size, n_samples))
        if span != expected:
            return f"holds rows {start}-{stop - 1} instead of {expected[0]}-{expected[1] - 1}"
    if feature_dim is not None and shape[1] != feature_dim and len(rows):
        return f"holds {shape[1]}-dimensional features, not {feature_dim}"
    if isinstance(n_samples, int) and stop > n_samples:
        return f"holds rows up to {stop - 1}, but there are only {n_samples} images"
    return Batch(index, path, np.sort(rows), skipped, reasons, start, stop)


def _span(rows: np.ndarray, skipped: np.ndarray) -> tuple[int, int] | None:
    """(start, stop) of the rows a batch covers, kept or skipped; None unless they are one contiguous run of
    non-negative rows, each once."""
    covered = np.sort(np.concatenate([rows, skipped]))
    if len(covered) == 0 or covered[0] < 0 or np.any(np.diff(covered) != 1):
        return None
    return int(covered[0]), int(covered[-1]) + 1


def _coverage_problems(batches: list[Batch], n_samples: int, missing: list[int],
                       damaged: dict[int, str]) -> tuple[list[str], bool]:
    """What keeps the batches from covering every row exactly once, and whether rows are doubled."""
    coverage = np.zeros(n_samples, dtype=np.int64)
    for batch in batches:
        coverage[batch.start:batch.stop] += 1
    problems = [f"{_named_batches(missing, 'is', 'are')} missing (deleted while the run went on?)"] if missing else []
    if damaged:
        first = next(iter(damaged.items()))
        problems.append(f"{_named_batches(sorted(damaged), 'was', 'were')} damaged and removed "
                        f"(batch {first[0]}: {first[1]})")
    uncovered = np.flatnonzero(coverage == 0)
    if len(uncovered) and not missing and not damaged:
        problems.append(f"rows {_ranges(uncovered.tolist())} are in no batch")
    doubled = np.flatnonzero(coverage > 1)
    if len(doubled):
        problems.append(f"rows {_ranges(doubled.tolist())} are in more than one batch")
    return problems, bool(len(doubled))


def _named_batches(indices: list[int], one: str, many: str) -> str:
    """`batch 3 is` or `batches 3, 5-7 are` (with `one`, `many` the verb)."""
    return f"batch {indices[0]} {one}" if len(indices) == 1 else f"batches {_ranges(indices)} {many}"


def _ranges(values: list[int], limit: int = 8) -> str:
    """`3, 7-9, 12` for [3, 7, 8, 9, 12] (the first `limit` runs, then how many more)."""
    # Consecutive values share value - position: each group is one run.
    runs = [[value for _, value in run] for _, run in groupby(enumerate(values), lambda item: item[1] - item[0])]
    text = ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs[:limit])
    return text + (f" and {len(runs) - limit} more runs" if len(runs) > limit else "")
