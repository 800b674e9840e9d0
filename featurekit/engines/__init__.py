"""Engines: what computes the missing batches of an extraction, on this machine or on a Ray cluster.

An extraction decides WHAT to compute (`featurekit.extraction.extract`: the sorted sample list, its fixed batch slices,
which of them the partial caches miss); an engine decides WHERE. Every engine gets the same `ExtractionJob`
and hands each finished batch to the same `BatchSink`, which writes it through `PartialCache.write_batch`
in this process. The features therefore never depend on the engine, a killed run keeps every batch written,
and a rerun computes only the batches that are missing, whichever engine ran before.

- `local` (`featurekit.engines.local`): decode threads feed the embedder built in this process.
- `ray` (`featurekit.engines.ray_engine`, the optional extra `featurekit[ray]`): Ray Data actors, each with
  its own embedder built from the registry, decode and embed whole batches; this process writes them.

- `job`: the `ExtractionJob`, the `BatchSink` and the `Engine` protocol every engine implements.
- `settings`: the engine registry (`ENGINE_KINDS`) and `engine_settings`, checked before any image is read;
  `EngineSettings.open(log)` is the engine, entered (for Ray: the address reached within `ray_timeout`, a cluster
  started or joined, a request that cannot run there refused) before any cache is locked or written.
"""

from featurekit.engines.job import Advance, BatchSink, Engine, ExtractionJob
from featurekit.engines.settings import ENGINE_KINDS, ENGINE_OPTIONS, EngineSettings, engine_settings

__all__ = ["Advance", "BatchSink", "ENGINE_KINDS", "ENGINE_OPTIONS", "Engine", "EngineSettings",
           "ExtractionJob", "engine_settings"]
