"""Safe files for the whole package: one lock, one fsynced atomic writer, one directory swap.

Every file featurekit writes goes through here, so the same promises hold for caches, fitted probes and
training state: a file at its final path is always complete (written under a temporary name, fsynced,
renamed), nothing we write follows a symbolic link (temporary files are created with O_EXCL, lock files
are opened with O_NOFOLLOW), and a lock is released by the kernel even when the process is killed.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from featurekit.errors import FeaturekitError

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def temporary_sibling(path: str | Path, tag: str = "tmp") -> Path:
    """A fresh, unused name beside `path` (same folder, so a rename into `path` is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")


def fsync_path(path: str | Path) -> None:
    """Flush a file's (or a folder's) contents to disk."""
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: str | Path) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is)."""
    try:
        fsync_path(directory)
    except OSError:  # some filesystems refuse fsync on folders; the rename itself stays atomic
        pass


def open_new_file(path: str | Path) -> int:
    """Create `path` for writing, failing if anything (a file, a symlink) is already there. Returns an fd."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically: temporary sibling (O_EXCL), fsync, rename, fsync the folder.

    A symlink at `path` is replaced by the rename, never written through.
    """
    path = Path(path)
    temporary = temporary_sibling(path)
    fd = open_new_file(temporary)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, payload: Any) -> Path:
    """`atomic_write_text` of indented JSON (NumPy scalars and paths become plain values)."""
    return atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # NumPy scalars
        return value.item()
    return str(value)


def commit_file(temporary: str | Path, path: str | Path) -> Path:
    """Move a finished temporary file into place: fsync it, rename it, fsync the folder."""
    fsync_path(temporary)
    os.replace(temporary, path)
    fsync_dir(Path(path).parent)
    return Path(path)


def replace_directory(new: str | Path, final: str | Path) -> Path:
    """Put the finished folder `new` at `final`, keeping the old one until the new one is in place.

    The old folder is renamed aside first, then `new` is renamed in, then the old one is removed, so
    a crash at any point leaves either the old or the new folder at `final` (or the old one aside, under
    a `.NAME.old-*` name, never lost). Two writers racing for `final` both succeed; the last one wins.
    """
    new, final = Path(new), Path(final)
    for _ in range(10):
        aside = None
        if final.is_symlink():
            raise FeaturekitError("The output folder is a symbolic link; featurekit does not write through links.",
                                  received=str(final), fix="Remove the link or choose another output folder.")
        if final.exists():
            aside = temporary_sibling(final, "old")
            try:
                os.rename(final, aside)
            except FileNotFoundError:  # another writer moved it first: try again
                continue
        try:
            os.rename(new, final)
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            continue  # another writer put its folder in between: set it aside next round
        finally:
            if aside is not None:
                shutil.rmtree(aside, ignore_errors=True)
        fsync_dir(final.parent)
        return final
    raise FeaturekitError("Could not put the output folder in place: other processes keep replacing it.",
                          received=str(final), fix="Run one writer per output folder at a time.")


@contextmanager
def exclusive_lock(lock_path: str | Path, holder_message: str, received: str, fix: str) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` for the duration of the block; refuse if another process holds it.

    The lock file is opened with O_NOFOLLOW (a symlink planted at its path is refused, never written
    through) and removed on release. flock is released by the kernel even on SIGKILL; a process that
    locked a file just removed by its holder sees that the path now names another file and locks again.

    Args:
        lock_path: The lock file.
        holder_message: The problem sentence when another process holds the lock; "{holder}" is replaced
            by what the holder wrote into the file (its pid).
        received: The "received" part of that error.
        fix: The "fix" part of that error.
    """
    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise FeaturekitError(
                    "The lock file is a symbolic link; featurekit never writes through links (someone may be "
                    "trying to make it overwrite another file).",
                    received=f"{lock_path} -> {os.readlink(lock_path)}",
                    fix=f"Remove the link (`rm {lock_path}`) and run the command again.") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FeaturekitError(holder_message.replace("{holder}", holder), received=received, fix=fix) from None
        try:
            if os.stat(lock_path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        try:
            if os.stat(lock_path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                lock_path.unlink()  # while still holding it: nobody can lock this file meanwhile
        except FileNotFoundError:
            pass
        os.close(fd)
