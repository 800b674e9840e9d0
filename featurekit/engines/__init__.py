"""Engines: what computes the missing batches of an extraction, on this machine or on a Ray cluster.

An extraction decides WHAT to compute (`featurekit.extraction.extract`: the sorted sample list, its fixed batch slices,
which of them the partial caches miss); an engine decides WHERE. Every engine gets the same `ExtractionJob`
and hands each finished batch to the same `BatchSink`, which writes it through `PartialCache.write_batch`
in this process. The features therefore never depend on the engine, a killed run keeps every batch written,
and a rerun computes only the batches that are missing, whichever engine ran before.

- `local` (`featurekit.engines.local`): decode threads feed the embedder built in this process.
- `ray` (`featurekit.engines.ray_engine`, the optional extra `featurekit[ray]`): Ray Data actors, each with
  its own embedder built from the registry, decode and embed whole batches; this process writes them.

`open_engine(settings)` connects (for Ray: reaches the address within `ray_timeout`, starts or joins a cluster,
and refuses a request that cannot run there) before any cache is locked or written, and releases the engine
afterwards.
"""

from __future__ import annotations

import importlib.util
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from featurekit.choices import ENGINES
from featurekit.errors import FeaturekitError, given, option_name
from featurekit.options import default as declared

RAY_EXTRA = "pip install 'featurekit[ray]'"
# Batch files written at once: more threads overlap one file's fsync with the next files' HDF5 writes (HDF5
# itself runs one call at a time). Two on a small machine, up to four where a fast GPU produces batches quickly.
WRITER_THREADS = max(2, min(4, (os.cpu_count() or 1) // 4))


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

    def rows(self, batch_index: int) -> range:
        """The rows (of the sorted sample list) of one batch."""
        start = batch_index * self.batch_size
        return range(start, min(start + self.batch_size, len(self.paths)))

    def batch_paths(self, batch_index: int) -> list[str]:
        rows = self.rows(batch_index)
        return list(self.paths[rows.start:rows.stop])

    @property
    def n_rows(self) -> int:
        """Rows of all the batches to compute."""
        return sum(len(self.rows(b)) for b in self.todo)


class SinkTarget(Protocol):
    """A cache being written: which embedder output it stores, its partial cache, the batches it has."""

    index: int
    partial: Any  # featurekit.cache.PartialCache
    done: set[int]


class BatchSink:
    """Writes each finished batch into every partial cache that misses it, on background threads.

    The engine's loop never waits on the disk (HDF5 writes and fsyncs overlap the next batches); at most a
    few batches per cache are in flight, so memory stays bounded. A failed write (a full disk) is raised
    from the next `put` or from `close`, and every batch written before it stays.
    """

    def __init__(self, targets: Sequence[SinkTarget], batch_size: int, dtype: str,
                 threads: int = WRITER_THREADS):
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
        start = batch_index * self._batch_size
        rows = np.arange(start, start + len(ok))
        skipped_reasons = [reason for reason, good in zip(reasons, ok) if not good]
        for target in self._targets:
            if batch_index not in target.done:
                self._pending.append(self._pool.submit(
                    target.partial.write_batch, batch_index, rows[ok], np.asarray(outputs[target.index])[ok],
                    rows[~ok], skipped_reasons, self._dtype))
        while len(self._pending) > self._limit or (self._pending and self._pending[0].done()):
            self._pending.popleft().result()  # re-raises a failed write here, in order

    def close(self) -> None:
        """Wait for every queued write; raise the first failure."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "BatchSink":
        return self

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is None:
            self.close()
            return
        # Already failing (an error, Ctrl-C): let the writes in flight finish so their files are whole.
        for future in self._pending:
            future.cancel()
        self._pool.shutdown(wait=True)


Advance = Callable[[int], None]


class Engine(Protocol):
    """Computes an ExtractionJob's batches and hands each to the sink; returns what the cache records."""

    name: str

    def run(self, job: ExtractionJob, embedder: Any, sink: BatchSink, advance: Advance) -> dict[str, Any]:
        ...

    def warm_up(self, job: ExtractionJob, embedder: Any) -> None:
        """Whatever should happen before the clock and the progress bar start (compiling the forward pass)."""
        ...

    def record(self) -> dict[str, Any]:
        """`engine`, `engine_workers`, `cluster_nodes`, `cluster_cpus`, `cluster_gpus` (stored in the cache)."""
        ...


ENGINE_DEFAULTS: dict[str, Any] = {
    "prefetch_batches": declared("extract", "prefetch_batches"),
    "ray_address": declared("extract", "ray_address"),
    "ray_workers": declared("extract", "ray_workers"),
    "cpus_per_worker": declared("extract", "cpus_per_worker"),
    "gpus_per_worker": declared("extract", "gpus_per_worker"),
    "ship_bytes": declared("extract", "ship_bytes"),
    "ray_timeout": declared("extract", "ray_timeout"),
}
RAY_ONLY = ("ray_address", "ray_workers", "cpus_per_worker", "gpus_per_worker", "ship_bytes", "ray_timeout")


@dataclass(frozen=True)
class EngineSettings:
    """Which engine computes the batches, and its settings (see `open_engine`); made by `engine_settings`."""

    name: str = "local"
    workers: int | None = None
    prefetch_batches: int = ENGINE_DEFAULTS["prefetch_batches"]
    ray_address: str | None = ENGINE_DEFAULTS["ray_address"]
    ray_workers: int | None = ENGINE_DEFAULTS["ray_workers"]
    cpus_per_worker: float = ENGINE_DEFAULTS["cpus_per_worker"]
    gpus_per_worker: float = ENGINE_DEFAULTS["gpus_per_worker"]
    ship_bytes: bool = ENGINE_DEFAULTS["ship_bytes"]
    ray_timeout: float = ENGINE_DEFAULTS["ray_timeout"]


def ray_installed() -> bool:
    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("ray.data") is not None


def check_engine_request(engine: str, engine_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Refuse an unknown engine, ray options given to the local engine, or the ray engine without Ray installed.

    Runs before any image is read. Returns the engine options completed with their declared defaults.
    """
    if engine not in ENGINES:
        raise FeaturekitError(f"Unknown engine {engine!r}.", received=given("engine", engine),
                              fix=f"Use one of: {', '.join(ENGINES)}.")
    options = {**ENGINE_DEFAULTS, **{k: v for k, v in (engine_options or {}).items() if v is not None}}
    unknown = sorted(set(options) - set(ENGINE_DEFAULTS))
    if unknown:
        raise FeaturekitError(f"Unknown engine option {unknown[0]!r}.", received=given(unknown[0], options[unknown[0]]),
                              fix=f"Engine options are: {', '.join(option_name(k) for k in ENGINE_DEFAULTS)}.")
    if engine == "local":
        asked = [k for k in RAY_ONLY if k in (engine_options or {}) and engine_options[k] not in (None, ENGINE_DEFAULTS[k])]
        if asked:
            raise FeaturekitError(
                f"{option_name(asked[0])} applies to the ray engine only.", received=given(asked[0], options[asked[0]]),
                fix=f"Add {option_name('engine')} ray, or leave {option_name(asked[0])} out.")
    if engine == "ray" and not ray_installed():
        raise FeaturekitError(
            "The ray engine needs Ray Data, which is not installed.", received=given("engine", engine),
            fix=f"Install the extra: {RAY_EXTRA} (or use {given('engine', 'local')}).")
    return options


def engine_settings(engine: str = "local", engine_options: dict[str, Any] | None = None,
                    workers: int | None = None) -> EngineSettings:
    """The checked settings of an engine (see `check_engine_request`); `workers` are decode threads."""
    return EngineSettings(name=engine, workers=workers, **check_engine_request(engine, engine_options))


@contextmanager
def open_engine(settings: EngineSettings, log: Callable[[str], None] = print) -> Iterator[Engine]:
    """The engine, ready to run: for Ray, a cluster joined (or started) and the request checked against it.

    Args:
        settings: The engine and its options: prefetch_batches; for ray also ray_address (joined within
            ray_timeout seconds), ray_workers, cpus_per_worker, gpus_per_worker, ship_bytes (see
            `featurekit.engines.ray_engine.RayEngine`); `workers` decode threads (of this process for local,
            of each Ray worker for ray; None: the default).
        log: Where messages go.

    Raises:
        FeaturekitError: a cluster that cannot be reached, or a request the cluster cannot run.
    """
    if settings.name == "local":
        from featurekit.engines.local import LocalEngine

        yield LocalEngine(workers=settings.workers, prefetch_batches=settings.prefetch_batches)
        return
    from featurekit.engines.ray_engine import RayEngine

    with RayEngine(address=settings.ray_address, workers=settings.ray_workers,
                   cpus_per_worker=settings.cpus_per_worker, gpus_per_worker=settings.gpus_per_worker,
                   ship_bytes=settings.ship_bytes, decode_threads=settings.workers, log=log,
                   connect_timeout=settings.ray_timeout) as ray_engine:
        yield ray_engine


__all__ = ["BatchSink", "ENGINES", "Engine", "EngineSettings", "ExtractionJob", "RAY_EXTRA", "check_engine_request",
           "engine_settings", "open_engine", "ray_installed"]
