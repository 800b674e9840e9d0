"""The input pipeline, without TensorFlow: ordered, parallel decode and resize into numpy batches.

Extraction, backbone training and prediction all read images through this module, so they decode and
resize the same way (`featurekit.data.load_image`: Pillow) and keep the CPU busy while the model runs.

- `image_batches` yields ``(images uint8 [B, S, S, 3], ok bool [B], reasons list[str])`` for fixed
  slices of a path list, in order. Worker threads decode (Pillow releases the GIL while decoding and
  resizing) straight into the batch's array, and a bounded number of batches is decoded ahead, so the
  model never waits and memory stays bounded. A file that does not decode becomes a black row flagged
  not-ok with its reason: batches keep their shape and the caller drops or records the row.
- `augment_image` is the training augmentation (random flip, small random crop resized back), seeded
  per image so the result never depends on which thread ran first.

Everything here works on any Keras backend, or none: it is numpy and Pillow only.
"""

from __future__ import annotations

import functools
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.data import ImageDecodeError, load_image
from featurekit.parameters import PREFETCH_BATCHES

# The smallest crop side of the training augmentation, as a fraction of the image side (as before: 7/8).
MIN_CROP_FRACTION = 7 / 8

Decoder = Callable[..., np.ndarray]
Transform = Callable[[np.ndarray, int], np.ndarray]


def default_workers() -> int:
    """Decode threads: one per CPU this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class PendingBatch:
    """A batch whose rows are being decoded by worker threads into one preallocated array."""

    def __init__(self, images: np.ndarray, futures: list[Future]):
        self._images = images
        self._futures = futures

    def result(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Wait for every row; returns (images, ok, reasons), reasons "" for rows that decoded.

        Errors other than an undecodable file (a bug, memory) are raised here, in row order.
        """
        reasons = [future.result() for future in self._futures]
        return self._images, np.array([reason == "" for reason in reasons], dtype=bool), reasons

    def cancel(self) -> None:
        for future in self._futures:
            future.cancel()


class ParallelDecoder:
    """A pool of threads that decode image files into batch arrays, in parallel, keeping row order.

    Args:
        image_size: Square size every image is resized to.
        workers: Decode threads; default one per CPU.
        decode: `decode(path, image_size, **decode_options) -> uint8 [S, S, 3]`, raising
            `ImageDecodeError` for a file it cannot read (default `featurekit.data.load_image`).
        **decode_options: Passed to `decode` with every file (e.g. a pixel limit).
    """

    def __init__(self, image_size: int, workers: int | None = None, decode: Decoder = load_image,
                 **decode_options: Any):
        self.image_size = int(image_size)
        self._decode = functools.partial(decode, **decode_options)
        self._pool = ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="decode")

    def submit(self, paths: Sequence[str | Path], transform: Transform | None = None) -> PendingBatch:
        """Start decoding `paths` into one batch; `transform(image, row)` is applied to each decoded image."""
        images = np.zeros((len(paths), self.image_size, self.image_size, 3), dtype=np.uint8)
        futures = [self._pool.submit(self._decode_row, images, row, path, transform)
                   for row, path in enumerate(paths)]
        return PendingBatch(images, futures)

    def _decode_row(self, images: np.ndarray, row: int, path: str | Path, transform: Transform | None) -> str:
        try:
            image = self._decode(path, self.image_size)
        except ImageDecodeError as error:
            return str(error) or "could not be decoded"  # the row stays black; the caller sees ok=False
        images[row] = image if transform is None else transform(image, row)
        return ""

    def close(self) -> None:
        """Stop the threads; decodes not yet started are cancelled."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def image_batches(root: str | Path, paths: Sequence[str], image_size: int, batch_size: int,
                  batch_indices: Iterable[int] | None = None, workers: int | None = None,
                  prefetch: int = PREFETCH_BATCHES, decode: Decoder = load_image,
                  **decode_options: Any) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Decoded batches of fixed slices of `paths`, in order, decoded in parallel ahead of the consumer.

    Batch b holds ``paths[b * batch_size:(b + 1) * batch_size]``: the same rows whichever batches are
    asked for, so a resumed extraction computes exactly the batches an uninterrupted one would have.

    Args:
        root: Folder the relative `paths` live in ("" for absolute paths).
        paths: Relative (or absolute) file paths.
        image_size: Square size every image is resized to.
        batch_size: Images per batch (at least 1, checked by the caller's options); only the last slice may be
            shorter.
        batch_indices: Which slices to yield, in this order; default all of them.
        workers: Decode threads; default one per CPU.
        prefetch: Batches decoded ahead of the one being consumed.
        decode: Per-image decoder (see `ParallelDecoder`); default `featurekit.data.load_image`.
        **decode_options: Passed to `decode` with every file.

    Yields:
        (images uint8 [B, S, S, 3], ok bool [B], reasons: one string per row, "" where the file decoded).
    """
    full_paths = [Path(root) / p for p in paths]
    indices = range(-(-len(full_paths) // batch_size)) if batch_indices is None else batch_indices
    pending: deque[PendingBatch] = deque()
    decoder = ParallelDecoder(image_size, workers, decode, **decode_options)
    try:
        for index in indices:
            pending.append(decoder.submit(full_paths[index * batch_size:(index + 1) * batch_size]))
            if len(pending) > prefetch:  # `prefetch` batches stay submitted while the consumer works
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        decoder.close()  # a consumer that stops early (an error, a break) leaves nothing running: queued rows cancelled


def augment_image(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training augmentation: a horizontal flip (p = 0.5) and a random square crop of 7/8 to all of the
    side, resized back with Pillow's bilinear filter. Light on purpose: GAN traces live in fine texture,
    which heavy augmentation would wash out.

    Args:
        image: uint8 [S, S, 3].
        rng: The image's own generator (seeded per image, so threads never change the result).

    Returns:
        uint8 [S, S, 3].
    """
    from PIL import Image

    size = image.shape[0]
    if rng.random() < 0.5:
        image = image[:, ::-1]
    crop = int(rng.integers(int(size * MIN_CROP_FRACTION), size + 1))
    top, left = (int(v) for v in rng.integers(0, size - crop + 1, size=2))
    image = image[top:top + crop, left:left + crop]
    if crop != size:
        image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((size, size), Image.Resampling.BILINEAR))
    return np.ascontiguousarray(image, dtype=np.uint8)


def decodable(root: str | Path, paths: Sequence[str], image_size: int,
              batch_size: int = 64) -> tuple[list[int], list[tuple[str, str]]]:
    """Which files decode: (indices of the good ones, [(path, reason)] of the others).

    Training reads every image many times in shuffled order; checking once up front keeps every
    training batch full and its content a pure function of (seed, epoch, step).
    """
    # One reason per file, "" where it decodes.
    reasons = [reason for _, _, batch in image_batches(root, paths, image_size, batch_size) for reason in batch]
    return ([index for index, reason in enumerate(reasons) if not reason],
            [(paths[index], reason) for index, reason in enumerate(reasons) if reason])
