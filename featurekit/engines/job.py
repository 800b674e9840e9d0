"""What every engine shares: the job (which batches, how to compute them), the sink that writes each finished
batch, and the `Engine` protocol. See `featurekit.engines` for how the engines divide the work."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Batch files written at once: more threads overlap one file's fsync with the next files' HDF5 writes (HDF5
# itself runs one call at a time). Two on a small machine, up to four where a fast GPU produces batches quickly.
WRITER_THREADS = max(2, min(4, (os.cpu_count() or 1) // 4))
Advance = Callable[[int], None]


@dataclass(frozen=True)
class ExtractionJob:
    """The batches an engine must compute, and how to compute them; the same for every engine.

    Attributes:
        root: The data folder (`paths` are relative to it).
        paths: Every sample's relative path, in the sorted order of the cache's rows.
        todo: The batch indices to compute, ascending.
        batch_size: Rows per batch: batch b is rows b * batch_size up to the next batch.
        image_size: Square size images are decoded to.
        decode_options: Passed to `featurekit.data.load_image` with every file (e.g. max_pixels).
        embedder_request: What rebuilds the driver's embedder elsewhere (`request.build()`: backbone, taps,
            resolved weights, image size, preprocessing, seed, resolved precision, batch size): workers build from
            the registry, never from a pickled model.
        descriptions: `describe()` of each tap of the driver's embedder; a worker whose own differ is refused.
    """

    root: Path
    paths: tuple[str, ...]
    todo: tuple[int, ...]
    batch_size: int
    image_size: int
    decode_options: dict[str, Any] = field(default_factory=dict)
    embedder_request: Any = None
    descriptions: tuple[dict[str, Any], ...] = ()

    def batch_paths(self, batch_index: int) -> list[str]:
        """The paths of one batch: its slice of the sorted sample list."""
        return list(self.paths[batch_index * self.batch_size:(batch_index + 1) * self.batch_size])

    @property
    def n_rows(self) -> int:
        """Rows of all the batches to compute."""
        return sum(len(self.batch_paths(b)) for b in self.todo)


class BatchSink(AbstractContextManager):
    """Writes each finished batch into every partial cache that misses it, on background threads.

    A target is a cache being written: `index` (which embedder output it stores), `partial` (its
    `featurekit.cache.PartialCache`) and `done` (the batches it has).

    The engine's loop never waits on the disk (HDF5 writes and fsyncs overlap the next batches); at most a
    few batches per cache are in flight, so memory stays bounded. A failed write (a full disk) is raised
    from the next `put` or on leaving the `with` block, and every batch written before it stays.
    """

    def __init__(self, targets: Sequence[Any], batch_size: int, dtype: str, threads: int = WRITER_THREADS):
        self._targets = list(targets)
        self._batch_size = int(batch_size)
        self._dtype = dtype
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="batch-writer")
        self._pending: deque[Future] = deque()
        self._limit = 2 * threads * max(1, len(self._targets))

    def put(self, batch_index: int, outputs: Sequence[np.ndarray], ok: np.ndarray, reasons: Sequence[str]) -> None:
        """Queue one computed batch for writing.

        Args:
            batch_index: Which fixed slice of the sample list it is.
            outputs: One array [B, D_i] per embedder output (rows that did not decode are dropped here).
            ok: Which rows decoded.
            reasons: One per row; why a row did not decode ("" where it did).
        """
        ok = np.asarray(ok, dtype=bool)
        rows = batch_index * self._batch_size + np.arange(len(ok))
        skipped_reasons = [reason for reason, good in zip(reasons, ok) if not good]
        for target in self._targets:
            if batch_index not in target.done:
                self._pending.append(self._pool.submit(
                    target.partial.write_batch, batch_index, rows[ok], np.asarray(outputs[target.index])[ok],
                    rows[~ok], skipped_reasons, self._dtype))
        while len(self._pending) > self._limit or (self._pending and self._pending[0].done()):
            self._pending.popleft().result()  # re-raises a failed write here, in order

    def __exit__(self, exc_type, *exc: object) -> None:
        """Wait for every queued write (a few batches at most), so every batch computed is kept even when the run
        fails (a batch that failed on a Ray worker); raise the first failed write unless the run is failing already.
        A second Ctrl-C cancels the writes not started and lets those in flight finish, so their files are whole."""
        try:
            while self._pending:
                error = self._pending.popleft().exception()
                if error is not None and exc_type is None:
                    raise error
        finally:
            for future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)


class Engine(AbstractContextManager):
    """An engine: a registry entry (`featurekit.engines.settings.ENGINE_KINDS`) built from checked settings
    (`Engine(settings, log)`) and, used as a context manager (entering makes it ready), computes an ExtractionJob's
    batches and hands each to the sink. The defaults here are those of an engine with nothing to set up."""

    name: str
    options: tuple[str, ...]  # the engine options it takes; the others must keep their defaults
    computes_here: bool  # batches are computed in this process, so their memory is checked before they run

    def __init__(self, settings: Any, log: Callable[[str], None] = print):
        self.settings = settings  # featurekit.engines.settings.EngineSettings
        self.log = log

    @classmethod
    def check_available(cls) -> None:
        """Refuse, before any image is read, an engine that cannot run here (an extra not installed)."""

    def __exit__(self, *exc: object) -> None:
        """Release what entering took (`__enter__`, from AbstractContextManager, returns the engine)."""

    def run(self, job: ExtractionJob, embedder: Any, sink: BatchSink, advance: Advance) -> None:
        """Compute the job's batches, each handed to `sink`."""
        raise NotImplementedError

    def warm_up(self, job: ExtractionJob, embedder: Any) -> None:
        """Whatever should happen before the clock and the progress bar start (compiling the forward pass)."""

    def record(self) -> dict[str, Any]:
        """`engine`, `engine_workers`, `cluster_nodes`, `cluster_cpus`, `cluster_gpus` (stored in the cache)."""
        raise NotImplementedError
