"""The local engine: decode threads feed one embedder in this process, batch after batch."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from featurekit.backend import gpu_count
from featurekit.engines.job import Advance, BatchSink, Engine, ExtractionJob
from featurekit.pipeline import default_workers, image_batches


class LocalEngine(Engine):
    """Computes every batch in this process: `image_batches` decodes ahead on threads while the model runs.

    Its settings (`featurekit.engines.settings.EngineSettings`): `workers` decode threads (None: one per CPU this
    process may use); `prefetch_batches` batches decoded ahead of the one being embedded (more hides slow disks,
    costs memory).
    """

    name = "local"
    options = ("prefetch_batches",)
    computes_here = True

    def run(self, job: ExtractionJob, embedder: Any, sink: BatchSink, advance: Advance) -> None:
        """Embed the job's batches with `embedder` (a MultiEmbedder: uint8 batch -> one array per tap)."""
        settings = self.settings
        batches = image_batches(job.root, job.paths, job.image_size, job.batch_size, batch_indices=job.todo,
                                workers=settings.workers, prefetch=settings.prefetch_batches, **job.decode_options)
        for batch_index, (images, ok, reasons) in zip(job.todo, batches):
            sink.put(batch_index, embedder(images), ok, reasons)
            advance(len(ok))

    def warm_up(self, job: ExtractionJob, embedder: Any) -> None:
        """Compile the forward pass before the clock and the progress bar start."""
        embedder(np.zeros((1, job.image_size, job.image_size, 3), np.uint8))

    def record(self) -> dict[str, Any]:
        """GPUs counted by the active Keras backend; without Keras loaded nothing ran on a GPU (hand-made features
        are numpy), and Keras is not imported to say so."""
        return {"engine": self.name, "engine_workers": 1, "cluster_nodes": 1, "cluster_cpus": default_workers(),
                "cluster_gpus": gpu_count() if "keras" in sys.modules else 0}
