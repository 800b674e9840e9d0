"""featurekit never deletes or moves what it did not write; temporaries of killed fits are cleaned up."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, quiet, separable_cache
from featurekit.errors import FeaturekitError
from featurekit.evaluation.fitting import fit_probe, is_fitted_folder, load_fitted
from featurekit.fsutil import atomic_write_bytes, discard_stale_temporaries, replace_directory


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): (p.read_text() if p.is_file() else "/") for p in sorted(root.rglob("*"))}


def test_fit_refuses_an_existing_folder_it_did_not_write_and_keeps_every_file(tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5")
    out = tmp_path / "d"
    (out / "sub").mkdir(parents=True)
    (out / "thesis.txt").write_text("precious")
    (out / "sub" / "notes.txt").write_text("also precious")
    before = _tree(out)
    with pytest.raises(FeaturekitError, match="did not write"):
        fit_probe(cache, "logreg", out=out, log=quiet)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "sep.h5"]  # nothing moved aside


def test_fit_refuses_a_regular_file_at_out_and_moves_nothing(tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5")
    out = tmp_path / "model"
    out.write_text("a file of the user")
    with pytest.raises(FeaturekitError, match="existing file"):
        fit_probe(cache, "logreg", out=out, log=quiet)
    assert out.read_text() == "a file of the user"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_fit_refuses_a_link_at_out_and_leaves_it_and_its_target(tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5")
    fit_probe(cache, "logreg", out=tmp_path / "real_fit", log=quiet)
    (tmp_path / "link").symlink_to(tmp_path / "real_fit")  # even a link to a fitted folder
    with pytest.raises(FeaturekitError, match="existing symbolic link"):
        fit_probe(cache, "logreg", out=tmp_path / "link", log=quiet)
    assert (tmp_path / "link").is_symlink() and is_fitted_folder(tmp_path / "real_fit")


def test_fit_replaces_its_own_fit_and_only_that(tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5")
    out = tmp_path / "fit"
    fit_probe(cache, "logreg", out=out, log=quiet)
    assert is_fitted_folder(out)
    refit = fit_probe(cache, "logreg", {"C": 0.1}, out=out, log=quiet)
    assert load_fitted(out).meta["params"] == {"C": 0.1} == refit.meta["params"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit", "sep.h5"]


def test_replace_directory_refuses_what_the_marker_does_not_recognise(tmp_path: Path):
    final, new = tmp_path / "out", tmp_path / "new"
    final.mkdir()
    (final / "keep.txt").write_text("keep")
    new.mkdir()
    with pytest.raises(FeaturekitError, match="did not write"):
        replace_directory(new, final, ours=lambda path: (path / "marker").is_file())
    assert (final / "keep.txt").read_text() == "keep" and new.is_dir()
    (final / "marker").write_text("")
    replace_directory(new, final, ours=lambda path: (path / "marker").is_file())
    assert list(final.iterdir()) == []


def test_an_output_a_racing_writer_moves_away_while_it_is_checked_is_not_refused(tmp_path: Path):
    final, new = tmp_path / "out", tmp_path / "new"
    final.mkdir()
    new.mkdir()

    def ours_while_another_writer_moves_it(path: Path) -> bool:
        if path == final and final.exists():
            final.rename(tmp_path / "moved")  # the other writer sets the folder aside between look and check
            return False
        return True

    replace_directory(new, final, ours=ours_while_another_writer_moves_it)
    assert final.is_dir() and not new.exists()


def test_many_writers_racing_for_one_output_folder_all_succeed_and_leave_one_folder(tmp_path: Path):
    import threading

    final = tmp_path / "out"
    ours = lambda path: (path / "marker").is_file()  # noqa: E731

    def one_writer(round_: int, writer: int, together: threading.Barrier, errors: list) -> None:
        new = tmp_path / f"new-{round_}-{writer}"
        new.mkdir()
        (new / "marker").write_text(str(writer))
        together.wait()
        try:
            replace_directory(new, final, ours=ours)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    for round_ in range(60):
        together, errors = threading.Barrier(4, timeout=60), []
        writers = [threading.Thread(target=one_writer, args=(round_, w, together, errors)) for w in range(4)]
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join()
        assert errors == [], f"round {round_}"
        assert [p.name for p in tmp_path.iterdir()] == ["out"] and ours(final)


def test_atomic_writes_refuse_a_folder_a_fifo_or_a_file_the_marker_rejects(tmp_path: Path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "inside.txt").write_text("x")
    os.mkfifo(tmp_path / "pipe.md")
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for target, kind in ((tmp_path / "folder", "existing folder"), (tmp_path / "pipe.md", "special file")):
        with pytest.raises(FeaturekitError, match=kind):
            atomic_write_bytes(target, b"new")
    with pytest.raises(FeaturekitError, match="did not write"):
        atomic_write_bytes(victim, b"new", ours=lambda path: path.read_text().startswith("# featurekit"))
    assert victim.read_text() == "precious" and (tmp_path / "folder" / "inside.txt").read_text() == "x"
    atomic_write_bytes(victim, b"new")  # the default: a regular file the caller named is replaced
    assert victim.read_text() == "new"


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EROFS])
def test_atomic_write_errors_name_the_condition(tmp_path: Path, monkeypatch, number):
    import featurekit.fsutil as fsutil

    def failing_fsync(fd):
        raise OSError(number, os.strerror(number))

    monkeypatch.setattr(fsutil.os, "fsync", failing_fsync)
    with pytest.raises(FeaturekitError, match="Could not write out.json"):
        atomic_write_bytes(tmp_path / "out.json", b"{}")
    assert list(tmp_path.iterdir()) == []


def test_a_write_under_a_file_is_a_clear_error(tmp_path: Path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(FeaturekitError, match="a part of the path is a file"):
        atomic_write_bytes(tmp_path / "file" / "out.md", b"text")


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporaries_of_killed_fits_are_removed_and_live_or_foreign_ones_kept(tmp_path: Path):
    dead = _dead_pid()
    out = tmp_path / "fit"
    stale = [tmp_path / f".fit.tmp-{dead}-deadbeef", tmp_path / f".fit.tmp-{dead}-0badcafe"]
    for folder in stale:
        (folder / "model").mkdir(parents=True)
    live = tmp_path / f".fit.tmp-{os.getpid()}-abcdef01"
    live.mkdir()
    others = [tmp_path / f".other.tmp-{dead}-deadbeef", tmp_path / f".fit.tmp-{dead}-notours", tmp_path / "fit.tmp"]
    for folder in others:
        folder.mkdir()
    assert sorted(discard_stale_temporaries(out)) == sorted(stale)
    assert live.is_dir() and all(folder.is_dir() for folder in others)


def test_a_fit_after_a_sigkilled_fit_leaves_no_temporary(tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5")
    out = tmp_path / "runs" / "fit"
    # A fit killed while saving: its temporary folder (our naming, a PID that is gone) is still there.
    killed = out.with_name(f".fit.tmp-{_dead_pid()}-1234abcd")
    (killed / "model").mkdir(parents=True)
    fit_probe(cache, "logreg", out=out, log=quiet)
    assert sorted(p.name for p in out.parent.iterdir()) == ["fit"]


def test_a_previous_fit_left_aside_by_a_killed_swap_is_removed_once_the_new_fit_is_in(tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5")
    out = tmp_path / "runs" / "fit"
    fit_probe(cache, "logreg", out=out, log=quiet)
    aside = out.with_name(f".fit.old-{_dead_pid()}-5678abcd")
    out.rename(aside)  # killed between setting the old fit aside and renaming the new one in
    fit_probe(cache, "logreg", out=out, log=quiet)
    assert sorted(p.name for p in out.parent.iterdir()) == ["fit"]


def test_cli_fit_into_a_user_folder_exits_2_and_keeps_it(tmp_path: Path):
    cache = separable_cache(tmp_path / "sep.h5")
    out = tmp_path / "d"
    out.mkdir()
    (out / "thesis.txt").write_text("precious")
    run = subprocess.run([sys.executable, "cli.py", "fit", "--cache", str(cache), "--probe", "logreg", "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    assert "did not write" in run.stdout + run.stderr and "Traceback" not in run.stderr
    assert (out / "thesis.txt").read_text() == "precious" and sorted(os.listdir(out)) == ["thesis.txt"]


def test_an_atomic_write_removes_the_temporary_a_killed_writer_left(tmp_path: Path):
    stale = tmp_path / f".out.json.tmp-{_dead_pid()}-cafe0123"
    stale.write_text("half")
    live = tmp_path / f".out.json.tmp-{os.getpid()}-cafe4567"
    live.write_text("being written")
    atomic_write_bytes(tmp_path / "out.json", b"{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", live.name])


def test_a_real_sigkill_while_saving_leaves_a_temporary_that_the_next_fit_removes(tmp_path: Path):
    import signal
    import textwrap

    cache = separable_cache(tmp_path / "sep.h5")
    out = tmp_path / "runs" / "fit"
    child = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        import featurekit.evaluation.fitting as fitting
        from featurekit.probes import save_probe

        def save_then_hang(estimator, path):
            save_probe(estimator, path)
            print("saving", flush=True)
            time.sleep(120)

        real = fitting._save_atomically
        fitting._save_atomically = lambda fitted, _: real(fitted, save_then_hang)
        fitting.fit_probe({str(cache)!r}, "logreg", out={str(out)!r}, log=lambda m: None)
    """)
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert process.stdout.readline().strip() == "saving"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    left = [p.name for p in out.parent.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".fit.tmp-{process.pid}-")
    fit_probe(cache, "logreg", out=out, log=quiet)
    assert sorted(p.name for p in out.parent.iterdir()) == ["fit"]


