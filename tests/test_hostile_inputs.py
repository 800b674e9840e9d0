"""Hostile inputs through the real entry points (`extract` on test_tiny, `predict`): no crash, no silent loss.

Each case once crashed a run (and every rerun), wrote through a planted link, or finished a cache with rows
missing. Permissions are simulated with monkeypatched PermissionErrors so the tests also hold as root (CI).
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder, write_image
from conftest import extract_tiny as _extract  # the tests' shorthand
from featurekit.data import printable_path
from featurekit.cache import PartialCache, open_cache
from featurekit.errors import FeaturekitError
from featurekit.extraction.extract import extract


def _bomb(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A few bytes of PNG whose header declares 20000 x 20000 pixels (1.2 GB decoded)."""
    from test_data import _png_declaring

    return _png_declaring(path, width, height)


def _not_utf8(directory: Path, source: Path) -> Path:
    """A copy of `source` named caf\\xe9.png (Latin-1 bytes, not UTF-8)."""
    raw = os.fsencode(directory) + b"/caf\xe9.png"
    with open(raw, "wb") as handle:
        handle.write(source.read_bytes())
    return Path(os.fsdecode(raw))


def _unreadable(monkeypatch, name: str) -> None:
    """Files called `name` raise PermissionError when read (hashing in the scan, opening in the decoder)."""
    import featurekit.data as data

    real_hash, real_open = data.file_sha256, open

    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(data, "file_sha256", lambda path, *a: refuse(path) if Path(path).name == name else real_hash(path, *a))
    monkeypatch.setattr(data, "open", lambda path, *a: refuse(path) if Path(path).name == name else real_open(path, *a),
                        raising=False)  # the decoder's `open` (the builtin elsewhere)


def _same_cache(a: Path, b: Path) -> None:
    with open_cache(a) as x, open_cache(b) as y:
        assert x.paths == y.paths and list(x.splits) == list(y.splits) and x.sha256 == y.sha256
        np.testing.assert_array_equal(x.labels, y.labels)
        np.testing.assert_array_equal(x.load()[0], y.load()[0])


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(image_folder: Path, tmp_path: Path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "x.h5.lock").symlink_to(victim)
    with pytest.raises(FeaturekitError, match="lock file is a symbolic link"):
        _extract(image_folder, tmp_path / "cache" / "x.h5")
    assert victim.read_text() == "precious"
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["x.h5.lock"]


def test_hostile_files_are_skipped_or_ignored_never_a_crash(image_folder: Path, tmp_path: Path, monkeypatch):
    _bomb(image_folder / "fake" / "bomb.png")
    _not_utf8(image_folder / "real", image_folder / "real" / "img_00.png")
    shutil.copy(image_folder / "real" / "img_01.png", image_folder / "real" / "locked.png")
    _unreadable(monkeypatch, "locked.png")
    (image_folder / "real" / "more").symlink_to(make_image_folder(tmp_path / "elsewhere", per_class=1) / "real")
    (image_folder / "fake" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    write_image(image_folder / "Fake" / "extra.png", seed=3)  # "Fake" is the same class as "fake"
    cache = tmp_path / "c.h5"
    result = _extract(image_folder, cache)
    assert result.n_images == 26 and result.skipped == [  # real/more/img_00.png read through the link
        ("fake/bomb.png", "image too large to decode safely: 400,000,000 pixels, more than `max_pixels` 64,000,000 "
                          "(raise it to read this file)")]
    assert dict(result.unsupported) == {
        "fake/gone.png": f"dangling symbolic link (to {tmp_path / 'nowhere.png'})",
        "real/caf\\xe9.png": "file name is not valid UTF-8 (rename the file)",
        "real/locked.png": "cannot read the file: permission denied",
    }
    with open_cache(cache) as finished:
        assert finished.ignored == result.unsupported and finished.skipped == result.skipped
        assert "Fake/extra.png" in finished.paths and finished.labels[finished.paths.index("Fake/extra.png")] == 1
        assert finished.class_names == ["real", "Fake"]  # one class; the first spelling in sorted order names it
    assert _extract(image_folder, cache).status == "up-to-date"  # and every rerun works too


def test_mixed_case_class_folders_make_the_fake_class_positive(tmp_path: Path):
    data = make_image_folder(tmp_path / "d", per_class=4, classes=("Real", "FAKE"))
    result = _extract(data, tmp_path / "c.h5")
    with open_cache(result.cache_path) as cache:
        assert cache.class_names == ["Real", "FAKE"] and cache.positive_class == "FAKE"
        assert all(label == path.startswith("FAKE/") for label, path in zip(cache.labels, cache.paths))


def _fail_sink_writes(monkeypatch, name_prefix: str, number: int) -> None:
    """Writes of new files whose name starts with `name_prefix` fail with `number` (ENOSPC, EACCES, EROFS)."""
    from featurekit.fsutil import NewFileSink

    real_write = NewFileSink.write

    def write(self, data):
        if self.path.name.startswith(name_prefix) and self.failure is None:
            self.failure = OSError(number, os.strerror(number))
        return real_write(self, data)

    monkeypatch.setattr(NewFileSink, "write", write)


@pytest.mark.parametrize("number,problem", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "the file system is read-only"),
                                            (errno.EACCES, "permission denied")])
def test_a_failing_disk_during_batches_is_a_clear_error_and_the_rerun_resumes(
        image_folder: Path, tmp_path: Path, monkeypatch, number: int, problem: str):
    cache = tmp_path / "c.h5"
    with monkeypatch.context() as patch:
        _fail_sink_writes(patch, ".batch-0000003.h5", number)
        with pytest.raises(FeaturekitError, match=rf"Could not write batch 3 of the cache: {problem}.*resumes"):
            _extract(image_folder, cache)
    done = PartialCache(cache).done_batches()
    assert 3 not in done and {0, 1, 2} <= done and not cache.exists()
    resumed = _extract(image_folder, cache)
    assert resumed.status == "resumed" and resumed.n_computed == 24 - 4 * len(done)
    _same_cache(cache, _extract(image_folder, tmp_path / "whole.h5").cache_path)


