from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from featurekit.cache import PartialCache, default_cache_path, finalize_cache, open_cache, rows_per_chunk, writer_lock
from featurekit.data import Sample
from featurekit.errors import FeaturekitError

REQUIRED_DATASETS = ("features", "labels", "paths", "splits", "sha256", "skipped_paths", "skipped_reasons")
REQUIRED_ATTRS = ("backbone", "weights", "weights_sha256", "layer", "pooling", "image_size", "preprocessing",
                  "class_names", "complete", "versions", "created_utc", "config")


def _samples(n: int) -> list[Sample]:
    splits = ["train"] * (n - 4) + ["valid", "valid", "test", "test"]
    return [Sample(f"c/{i:03d}.png", i % 2, splits[i], f"{i:064x}") for i in range(n)]


def _attrs(feature_dim: int) -> dict:
    return dict(backbone="test_tiny", weights="none", weights_label="random-init (seed 0)", weights_sha256="",
                random_features=True, layer="pool2", pooling="avg", image_size=32, preprocessing="tf",
                feature_dim=feature_dim, dtype="float32", data_fingerprint="abc", class_names=["real", "fake"],
                versions={"numpy": np.__version__}, config={"pooling": "avg"}, created_utc="2026-01-01T00:00:00+00:00")


def _build(tmp_path: Path, n: int = 23, d: int = 5, batch: int = 4, skip: tuple[int, ...] = (7,)) -> tuple[Path, np.ndarray]:
    cache_path = tmp_path / "c.h5"
    partial = PartialCache(cache_path)
    partial.start({"n_batches": -(-n // batch)})
    features = np.arange(n * d, dtype=np.float32).reshape(n, d)
    for b in range(-(-n // batch)):
        rows = np.arange(b * batch, min(n, (b + 1) * batch))
        keep = np.array([r not in skip for r in rows])
        partial.write_batch(b, rows[keep], features[rows[keep]], rows[~keep], ["corrupt"] * int((~keep).sum()), "float32")
    finalize_cache(partial, _samples(n), _attrs(d))
    return cache_path, features


def test_finished_cache_has_the_required_names(tmp_path: Path):
    path, features = _build(tmp_path)
    with h5py.File(path) as f:
        assert all(name in f for name in REQUIRED_DATASETS)
        assert all(name in f.attrs for name in REQUIRED_ATTRS)
        assert f["features"].maxshape == (None, 5) and f["features"].chunks is not None
    assert not PartialCache(path).directory.exists()


def test_reader_returns_rows_in_sample_order_without_skipped(tmp_path: Path):
    path, features = _build(tmp_path)
    with open_cache(path) as cache:
        assert cache.n_rows == 22 and cache.skipped == [("c/007.png", "corrupt")]
        assert "c/007.png" not in cache.paths
        x, y = cache.load()
        np.testing.assert_array_equal(x, np.delete(features, 7, axis=0))
        x_test, y_test = cache.load("test")
        assert x_test.shape == (2, 5) and list(y_test) == [1, 0]  # rows 21 and 22
        assert cache.class_names == ["real", "fake"] and cache.attrs["config"] == {"pooling": "avg"}
        assert len(cache.fingerprint) == 16


def test_streamed_batches_cover_the_split_once_with_shuffling(tmp_path: Path):
    path, _ = _build(tmp_path, n=200, d=3, batch=16, skip=())
    with open_cache(path) as cache:
        x_all, _ = cache.load("train")
        streamed = list(cache.iter_batches("train", 7, shuffle=True, seed=1))
        assert max(len(x) for x, _ in streamed) == 7
        rows = np.concatenate([x for x, _ in streamed])
        assert sorted(map(tuple, rows)) == sorted(map(tuple, x_all))
        again = np.concatenate([x for x, _ in cache.iter_batches("train", 7, shuffle=True, seed=1)])
        np.testing.assert_array_equal(rows, again)


def test_chunks_hold_about_a_mebibyte():
    assert rows_per_chunk(25088, 4, 100_000) == 10
    assert rows_per_chunk(512, 4, 100_000) == 512
    assert rows_per_chunk(512, 4, 3) == 3


def test_default_cache_name(tmp_path: Path):
    assert default_cache_path(tmp_path / "real_vs_fake", "vgg16", None, "flatten", 224).as_posix() == \
        "cache/real_vs_fake-vgg16-flatten-224.h5"
    assert default_cache_path("x/faces", "vgg16", "block2_pool", "meanstd", 256, "c", tag="rescale").name == \
        "faces-vgg16-block2_pool-meanstd-256-rescale.h5"


def test_incomplete_cache_is_refused_with_the_command_to_finish(tmp_path: Path):
    cache_path = tmp_path / "c.h5"
    partial = PartialCache(cache_path)
    partial.start({"n_batches": 3, "command": "python cli.py extract --backbone vgg16"})
    with pytest.raises(FeaturekitError, match="incomplete.*Re-run"):
        open_cache(cache_path)


def test_missing_and_foreign_files_are_refused(tmp_path: Path):
    with pytest.raises(FeaturekitError, match="not found"):
        open_cache(tmp_path / "nope.h5")
    (tmp_path / "x.h5").write_bytes(b"garbage")
    with pytest.raises(FeaturekitError, match="Not a readable HDF5"):
        open_cache(tmp_path / "x.h5")
    with h5py.File(tmp_path / "y.h5", "w") as f:
        f["data"] = [1]
    with pytest.raises(FeaturekitError, match="Not a featurekit cache"):
        open_cache(tmp_path / "y.h5")


def test_split_requirements(tmp_path: Path):
    path, _ = _build(tmp_path, n=23)
    with open_cache(path) as cache:
        cache.require_splits()
        with pytest.raises(FeaturekitError, match="no 'holdout' split"):
            cache.require_splits(("holdout",))


def test_lock_refuses_a_second_writer(tmp_path: Path):
    with writer_lock(tmp_path / "c.h5"):
        with pytest.raises(FeaturekitError, match="Another process"):
            with writer_lock(tmp_path / "c.h5"):
                pass
    with writer_lock(tmp_path / "c.h5"):  # released after use
        pass


def test_lock_file_is_removed_on_release(tmp_path: Path):
    with writer_lock(tmp_path / "c.h5"):
        assert (tmp_path / "c.h5.lock").read_text() == f"pid {__import__('os').getpid()}"
    assert not (tmp_path / "c.h5.lock").exists()