def test_extract_overwrite_refuses_a_file_it_did_not_write_at_the_cache_path(image_folder: Path, tmp_path: Path):
    from featurekit.extraction.extract import extract

    thesis = tmp_path / "thesis.h5"
    thesis.write_text("precious, and not a cache")
    with pytest.raises(FeaturekitError, match="featurekit did not write"):
        extract(image_folder, "test_tiny", cache=thesis, overwrite=True, pooling="avg", progress=None, log=quiet)
    assert thesis.read_text() == "precious, and not a cache"
    result = extract(image_folder, "test_tiny", cache=tmp_path / "c.h5", pooling="avg", progress=None, log=quiet)
    again = extract(image_folder, "test_tiny", cache=result.cache_path, overwrite=True, pooling="avg", progress=None,
                    log=quiet)  # its own cache is replaced
    assert again.status == "extracted"


def test_a_hard_linked_lock_is_refused_on_the_open_file(tmp_path: Path):
    import featurekit.cache.lock as lock

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    cache = tmp_path / "c.h5"
    os.link(victim, tmp_path / "c.h5.lock")  # planted: refused on the open file, before anything is written
    with pytest.raises(FeaturekitError, match="hard links"):
        with lock.writer_lock(cache):
            pass
    assert victim.read_text() == "keep me"
