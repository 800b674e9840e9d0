"""The frozen trunk's output maps of every training and validation image, computed once per run and cached.

Fine-tuning trains only the layers above `unfreeze_from`; the trunk below never changes, so running it every
epoch would repeat the same work. Its maps are computed once and stored in the run's `trunk/` folder as `.npy`
arrays (float16: half the bytes; read back memory-mapped, arrays only, nothing that can run code), and every
epoch trains the top on them. A resumed run reuses the files; a finished run deletes them.

Augmentation must happen before the trunk, on the images, so it is cached too: besides the clean image (copy
0), `copies` augmented copies of each training image (copy k: a random horizontal flip and one of the
augmentation views, JPEG quality or blur strength drawn per image; `featurekit.views`), each seeded by (run
seed, k, image path). Each epoch then shows each training image as one of its K + 1 versions, drawn anew from
(seed, epoch): augmentation redrawn every epoch among a fixed set of K + 1 cached versions, at K + 1 times the
trunk's cost once. Validation sees the clean images only.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import keras
import numpy as np

from featurekit.parameters import MAX_PIXELS
from featurekit.data import decode_rgb, resize_rgb
from featurekit.errors import FeaturekitError, given
from featurekit.fsutil import atomic_write_bytes, make_folder
from featurekit.training.batches import SeededBatches
from featurekit.views import View, keyed_rng, parse_view

MAP_DTYPE = np.float16


@dataclass(frozen=True)
class AugmentedCopy:
    """A per-image decoder (`featurekit.pipeline.image_batches`): copy `copy` of each image; 0 is the clean one."""

    root: str
    copy: int
    seed: int
    views: tuple[str, ...] = ()

    def __call__(self, path: str | Path, image_size: int, *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
        from PIL import ImageOps

        image = decode_rgb(path, max_pixels=max_pixels)
        if self.copy:
            key = Path(path).relative_to(self.root).as_posix()
            rng = keyed_rng(f"{self.seed}\0{self.copy}\0{key}")
            if rng.random() < 0.5:
                image = ImageOps.mirror(image)
            if self.views:
                view: View = parse_view(self.views[int(rng.integers(len(self.views)))])
                image = replace(view, seed=self.seed).apply(image, f"{key}#copy{self.copy}", max_pixels)
        return resize_rgb(image, image_size)


def trunk_maps(trunk: keras.Model, preprocessing: str, folder: Path, root: Path, paths: Sequence[str], name: str,
               decoder: AugmentedCopy, image_size: int, batch_size: int, log: Callable[[str], None]) -> np.ndarray:
    """The trunk's maps of `paths` decoded by `decoder`, from `folder/<name>.npy` when a complete file is there."""
    from featurekit.backbones.embedder import preprocess, run_in_batches
    from featurekit.pipeline import image_batches

    path = folder / f"{name}.npy"
    if path.is_file():
        maps = np.load(path, mmap_mode="r", allow_pickle=False)
        if maps.shape[0] == len(paths):
            return maps
    if folder.is_symlink():  # writing never follows a link
        raise FeaturekitError(f"{folder} is a symbolic link; the trunk's maps are written only into a real folder.",
                              received=given("out", str(folder.parent)), fix=f"Remove the link {folder}.")
    shape = tuple(int(d) for d in trunk.output.shape[1:])
    maps = np.empty((len(paths), *shape), MAP_DTYPE)
    log(f"  trunk maps {name}: {len(paths)} images -> {shape} each")
    row = 0
    for images, _, _ in image_batches(root, paths, image_size, batch_size, decode=decoder):
        # A short last batch is padded to `batch_size`: one batch shape, one trace of the forward pass.
        maps[row:row + len(images)] = run_in_batches(trunk, preprocess(images, preprocessing), batch_size)[0]
        row += len(images)
    buffer = io.BytesIO()
    np.save(buffer, maps, allow_pickle=False)
    make_folder(folder, "write the trunk's maps")
    atomic_write_bytes(path, buffer.getvalue())
    return maps


class MapBatches(SeededBatches):
    """(float32 maps, float32 labels) batches of cached trunk maps, each image one of its cached versions.

    The rows of a batch are those of `featurekit.training.batches.SeededBatches`, as for images; a training batch
    picks for each image one of the versions (`versions[k]`, all of the same images in the same order), drawn
    from (seed, e) too: a pure function of (seed, epoch, step), so a resumed run sees the batches an
    uninterrupted one would have.
    """

    def __init__(self, versions: list[np.ndarray], labels: Sequence[int], batch_size: int, train: bool, seed: int):
        super().__init__(labels, batch_size, train, seed)
        self.versions = versions

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        rows = self.positions(index)
        if not self.train:
            return np.asarray(self.versions[0][rows], np.float32), self.labels[rows]
        rng = np.random.default_rng([self.seed, self.epoch])
        rng.permutation(len(self.labels))  # the epoch's order (`positions`): the versions are drawn after it
        version = rng.integers(0, len(self.versions), size=len(self.labels))
        return np.stack([self.versions[version[row]][row] for row in rows]).astype(np.float32), self.labels[rows]
