from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from featurekit.cache import PartialCache, default_cache_path, finalize_cache, open_cache, writer_lock
from featurekit.cache.format import rows_per_chunk
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
        x_all, y_all = cache.load("train")
        streamed = list(cache.iter_batches("train", 7, shuffle=True, seed=1))
        assert max(len(x) for x, _ in streamed) == 7
        rows = np.concatenate([x for x, _ in streamed])
        labels = np.concatenate([y for _, y in streamed])
        assert sorted(map(tuple, rows)) == sorted(map(tuple, x_all))
        assert not np.array_equal(rows, x_all)  # shuffled
        # Each streamed row keeps its own label: row i holds features 3i..3i+2 and label i % 2 (see _samples).
        np.testing.assert_array_equal(labels, (rows[:, 0] // 3).astype(int) % 2)
        np.testing.assert_array_equal(y_all, (x_all[:, 0] // 3).astype(int) % 2)
        again = list(cache.iter_batches("train", 7, shuffle=True, seed=1))
        np.testing.assert_array_equal(rows, np.concatenate([x for x, _ in again]))
        np.testing.assert_array_equal(labels, np.concatenate([y for _, y in again]))


def test_merge_reports_a_pure_gap_between_batches(tmp_path: Path):
    """Batch 0 holds rows 0-3 and batch 1 rows 5-7, and no batch is damaged: row 4 is in none (16.18)."""
    partial = PartialCache(tmp_path / "c.h5")
    partial.start({"n_batches": 2})
    partial.write_batch(0, np.arange(0, 4), np.ones((4, 2)), np.array([], int), [], "float32")
    partial.write_batch(1, np.arange(5, 8), np.ones((3, 2)), np.array([], int), [], "float32")
    with pytest.raises(FeaturekitError, match=r"Cannot finish cache .*: rows 4 are in no batch\. Nothing was written"):
        finalize_cache(partial, _samples(8), _attrs(2))
    assert not (tmp_path / "c.h5").exists() and partial.done_batches() == {0, 1}


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


# --- Hostile and failing storage: no write through links, verified merges, clear errors ---------------------


def _batches(tmp_path: Path, n: int = 23, d: int = 5, batch: int = 4, skip: tuple[int, ...] = (7,)):
    """The finished batches of an extraction, as extract writes them (request with batch size and count)."""
    cache_path = tmp_path / "c.h5"
    partial = PartialCache(cache_path)
    n_batches = -(-n // batch)
    partial.start({"n_batches": n_batches, "batch_size": batch, "n_samples": n})
    features = np.arange(n * d, dtype=np.float32).reshape(n, d)
    for b in range(n_batches):
        rows = np.arange(b * batch, min(n, (b + 1) * batch))
        keep = np.array([r not in skip for r in rows])
        partial.write_batch(b, rows[keep], features[rows[keep]], rows[~keep], ["corrupt"] * int((~keep).sum()), "float32")
    return partial, features


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    return victim


def test_batch_and_request_files_never_write_through_planted_links(tmp_path: Path):
    victim = _victim(tmp_path)
    partial = PartialCache(tmp_path / "c.h5")
    partial.directory.mkdir()
    # The names the writer used to write through: predictable temporaries, and the final names.
    (partial.directory / "request.json.tmp").symlink_to(victim)
    (partial.directory / "batch-0000000.tmp").symlink_to(victim)
    (partial.directory / "batch-0000001.h5").symlink_to(victim)
    partial.start({"n_batches": 2, "batch_size": 2, "n_samples": 4})
    partial.write_batch(0, np.arange(2), np.ones((2, 3)), np.array([], int), [], "float32")
    partial.write_batch(1, np.arange(2, 4), np.ones((2, 3)), np.array([], int), [], "float32")
    assert victim.read_text() == "precious"
    assert not (partial.directory / "batch-0000001.h5").is_symlink() and partial.done_batches() == {0, 1}
    leftovers = [p.name for p in partial.directory.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_merge_never_writes_through_a_planted_link(tmp_path: Path):
    victim = _victim(tmp_path)
    partial, _ = _batches(tmp_path)
    (tmp_path / "c.h5.tmp").symlink_to(victim)  # the merge's old, predictable temporary name
    finalize_cache(partial, _samples(23), _attrs(5))
    assert victim.read_text() == "precious"
    with open_cache(tmp_path / "c.h5") as cache:
        assert cache.n_rows == 22


def test_symlinked_batch_folder_is_refused(tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "c.h5.partial").symlink_to(elsewhere)
    with pytest.raises(FeaturekitError, match="symbolic link"):
        PartialCache(tmp_path / "c.h5").start({"n_batches": 1})
    assert list(elsewhere.iterdir()) == []


def test_merge_refuses_when_a_batch_was_deleted_and_names_it(tmp_path: Path):
    partial, _ = _batches(tmp_path)
    partial.batch_path(2).unlink()
    partial.batch_path(4).unlink()
    with pytest.raises(FeaturekitError, match=r"batches 2, 4 are missing.*Run the same command again") as error:
        finalize_cache(partial, _samples(23), _attrs(5))
    assert "Nothing was written" in str(error.value)
    assert not (tmp_path / "c.h5").exists()
    assert partial.done_batches() == {0, 1, 3, 5}  # the rest is kept for the rerun
    assert [p.name for p in tmp_path.iterdir()] == ["c.h5.partial"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong-slice", "foreign-hdf5"])
def test_damaged_batch_files_are_not_trusted(tmp_path: Path, damage: str):
    partial, _ = _batches(tmp_path)
    target = partial.batch_path(3)
    if damage == "garbage":
        target.write_bytes(b"not hdf5 at all")
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:700])
    elif damage == "wrong-slice":  # batch 1's file copied over batch 3: rows 4-7 where 12-15 belong
        target.write_bytes(partial.batch_path(1).read_bytes())
    else:
        target.unlink()
        with h5py.File(target, "w") as f:
            f["data"] = [1, 2, 3]
    (partial.directory / "batch-12.h5").write_bytes(b"x")  # a name that is not ours is ignored, not a crash
    assert partial.done_batches() == {0, 1, 2, 4, 5}  # so the next run recomputes batch 3
    with pytest.raises(FeaturekitError, match=r"batch 3 was damaged and removed") as error:
        finalize_cache(partial, _samples(23), _attrs(5))
    assert not target.exists() and not (tmp_path / "c.h5").exists()
    assert "recomputes only those batches" in str(error.value)


def test_merge_notices_damaged_feature_bytes_by_checksum(tmp_path: Path):
    partial, _ = _batches(tmp_path)
    target = partial.batch_path(2)
    with h5py.File(target, "r") as f:
        offset = f["features"].id.get_chunk_info(0).byte_offset
    data = bytearray(target.read_bytes())
    data[offset + 3] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(FeaturekitError, match="batch 2 is damaged"):
        finalize_cache(partial, _samples(23), _attrs(5))
    assert not target.exists() and not (tmp_path / "c.h5").exists()
    assert partial.done_batches() == {0, 1, 3, 4, 5}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_merge_without_batch_layout_still_checks_coverage(tmp_path: Path):
    """Callers that record only the batch count (make_cache in the tests) get the coverage check too."""
    partial = PartialCache(tmp_path / "c.h5")
    partial.start({"n_batches": 2})
    partial.write_batch(0, np.arange(0, 4), np.ones((4, 2)), np.array([], int), [], "float32")
    partial.write_batch(1, np.arange(3, 6), np.ones((3, 2)), np.array([], int), [], "float32")
    samples = _samples(8)
    with pytest.raises(FeaturekitError, match=r"rows 3 are in more than one batch"):
        finalize_cache(partial, samples, _attrs(2))


def test_stale_merge_temporaries_of_killed_runs_are_removed(tmp_path: Path):
    partial, _ = _batches(tmp_path)
    stale = tmp_path / ".c.h5.tmp-999999-deadbeef"
    stale.write_bytes(b"half a cache")
    other = tmp_path / ".d.h5.tmp-999999-deadbeef"
    other.write_bytes(b"another cache's")
    finalize_cache(partial, _samples(23), _attrs(5))
    assert not stale.exists() and other.exists()


def _fail_writes(monkeypatch, after_bytes: int, number: int = __import__("errno").ENOSPC):
    """os.pwrite (what HDF5 files are written with) fails like a full disk once `after_bytes` were written."""
    import os

    real = os.pwrite
    written = [0]

    def pwrite(fd, data, offset):
        if written[0] + len(data) > after_bytes:
            raise OSError(number, os.strerror(number))
        written[0] += len(data)
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)


@pytest.mark.parametrize("after_bytes", [0, 3000, 40_000])
def test_full_disk_during_the_merge_is_a_clear_error_and_the_batches_stay(tmp_path: Path, monkeypatch, after_bytes):
    partial, features = _batches(tmp_path, n=200, d=64, batch=16, skip=())
    with monkeypatch.context() as patch:
        _fail_writes(patch, after_bytes)
        with pytest.raises(FeaturekitError, match=r"Could not write the finished cache: the disk is full.*resumes"):
            finalize_cache(partial, _samples(200), _attrs(64))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5.partial"]  # no cache, no temporary
    assert partial.done_batches() == set(range(13))
    finalize_cache(partial, _samples(200), _attrs(64))  # space freed: the same batches finish the cache
    with open_cache(tmp_path / "c.h5") as cache:
        np.testing.assert_array_equal(cache.load()[0], features)


def test_full_disk_while_writing_a_batch_is_a_clear_error(tmp_path: Path, monkeypatch):
    partial, _ = _batches(tmp_path)
    with monkeypatch.context() as patch:
        _fail_writes(patch, 1000)
        with pytest.raises(FeaturekitError, match=r"Could not write batch 6 of the cache: the disk is full") as error:
            partial.write_batch(6, np.arange(24, 28), np.ones((4, 5)), np.array([], int), [], "float32")
    assert "resumes where it stopped" in str(error.value)
    assert partial.done_batches() == set(range(6))
    assert not [p for p in partial.directory.iterdir() if p.name.startswith(".")]


def test_read_only_folder_is_a_clear_error(tmp_path: Path, monkeypatch):
    """A PermissionError as a read-only folder gives it (simulated, so it runs as root too)."""
    import errno

    import featurekit.fsutil as fsutil

    partial, _ = _batches(tmp_path)

    def refuse(path, readable=False):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(fsutil, "open_new_file", refuse)
    with pytest.raises(FeaturekitError, match=r"Could not write batch 6 of the cache: permission denied"):
        partial.write_batch(6, np.arange(24, 28), np.ones((4, 5)), np.array([], int), [], "float32")
    with pytest.raises(FeaturekitError, match=r"Could not write the finished cache: permission denied.*writable"):
        finalize_cache(partial, _samples(23), _attrs(5))
    assert partial.done_batches() == set(range(6)) and not (tmp_path / "c.h5").exists()


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="runs as root, which ignores file permissions; "
                    "test_read_only_folder_is_a_clear_error simulates the same PermissionError")
def test_read_only_folder_by_permissions(tmp_path: Path):
    partial, _ = _batches(tmp_path)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(FeaturekitError, match="permission denied"):
            finalize_cache(partial, _samples(23), _attrs(5))
    finally:
        tmp_path.chmod(0o755)
    assert partial.done_batches() == set(range(6)) and not (tmp_path / "c.h5").exists()


def test_lock_under_a_regular_file_is_a_clear_error(tmp_path: Path):
    (tmp_path / "file.txt").write_text("x")
    for cache_path in (tmp_path / "file.txt" / "c.h5", tmp_path / "file.txt" / "sub" / "c.h5"):
        with pytest.raises(FeaturekitError, match="Could not create the cache folder: a (file is in the way|part of the path is a file)"):
            with writer_lock(cache_path):
                pass
    assert (tmp_path / "file.txt").read_text() == "x"


def test_symlinked_lock_is_refused(tmp_path: Path):
    victim = _victim(tmp_path)
    (tmp_path / "c.h5.lock").symlink_to(victim)
    with pytest.raises(FeaturekitError, match="lock file is a symbolic link"):
        with writer_lock(tmp_path / "c.h5"):
            pass
    assert victim.read_text() == "precious"


def _rewrite(path: Path, edit) -> None:
    with h5py.File(path, "r+") as f:
        edit(f)


@pytest.mark.parametrize("damage,message", [
    (lambda f: f["features"].resize((18, 5)), r"features has 18 rows but labels has 22 rows, paths has 22 rows"),
    (lambda f: f.__delitem__("sha256"), r"datasets \['sha256'\] are missing"),
    (lambda f: f.attrs.__setitem__("n_samples", 30), r"22 rows and 1 skipped files, but was made from 30 images"),
    (lambda f: f.attrs.__setitem__("schema_version", 99), r"newer featurekit.*Upgrade featurekit"),
    (lambda f: f.attrs.__delitem__("schema_version"), r"no schema_version"),
    (lambda f: f.attrs.__setitem__("schema_version", "two"), r"schema_version 'two' is not a version number"),
    (lambda f: f.attrs.__setitem__("config", "{not json"), r"damaged: its attributes cannot be read"),
])
def test_reader_refuses_damaged_or_newer_caches(tmp_path: Path, damage, message):
    path, _ = _build(tmp_path)
    _rewrite(path, damage)
    with pytest.raises(FeaturekitError, match=message):
        open_cache(path)


def test_reader_reads_schema_version_1_caches(tmp_path: Path):
    path, features = _build(tmp_path)

    def as_version_1(f):
        f.attrs["schema_version"] = 1
        for name in ("n_samples", "positive_class"):
            del f.attrs[name]
        del f["ignored_paths"], f["ignored_reasons"]

    _rewrite(path, as_version_1)
    with open_cache(path) as cache:
        assert cache.n_rows == 22 and cache.positive_class == "fake" and cache.ignored == []


def test_cache_records_positive_class_and_ignored_files(tmp_path: Path):
    partial, _ = _batches(tmp_path)
    attrs = {**_attrs(5), "class_names": ["Cat", "dog"]}
    finalize_cache(partial, _samples(23), attrs, ignored=[("c/link", "symbolic link to a folder: not followed")])
    with open_cache(tmp_path / "c.h5") as cache:
        assert cache.positive_class == "dog" and cache.attrs["positive_class"] == "dog"
        assert cache.ignored == [("c/link", "symbolic link to a folder: not followed")]
        assert cache.attrs["n_samples"] == 23 and cache.attrs["schema_version"] == 2


_MERGE_ON_A_FULL_DISK = """
import sys
import numpy as np
sys.path.insert(0, "tests")
import featurekit.cache.merge as cache
from featurekit.errors import FeaturekitError
from test_cache import _attrs, _samples

cache._refuse_when_short_of_space = lambda path, needed: None  # let HDF5 itself hit the full disk
partial = cache.PartialCache(sys.argv[1])
n, d = 400, 512
partial.start({"n_batches": n // 50, "batch_size": 50, "n_samples": n})
for b in range(n // 50):
    rows = np.arange(b * 50, (b + 1) * 50)
    partial.write_batch(b, rows, np.random.default_rng(b).normal(size=(50, d)), np.array([], int), [], "float32")
try:
    cache.finalize_cache(partial, _samples(n), _attrs(d))
except FeaturekitError as error:
    print("clean error:", error)
"""


def test_real_full_disk_during_the_merge_ends_in_a_clear_error_not_a_crash(tmp_path: Path):
    """On a real, tiny file system (HDF5 itself hits ENOSPC): the process used to crash at exit (code 139)."""
    import os
    import subprocess
    import sys

    from conftest import REPO

    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    # 400 x 512 float32 = 800 KiB of batches, plus as much again for the merge: 1.2 MiB fit the first only.
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(mount_point)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root and permission to mount a small tmpfs (containers without CAP_SYS_ADMIN lack it); "
                    "test_full_disk_during_the_merge_is_a_clear_error_and_the_batches_stay simulates ENOSPC")
    try:
        done = subprocess.run([sys.executable, "-c", _MERGE_ON_A_FULL_DISK, str(mount_point / "c.h5")], cwd=REPO,
                              capture_output=True, text=True, timeout=120)
        remaining = sorted(p.name for p in mount_point.iterdir())
        batches = sorted(p.name for p in (mount_point / "c.h5.partial").iterdir())
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "clean error: Could not write the finished cache: the disk is full" in done.stdout
    assert remaining == ["c.h5.partial"]
    assert len([b for b in batches if b.startswith("batch-")]) == 8


# --- Lock files featurekit did not make are never written (issue 16 item 17) -------------------------------------


def _hard_link(victim: Path, lock: Path) -> None:
    import os

    os.link(victim, lock)


def _fifo(victim: Path, lock: Path) -> None:
    import os

    os.mkfifo(lock)


def _foreign_owner(victim: Path, lock: Path) -> None:
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root to give the lock file to another user")
    lock.write_text("pid 1")
    os.chown(lock, 54321, 54321)


@pytest.mark.parametrize("plant, problem", [
    (_hard_link, r"lock file was not made by featurekit: it has 2 hard links"),
    (_fifo, r"lock file was not made by featurekit: it is not a regular file"),
    (_foreign_owner, r"lock file was not made by featurekit: another user owns it"),
])
def test_a_lock_file_featurekit_did_not_make_is_refused_and_never_written(tmp_path: Path, plant, problem):
    victim = _victim(tmp_path)
    lock = tmp_path / "c.h5.lock"
    plant(victim, lock)
    before = lock.lstat()
    with pytest.raises(FeaturekitError, match=problem):
        with writer_lock(tmp_path / "c.h5"):
            pass
    assert victim.read_text() == "precious"
    after = lock.lstat()  # still there, untouched: it is not ours to remove
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


def test_a_cache_still_being_extracted_is_reported_in_progress_not_stopped(tmp_path: Path):
    """compare/open while another extraction holds the lock: "in progress", not "stopped ... re-run" (16.15)."""
    from featurekit.evaluation.compare import compare

    cache_path = tmp_path / "c.h5"
    partial = PartialCache(cache_path)
    with writer_lock(cache_path):
        partial.start({"n_batches": 200, "batch_size": 4, "n_samples": 800, "command": "python cli.py extract ..."})
        for b in range(41):
            partial.write_batch(b, np.arange(4 * b, 4 * b + 4), np.ones((4, 3)), np.array([], int), [], "float32")
        for opening in (lambda: open_cache(cache_path), lambda: compare([cache_path], ["logreg"], n_boot=0,
                                                                         runs_dir=tmp_path / "runs", log=print)):
            with pytest.raises(FeaturekitError, match=r"still being extracted: another process \(pid \d+\) is writing "
                                                      r"it right now \(41 of 200 batches done so far\)") as error:
                opening()
            assert "stopped" not in str(error.value) and "Re-run" not in str(error.value)
    assert (tmp_path / "c.h5.lock").exists() is False
    with pytest.raises(FeaturekitError, match=r"incomplete: its extraction stopped after 41 of 200 batches.*Re-run"):
        open_cache(cache_path)
