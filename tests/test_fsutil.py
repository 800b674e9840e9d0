"""The shared safe-file primitives: no write through symlinks, atomic replacement, one lock."""

from __future__ import annotations

import os

import pytest

from featurekit.errors import FeaturekitError, cli_spelling, given, option_name
from featurekit.fsutil import atomic_write_text, exclusive_lock, replace_directory


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
    atomic_write_text(target, "new")
    assert victim.read_text() == "precious"
    assert not target.is_symlink() and target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_replace_directory_swaps_in_the_new_folder(tmp_path):
    final, new = tmp_path / "fit", tmp_path / "fit.new"
    final.mkdir()
    (final / "old.txt").write_text("old")
    new.mkdir()
    (new / "new.txt").write_text("new")
    replace_directory(new, final)
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit"]


def test_errors_quote_parameters_in_python_and_flags_on_the_command_line():
    assert given("batch_size", 0) == "batch_size=0" and option_name("batch_size") == "batch_size"
    with cli_spelling():
        assert given("batch_size", 0) == "--batch-size 0" and option_name("batch_size") == "--batch-size"
    assert given("batch_size", 0) == "batch_size=0"