def test_a_full_disk_during_the_merge_keeps_every_batch(image_folder: Path, tmp_path: Path, monkeypatch):
    cache = tmp_path / "c.h5"
    with monkeypatch.context() as patch:
        _fail_sink_writes(patch, ".c.h5.tmp-", errno.ENOSPC)
        with pytest.raises(FeaturekitError, match="Could not write the finished cache: the disk is full"):
            _extract(image_folder, cache)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5.partial", "faces"]
    messages: list[str] = []
    resumed = _extract(image_folder, cache, log=messages.append)
    assert messages == [f"Resuming {cache}: 6 of 6 batches already done."] and resumed.n_computed == 0
    _same_cache(cache, _extract(image_folder, tmp_path / "whole.h5").cache_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="runs as root, which ignores file permissions; the EACCES case of "
                    "test_a_failing_disk_during_batches_is_a_clear_error_and_the_rerun_resumes simulates it")
def test_a_read_only_cache_folder_is_a_clear_error(image_folder: Path, tmp_path: Path):
    folder = tmp_path / "cache"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(FeaturekitError, match="permission denied"):
            _extract(image_folder, folder / "c.h5")
    finally:
        folder.chmod(0o755)


def test_a_cache_path_under_a_regular_file_is_a_clear_error(image_folder: Path, tmp_path: Path):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("mine")
    with pytest.raises(FeaturekitError, match="Could not create the cache folder: a file is in the way"):
        _extract(image_folder, blocker / "c.h5")
    assert blocker.read_text() == "mine"


def test_batches_deleted_while_the_run_goes_on_are_named_and_only_they_recomputed(
        image_folder: Path, tmp_path: Path, monkeypatch):
    cache = tmp_path / "c.h5"
    real_write = PartialCache.write_batch

    def write_and_delete_an_earlier_one(self, index, *args, **kwargs):
        real_write(self, index, *args, **kwargs)
        if index == 4:
            self.batch_path(1).unlink()  # someone cleans up the folder while the run goes on

    with monkeypatch.context() as patch:
        patch.setattr(PartialCache, "write_batch", write_and_delete_an_earlier_one)
        with pytest.raises(FeaturekitError, match=r"batch 1 is missing.*recomputes only those batches"):
            _extract(image_folder, cache)
    assert not cache.exists()
    messages: list[str] = []
    resumed = _extract(image_folder, cache, log=messages.append)
    assert messages == [f"Resuming {cache}: 5 of 6 batches already done."] and resumed.n_computed == 4
    _same_cache(cache, _extract(image_folder, tmp_path / "whole.h5").cache_path)


def test_a_cache_with_rows_missing_is_refused_not_called_up_to_date(image_folder: Path, tmp_path: Path):
    import h5py

    cache = _extract(image_folder, tmp_path / "c.h5").cache_path
    with h5py.File(cache, "r+") as f:
        f["features"].resize((20, f["features"].shape[1]))
    with pytest.raises(FeaturekitError, match="damaged: features has 20 rows but labels has 24"):
        _extract(image_folder, cache)
    assert _extract(image_folder, cache, overwrite=True).n_images == 24


# --- predict lists the same files as error rows ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted_model(tmp_path_factory):
    from featurekit.evaluation.fitting import fit_probe

    root = tmp_path_factory.mktemp("hostile_predict")
    data = make_image_folder(root / "faces", per_class=20)
    result = extract(data, "test_tiny", pooling="meanstd", cache=root / "c.h5", progress=False, log=lambda m: None)
    return fit_probe(result.cache_path, "logreg", runs_dir=root / "runs", log=lambda m: None), data


def test_predict_lists_hostile_files_as_error_rows(fitted_model, tmp_path: Path, monkeypatch):
    from featurekit.predict import predict

    fitted, data = fitted_model
    good = shutil.copy(data / "fake" / "img_00.png", tmp_path / "good.png")
    locked = shutil.copy(data / "real" / "img_00.png", tmp_path / "locked.png")
    _unreadable(monkeypatch, "locked.png")
    (tmp_path / "folder.png").mkdir()
    inputs = [Path(good), _bomb(tmp_path / "bomb.png"), _not_utf8(tmp_path, Path(good)), Path(locked)]
    rows = predict(fitted.directory, inputs)
    # Rows carry printable names: a name that is not UTF-8 is shown with escapes, so JSON and tables can hold it.
    assert [row["path"] for row in rows] == [printable_path(str(path)) for path in inputs]
    assert rows[2]["path"].endswith("caf\\xe9.png")
    assert rows[0]["p_fake"] is not None and "error" not in rows[0]
    assert [row.get("error") for row in rows[1:]] == [
        "image too large to decode safely: 400,000,000 pixels, more than `max_pixels` 64,000,000 (raise it to read this file)",
        "file name is not valid UTF-8 (rename the file)",
        "cannot read the file: permission denied",  # the reason extract lists for it too
    ]
    assert all(row["p_fake"] is None for row in rows[1:])


def test_a_data_folder_whose_name_is_not_utf8_still_extracts(tmp_path: Path):
    root = Path(os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9"))
    make_image_folder(root, per_class=3)
    result = extract(root, "test_tiny", pooling="avg", cache_dir=tmp_path / "cache", progress=False, log=lambda m: None)
    with open_cache(result.cache_path) as cache:
        assert cache.n_rows == 6 and cache.attrs["data_root"].endswith("/caf\\xe9")
