"""The ray engine's Ray Data actor: one embedder, built once from the registry and the driver's recorded request
(never a pickled model), checked against the driver's; each call decodes and embeds one batch, with the same
`featurekit.data.load_image` and options as the local engine. It runs in the worker processes that
`featurekit.engines.ray_engine.RayEngine` starts."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.pipeline import ParallelDecoder


# Tries per batch: a batch whose computation fails (or kills its actor) this many times stops the run.
BATCH_ATTEMPTS = 3


class BatchWorker:
    """A Ray Data actor: one embedder, built once; decodes and embeds one batch per call.

    Args:
        job: The driver's `featurekit.engines.job.ExtractionJob` (its `root` absolute): the batches' files, the
            decode options, the request that rebuilds the embedder and the descriptions it must match.
        decode_threads: Decode threads of this actor.

    Errors come back as data ({"error": ..., "permanent": ...}) rather than exceptions, so the driver knows
    which batch failed and why, and decides about retries itself.
    """

    def __init__(self, job: Any, decode_threads: int):
        self._job = job
        self._host = socket.gethostname()
        self._decode_threads = decode_threads
        try:
            self._embedder = job.embedder_request.build()
            self._problem = _description_mismatch([e.describe() for e in self._embedder.embedders], job.descriptions)
            self._decoder = ParallelDecoder(job.image_size, decode_threads, **job.decode_options)
            if not self._problem:  # compile before the first batch
                self._embedder(np.zeros((1, job.image_size, job.image_size, 3), np.uint8))
        except Exception as error:  # e.g. the weights file is not on this node: no batch can be computed here
            self._problem = f"the worker on {self._host} could not build its embedder ({type(error).__name__}: {error})"

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One batch row in, one result row out: features and decode results, or why it failed."""
        index = int(batch["batch"][0])
        blobs = list(batch["blobs"][0]) if len(batch["blobs"][0]) else None
        if self._problem:
            return self._columns(index, error=self._problem, permanent=True)
        if blobs is None and not os.path.isdir(self._job.root):
            return self._columns(index, error=f"the data folder {self._job.root} is not visible on the worker's node "
                                 f"({self._host}); put it on a filesystem every node mounts, or pass `ship_bytes`",
                                 permanent=True)
        for attempt in range(BATCH_ATTEMPTS):
            try:
                outputs, ok, reasons = self._compute(index, blobs, json.loads(str(batch["unread"][0])))
                break
            except Exception as error:  # retried here; the last error goes back to the driver as data
                if attempt + 1 == BATCH_ATTEMPTS:
                    return self._columns(index, error=f"{type(error).__name__}: {error}")
        return self._columns(index, n=len(ok), ok=np.asarray(ok, bool).tobytes(), reasons=json.dumps(list(reasons)),
                             features=[np.ascontiguousarray(output, np.float32).tobytes() for output in outputs])

    def _compute(self, index: int, blobs: list | None, unread: list[str]) -> tuple[list[np.ndarray], np.ndarray,
                                                                                 list[str]]:
        """One try at batch `index`: decode with the same `load_image` and options as the local engine, then embed;
        returns (features per tap, ok, reasons). Shipped bytes are written to a private scratch folder first, each
        file at its path in the data folder (load_image reads files and checks names; a view seeds each image's
        draws from that path, so they are the local engine's draws)."""
        paths = self._job.batch_paths(index)
        if blobs is None:
            images, ok, reasons = self._decoder.submit([Path(self._job.root) / path for path in paths]).result()
            return self._embedder(images), ok, reasons
        if any(Path(path).is_absolute() or ".." in Path(path).parts for path in paths):
            raise ValueError(f"the batch's paths must lie inside the data folder: {paths}")
        with tempfile.TemporaryDirectory(prefix="featurekit-ray-") as scratch:
            written = [Path(scratch, path) for path in paths]
            for local, blob in zip(written, blobs):
                local.parent.mkdir(parents=True, exist_ok=True)
                if blob is not None:
                    local.write_bytes(bytes(blob))
            decoder = ParallelDecoder(self._job.image_size, self._decode_threads, **_rebased(self._job.decode_options,
                                                                                             scratch))
            try:
                images, ok, reasons = decoder.submit(written).result()
            finally:
                decoder.close()
        # A file the driver could not read was not written (so it did not decode here): the driver's reason, the one
        # the local engine gives.
        return self._embedder(images), ok, [driver or own for driver, own in zip(unread, reasons)]

    def _columns(self, index: int, error: str = "", permanent: bool = False, n: int = 0, ok: bytes = b"",
                 reasons: str = "[]", features: list[bytes] | None = None) -> dict[str, np.ndarray]:
        """One result row: features and decode results, or (`error`) why the batch failed."""
        return {"batch": np.array([index]), "error": np.array([error]), "permanent": np.array([permanent]),
                "n": np.array([n]), "ok": np.array([ok], dtype=object), "reasons": np.array([reasons])} | {
            f"features_{i}": np.array([blob], dtype=object)
            for i, blob in enumerate(features or [b""] * len(self._job.descriptions))}


def _rebased(decode_options: dict[str, Any], root: str) -> dict[str, Any]:
    """The decode options for the data folder's files written under `root`: a per-image decoder that reads paths
    relative to the data folder (`featurekit.views.ViewDecoder`) reads them relative to `root`."""
    decode = decode_options.get("decode")
    return decode_options if decode is None else {**decode_options, "decode": dataclasses.replace(decode, root=root)}


def _description_mismatch(worker: list[dict[str, Any]], driver: list[dict[str, Any]]) -> str:
    """Why the worker's embedder is not the driver's ("" when it is): the same keys, weights path aside (the same
    file may be spelled differently; its sha256 is compared)."""
    for own, wanted in zip(worker, driver):
        key = min((key for key in (set(own) | set(wanted)) - {"weights"}
                   if json.dumps(own.get(key), default=str) != json.dumps(wanted.get(key), default=str)), default=None)
        if key is not None:
            return (f"the worker's embedder differs from the driver's: {key} is {own.get(key)!r} there but "
                    f"{wanted.get(key)!r} here")
    return ""
