"""Labelled image batches for Keras `fit`, on any backend: a `keras.utils.PyDataset` over the pipeline.

Training batches are shuffled and augmented, and every batch is a pure function of (seed, epoch, step):
epoch e visits the images in the order of a permutation seeded with (seed, e), wrapping around so the
last batch is full too, and each image's flip and crop come from a generator seeded with (seed, e, its
position). A run resumed at epoch e therefore sees exactly the batches an uninterrupted run would have,
whichever thread decoded what first. A callback of the run tells the dataset the epoch (`set_epoch`).
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np

from featurekit.errors import FeaturekitError
from featurekit.parameters import PREFETCH_BATCHES
from featurekit.pipeline import ParallelDecoder, PendingBatch, augment_image


class SeededBatches(keras.utils.PyDataset):
    """Labelled batches of rows for Keras `fit`; what a row holds is the subclass's (images, trunk maps).

    Training: epoch e visits the rows in the order of a permutation seeded with (seed, e), wrapping around so the
    last batch is full too (batch norm sees as many images in every step). Otherwise one pass in order, the last
    batch shorter.
    """

    def __init__(self, labels: np.ndarray, batch_size: int, train: bool, seed: int):
        # Keras' own workers stay at 1: ImageBatches' threads decode in parallel, and calls arrive in step order.
        super().__init__(workers=1, use_multiprocessing=False)
        self.labels = np.asarray(labels, dtype=np.float32)
        self.batch_size, self.train, self.seed = int(batch_size), train, int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose batches `__getitem__` returns from now on (0-based, as Keras counts)."""
        self.epoch = int(epoch)

    def positions(self, index: int) -> np.ndarray:
        """Row indices of batch `index` of the current epoch (IndexError past the last batch)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        n = len(self.labels)
        if not self.train:
            return np.arange(index * self.batch_size, min((index + 1) * self.batch_size, n))
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        return order[(index * self.batch_size + np.arange(self.batch_size)) % n]

    def close(self) -> None:
        """Stop what runs in the background (nothing, unless a subclass starts something)."""


class ImageBatches(SeededBatches):
    """(float32 images [B, S, S, 3] with values 0..255, float32 labels [B]) batches of decodable files.

    Args:
        root: Folder the relative `paths` live in.
        paths: Relative paths of files known to decode (see `featurekit.pipeline.decodable`).
        labels: One 0/1 label per path.
        image_size: Square size every image is resized to.
        batch_size: Images per batch.
        train: Shuffle and augment (training); otherwise one pass in order, last batch shorter.
        seed: Seed of the shuffles and augmentations.
        augment: Whether training batches are augmented (default: yes when `train`).
        workers: Decode threads; default one per CPU.
    """

    def __init__(self, root: str | Path, paths: list[str], labels: np.ndarray, image_size: int, batch_size: int,
                 train: bool, seed: int = 0, workers: int | None = None, augment: bool | None = None):
        super().__init__(labels, batch_size, train, seed)
        self.root = Path(root)
        self.paths = list(paths)
        self.augment = train if augment is None else augment
        self._decoder = ParallelDecoder(image_size, workers)
        self._pending: dict[tuple[int, int], PendingBatch] = {}

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for key in [k for k in self._pending if k[0] != self.epoch]:
            self._pending.pop(key).cancel()

    def _submit(self, index: int) -> PendingBatch:
        epoch, start = self.epoch, index * self.batch_size

        def transform(image: np.ndarray, row: int) -> np.ndarray:
            return augment_image(image, np.random.default_rng([self.seed, epoch, start + row]))

        return self._decoder.submit([self.root / self.paths[i] for i in self.positions(index)],
                                    transform if self.augment else None)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.positions(index)
        # Batches decoded ahead of the one Keras is training on.
        for ahead in range(index, min(index + 1 + PREFETCH_BATCHES, len(self))):
            if (self.epoch, ahead) not in self._pending:
                self._pending[(self.epoch, ahead)] = self._submit(ahead)
        images, ok, reasons = self._pending.pop((self.epoch, index)).result()
        if not ok.all():
            first = int(np.flatnonzero(~ok)[0])
            raise FeaturekitError(
                "An image stopped decoding during training (it decoded when the run started).",
                received=f"{self.paths[rows[first]]}: {reasons[first]}",
                fix="Restore or remove the file, then run the same command again: training resumes from the last "
                "finished epoch.")
        return images.astype(np.float32), self.labels[rows]

    def close(self) -> None:
        """Stop the decode threads."""
        for pending in self._pending.values():
            pending.cancel()
        self._pending.clear()
        self._decoder.close()

