"""The shared safe-file primitives: no write through symlinks, atomic replacement, one lock."""

from __future__ import annotations

import os

import pytest

from featurekit.errors import FeaturekitError
from featurekit.fsutil import atomic_write_bytes, exclusive_lock, replace_directory


def _lock(path):
    return exclusive_lock(path, "held by {holder}", received=str(path), fix="wait")


def test_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock = tmp_path / "x.h5.lock"
    lock.symlink_to(victim)
    with pytest.raises(FeaturekitError, match="symbolic link"):
        with _lock(lock):
            pass
    assert victim.read_text() == "precious"


def test_second_holder_is_refused_and_lock_file_removed_on_release(tmp_path):
    lock = tmp_path / "a.lock"
    with _lock(lock):
        assert lock.read_text().startswith("pid ")
        with pytest.raises(FeaturekitError, match=f"held by pid {os.getpid()}"):
            with _lock(lock):
                pass
    assert not lock.exists()


def test_atomic_write_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out.json"
    target.symlink_to(victim)
    atomic_write_bytes(target, b"new")
    assert victim.read_text() == "precious"
    assert not target.is_symlink() and target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_replace_directory_swaps_in_the_new_folder(tmp_path):
    final, new = tmp_path / "fit", tmp_path / "fit.new"
    final.mkdir()
    (final / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    replace_directory(new, final, ours=lambda path: (path / "old.txt").is_file())
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit"]


def test_new_file_sink_never_opens_an_existing_path_or_link(tmp_path):
    from featurekit.fsutil import NewFileSink

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "link").symlink_to(victim)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for taken in (victim, tmp_path / "link", tmp_path / "dangling"):
        with pytest.raises(FileExistsError):
            NewFileSink(taken)
    assert victim.read_text() == "precious" and not (tmp_path / "nowhere").exists()


def test_new_file_sink_latches_the_first_write_error(tmp_path, monkeypatch):
    import errno

    from featurekit.fsutil import NewFileSink

    sink = NewFileSink(tmp_path / "out.bin")
    assert sink.write(b"abc") == 3
    real = os.pwrite
    monkeypatch.setattr(os, "pwrite", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    assert sink.write(b"defg") == 4 and sink.tell() == 7  # reported written, so the library goes on cleanly
    monkeypatch.setattr(os, "pwrite", real)
    sink.write(b"h")  # never written after a failure: the file is garbage and will be discarded
    sink.seek(0)
    assert sink.read(8) == b"abc\0\0\0\0\0"  # what was never written reads as zeros
    sink.seek(1)
    assert sink.read() == b"bc"  # read() without a size stops at the end of the file (it once looped for ever)
    with pytest.raises(OSError) as error:
        sink.raise_failure()
    assert error.value.errno == errno.ENOSPC
    sink.close()
    assert (tmp_path / "out.bin").read_bytes() == b"abc"


def test_storage_errors_say_what_happened_and_what_to_do(tmp_path):
    import errno

    from featurekit.fsutil import storage_error

    full = storage_error(OSError("Can't write data (file write failed: errno = 28, error message = 'No space')"),
                         "write batch 3", tmp_path / "b.h5", then="Then run it again.")
    assert str(full).startswith("Could not write batch 3: the disk is full")
    assert full.received == str(tmp_path / "b.h5") and full.fix.endswith("Then run it again.")
    assert "read-only" in str(storage_error(OSError(errno.EROFS, "Read-only file system"), "write", "x"))
    assert "permission denied" in str(storage_error(PermissionError(errno.EACCES, "Permission denied"), "write", "x"))


def test_discard_temporaries_removes_only_the_named_files_leftovers(tmp_path):
    from featurekit.fsutil import discard_stale_temporaries, temporary_sibling

    target = tmp_path / "c.h5"
    mine = temporary_sibling(target)
    mine.write_text("x")
    other = temporary_sibling(tmp_path / "c.h5x")
    other.write_text("y")
    keep = tmp_path / "c.h5"
    keep.write_text("z")
    assert discard_stale_temporaries(target, lock_held=True) == [mine]  # whatever its PID: no live writer owns it
    assert other.exists() and keep.exists()
