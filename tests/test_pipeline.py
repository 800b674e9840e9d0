"""The TensorFlow-free input pipeline: same batches, order and skips as decoding one file at a time."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder, write_image
from featurekit.data import ImageDecodeError, load_image
from featurekit.pipeline import augment_image, decodable, image_batches

pytestmark = pytest.mark.backend  # backend-independent: CI runs it under JAX too


@pytest.fixture
def folder_with_bad_files(tmp_path: Path) -> tuple[Path, list[str]]:
    root = make_image_folder(tmp_path / "faces", per_class=5, size=40)
    (root / "real" / "empty.jpg").write_bytes(b"")
    good = write_image(tmp_path / "good.jpg", seed=5, size=64, fmt="JPEG")
    (root / "fake" / "truncated.jpg").write_bytes(good.read_bytes()[:300])
    (root / "fake" / "text.png").write_bytes(b"not a png")
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    return root, paths


def _sequential(root: Path, paths: list[str], size: int) -> tuple[np.ndarray, np.ndarray]:
    """What the old pipeline computed: each file through load_image, black and not-ok when it fails."""
    images, ok = [], []
    for path in paths:
        try:
            images.append(load_image(root / path, size))
            ok.append(True)
        except ImageDecodeError:
            images.append(np.zeros((size, size, 3), np.uint8))
            ok.append(False)
    return np.stack(images), np.array(ok)


def test_batches_are_fixed_slices_in_order_with_bad_files_flagged(folder_with_bad_files):
    root, paths = folder_with_bad_files
    batches = list(image_batches(root, paths, 24, batch_size=4, workers=3))
    assert [len(ok) for _, ok, _ in batches] == [4, 4, 4, 1]  # 13 files; only the last slice is short
    images = np.concatenate([b for b, _, _ in batches])
    ok = np.concatenate([o for _, o, _ in batches])
    reasons = [r for _, _, rs in batches for r in rs]
    expected_images, expected_ok = _sequential(root, paths, 24)
    np.testing.assert_array_equal(images, expected_images)
    np.testing.assert_array_equal(ok, expected_ok)
    assert images.dtype == np.uint8 and images.shape == (13, 24, 24, 3)
    bad = {paths[i]: reasons[i] for i in np.flatnonzero(~ok)}
    assert set(bad) == {"real/empty.jpg", "fake/truncated.jpg", "fake/text.png"}
    assert "empty file" in bad["real/empty.jpg"] and "not an image" in bad["fake/text.png"]
    assert "truncated" in bad["fake/truncated.jpg"]
    assert all(reasons[i] == "" for i in np.flatnonzero(ok))
    assert not images[~ok].any()  # undecodable rows are black


def test_chosen_batches_are_the_same_slices(folder_with_bad_files):
    root, paths = folder_with_bad_files
    every = list(image_batches(root, paths, 16, batch_size=3))
    chosen = list(image_batches(root, paths, 16, batch_size=3, batch_indices=[4, 1, 2]))
    for (images, ok, reasons), index in zip(chosen, [4, 1, 2]):
        np.testing.assert_array_equal(images, every[index][0])
        np.testing.assert_array_equal(ok, every[index][1])
        assert reasons == every[index][2]


def test_decode_options_and_a_custom_decoder_are_passed_through(tmp_path: Path):
    calls = []

    def decode(path, image_size, *, flavour):
        calls.append((Path(path).name, image_size, flavour))
        return np.full((image_size, image_size, 3), len(calls), np.uint8)

    batches = list(image_batches(tmp_path, ["a.png", "b.png", "c.png"], 5, batch_size=2, workers=1,
                                 decode=decode, flavour="jpeg-q50"))
    assert sorted(calls) == [("a.png", 5, "jpeg-q50"), ("b.png", 5, "jpeg-q50"), ("c.png", 5, "jpeg-q50")]
    assert [b.shape for b, _, _ in batches] == [(2, 5, 5, 3), (1, 5, 5, 3)]


def test_other_errors_are_raised_not_skipped(tmp_path: Path):
    def decode(path, image_size):
        raise MemoryError("too big")

    with pytest.raises(MemoryError):
        list(image_batches(tmp_path, ["a.png"], 5, batch_size=1, decode=decode))


def test_a_consumer_that_stops_early_leaves_no_threads(tmp_path: Path):
    root = make_image_folder(tmp_path / "faces", per_class=20, size=32)
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    batches = image_batches(root, paths, 32, batch_size=2, workers=2)
    next(batches)
    batches.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("decode")]


def test_decodable_lists_good_indices_and_bad_files(folder_with_bad_files):
    root, paths = folder_with_bad_files
    good, bad = decodable(root, paths, 16, batch_size=4)
    assert len(good) == 10 and [paths[i] for i in good] == [p for p in paths if p not in dict(bad)]
    assert sorted(p for p, _ in bad) == ["fake/text.png", "fake/truncated.jpg", "real/empty.jpg"]


def test_augmentation_is_seeded_per_image_and_keeps_shape():
    image = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    first = augment_image(image, np.random.default_rng([7, 0, 3]))
    again = augment_image(image, np.random.default_rng([7, 0, 3]))
    np.testing.assert_array_equal(first, again)
    assert first.shape == image.shape and first.dtype == np.uint8
    others = [augment_image(image, np.random.default_rng([7, 0, i])) for i in range(8)]
    assert any(not np.array_equal(o, image) for o in others)  # flips or crops happen
    # A flip without a crop is the mirror image: the content is kept, not replaced.
    flipped = [o for o in others if np.array_equal(o, image[:, ::-1])]
    unchanged = [o for o in others if np.array_equal(o, image)]
    assert len(flipped) + len(unchanged) < len(others)  # most draws crop as well


def test_training_batches_are_a_pure_function_of_seed_epoch_and_step(tmp_path: Path):
    from featurekit.training.batches import ImageBatches

    root = make_image_folder(tmp_path / "faces", per_class=5, size=32)
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    labels = np.array([p.startswith("fake") for p in paths], np.float32)

    def batches(epoch: int, order: list[int], **options) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        dataset = ImageBatches(root, paths, labels, 32, batch_size=4, train=True, seed=3, workers=2, **options)
        try:
            dataset.set_epoch(epoch)
            return {index: dataset[index] for index in order}
        finally:
            dataset.close()

    first = batches(1, [0, 1, 2])
    again = batches(1, [2, 0, 1])  # another call order (a resumed run, Keras peeking ahead): the same batches
    for index in range(3):
        np.testing.assert_array_equal(first[index][0], again[index][0])
        np.testing.assert_array_equal(first[index][1], again[index][1])
    assert all(images.shape == (4, 32, 32, 3) and images.dtype == np.float32 for images, _ in first.values())
    # 10 images, batches of 4: 3 steps, the last one filled by wrapping around; every image is seen.
    seen = np.concatenate([labels_ for _, labels_ in first.values()])
    assert len(seen) == 12 and seen.sum() >= 5
    other_epoch = batches(2, [0])
    assert not np.array_equal(other_epoch[0][0], first[0][0])  # each epoch reshuffles and re-augments
    plain = batches(1, [0, 1, 2], augment=False)
    decoded = {p: load_image(root / p, 32).astype(np.float32) for p in paths}
    for images, _ in plain.values():  # without augmentation every row is one decoded image, unchanged
        assert all(any(np.array_equal(row, image) for image in decoded.values()) for row in images)


def test_validation_batches_are_one_ordered_pass(tmp_path: Path):
    from featurekit.training.batches import ImageBatches

    root = make_image_folder(tmp_path / "faces", per_class=3, size=32)
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    dataset = ImageBatches(root, paths, np.arange(6, dtype=np.float32), 32, batch_size=4, train=False)
    try:
        assert len(dataset) == 2
        images = np.concatenate([dataset[0][0], dataset[1][0]])
        np.testing.assert_array_equal(np.concatenate([dataset[0][1], dataset[1][1]]), np.arange(6))
        np.testing.assert_array_equal(images, np.stack([load_image(root / p, 32) for p in paths]).astype(np.float32))
        with pytest.raises(IndexError):
            dataset[2]
    finally:
        dataset.close()
