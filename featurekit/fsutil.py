"""Safe files for the whole package: one lock, one fsynced atomic writer, one directory swap.

Every file featurekit writes goes through here, so the same promises hold for caches, fitted probes and
training state: a file at its final path is always complete (written under a temporary name, fsynced,
renamed), nothing we write follows a symbolic link (temporary files are created with O_EXCL, lock files
are opened with O_NOFOLLOW), and a lock is released by the kernel even when the process is killed.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from featurekit.errors import FeaturekitError


def temporary_sibling(path: str | Path, tag: str = "tmp") -> Path:
    """A fresh, unused name beside `path` (same folder, so a rename into `path` is atomic)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}")


def fsync_path(path: str | Path) -> None:
    """Flush a file's (or a folder's) contents to disk."""
    fd = os.open(path, os.O_RDONLY)  # Python opens every descriptor close-on-exec (PEP 446)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: str | Path) -> None:
    """Flush a folder's entries (a rename is durable only once its folder is)."""
    with suppress(OSError):  # some filesystems refuse fsync on folders; the rename itself stays atomic
        fsync_path(directory)


# What an OSError while writing means for the user, and what to do about it (errno -> problem, fix).
_STORAGE_PROBLEMS = {
    errno.ENOSPC: ("the disk is full", "Free some space on that disk (or write to another one)"),
    errno.EDQUOT: ("the disk quota is used up", "Free some space within your quota (or write to another disk)"),
    errno.EROFS: ("the file system is read-only", "Write to a writable folder"),
    errno.EACCES: ("permission denied", "Make the folder writable for this user (or write to another folder)"),
    errno.EPERM: ("operation not permitted", "Make the folder writable for this user (or write to another folder)"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "Choose a path whose folders are folders"),
    errno.EEXIST: ("a file is in the way where a folder should be", "Choose a path whose folders are folders"),
    errno.EISDIR: ("a folder is in the way where a file should be", "Remove that folder or choose another path"),
    errno.ELOOP: ("a symbolic link is in the way", "Remove the link; featurekit does not write through links"),
    errno.ENAMETOOLONG: ("the path is too long", "Choose a shorter path"),
    errno.EIO: ("the disk reported an input/output error", "Check the disk"),
}


def storage_error(error: OSError, action: str, path: str | Path, then: str = "") -> FeaturekitError:
    """A FeaturekitError for an OSError while writing: which condition (full disk, read-only, ...) and the fix.

    Args:
        error: What the operating system (or h5py, which only names the errno in the message:
            "errno = 28") raised.
        action: What was being done, e.g. "write batch 12 of the cache".
        path: The file or folder being written.
        then: A sentence for after the fix, e.g. that a rerun resumes.
    """
    found = re.search(r"errno = (\d+)", str(error))
    number = error.errno if error.errno is not None else int(found.group(1)) if found else None
    problem, fix = _STORAGE_PROBLEMS.get(number, (os.strerror(number) if number else str(error), "Fix the cause"))
    detail = getattr(error, "strerror", None) or str(error).split("(")[0].strip() or type(error).__name__
    return FeaturekitError(f"Could not {action}: {problem} ({detail}).", received=str(path),
                           fix=f"{fix}. {then}".strip())


def make_folder(directory: str | Path, action: str, exist_ok: bool = True) -> Path:
    """Create `directory` (and its parents) unless it exists; refuse clearly when something is in the way.

    With `exist_ok=False` the folder must be new (a fresh temporary name: nothing already there is used).
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=exist_ok)
    except OSError as error:
        raise storage_error(error, action, directory) from None
    return directory


def open_new_file(path: str | Path, readable: bool = False) -> int:
    """Create `path` for writing, failing if anything (a file, a symlink) is already there. Returns an fd."""
    access = os.O_RDWR if readable else os.O_WRONLY
    return os.open(path, access | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)


class NewFileSink(io.RawIOBase):
    """A file object over a new file (O_EXCL, O_NOFOLLOW) that remembers the first write error instead of raising it.

    For libraries that write through a Python file object and cannot survive a failed write: HDF5 whose write
    failed on a full disk keeps retrying its metadata flush on every later close, and the process crashed at
    exit (exit code 139). Through this sink the first OSError is recorded (`failure`) and every later write
    "succeeds" without touching the disk, so the library always closes cleanly; the caller then calls
    `raise_failure()` and discards the file. Reads of what was never written return zeros, as a sparse file would.
    `io.RawIOBase` gives `read`, `tell` and `flush` on top of the methods below.
    """

    _fd = -1  # until the file is open

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.failure: OSError | None = None
        self._fd = open_new_file(self.path, readable=True)
        self._position = 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.failure is None:
            try:
                written = 0
                while written < len(view):
                    written += os.pwrite(self._fd, view[written:], self._position + written)
            except OSError as error:
                self.failure = error
        self._position += len(view)
        return len(view)

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        count = os.preadv(self._fd, [view], self._position) if len(view) else 0
        view[count:] = bytes(len(view) - count)
        self._position += len(view)
        return len(view)

    def readall(self) -> bytes:
        """To the end of the file (`read()` without a size): readinto zero-fills past the end, so the loop
        RawIOBase would run never ends."""
        return self.read(max(0, os.fstat(self._fd).st_size - self._position))

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: os.fstat(self._fd).st_size}[whence]
        self._position = base + offset
        return self._position

    def truncate(self, size: int | None = None) -> int:
        size = self._position if size is None else size
        if self.failure is None:
            try:
                os.ftruncate(self._fd, size)
            except OSError as error:
                self.failure = error
        return size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()

    def raise_failure(self) -> None:
        """Raise the first write error, if there was one."""
        if self.failure is not None:
            raise self.failure


def atomic_write_bytes(path: str | Path, data: bytes, ours: Callable[[Path], bool] | None = None) -> Path:
    """Write `data` to `path` atomically: temporary sibling (O_EXCL), then `commit_file`.

    What is at `path` is replaced only when `ours` recognises it (default `is_regular_file`: the file
    or link the caller named; see `refuse_unless_ours`): a folder or a device there is refused, and a
    link is replaced, never written through. An OSError (full disk, read-only, a file where a folder should be)
    becomes a FeaturekitError naming the condition; nothing is left behind, and temporaries that killed
    writers left beside `path` are removed (`discard_stale_temporaries`).
    """
    path = Path(path)
    refuse_unless_ours(path, ours or is_regular_file)
    discard_stale_temporaries(path)
    temporary = temporary_sibling(path)
    try:
        handle = os.fdopen(open_new_file(temporary), "wb")  # a name in the way is not ours: left alone
    except OSError as error:
        raise storage_error(error, f"write {path.name}", path) from None
    try:
        with handle:
            handle.write(data)
        return commit_file(temporary, path, ours)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise storage_error(error, f"write {path.name}", path) from None
        raise


def atomic_write_json(path: str | Path, payload: Any) -> Path:
    """`atomic_write_bytes` of indented JSON in UTF-8 (NumPy scalars and paths become plain values), replacing
    only a regular file or a link at `path`."""
    text = json.dumps(payload, indent=2, default=lambda value: value.item() if hasattr(value, "item") else str(value))
    return atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def commit_file(temporary: str | Path, path: str | Path, ours: Callable[[Path], bool] | None = None) -> Path:
    """Move a finished temporary file into place: fsync it, rename it, fsync the folder.

    What is at `path` is replaced only when `ours` recognises it (default: a regular file; see
    `refuse_unless_ours`).
    """
    refuse_unless_ours(path, ours or is_regular_file)
    fsync_path(temporary)
    os.replace(temporary, path)
    fsync_dir(Path(path).parent)
    return Path(path)


def is_regular_file(path: str | Path) -> bool:
    """The default marker of an output file the caller named (a report, a table): a regular file, or a
    symbolic link, which the rename replaces without touching its target; never a folder, FIFO or device."""
    return os.path.islink(path) or os.path.isfile(path)  # a link, or (not being one) a regular file


def refuse_unless_ours(path: str | Path, ours: Callable[[Path], bool], what: str = "The output") -> None:
    """The one rule for every output featurekit replaces: only what featurekit wrote is replaced.

    Nothing at `path`: fine. Anything else is replaced only when `ours(path)` finds featurekit's own
    marker there (the caller knows it: a fitted folder's `fitted.json` and `model/`, a cache's
    attributes); otherwise it is refused, and nothing is moved or deleted. Writers replace by rename, so
    even an accepted symbolic link is replaced, never written through.

    Args:
        path: The output path about to be replaced.
        ours: The caller's marker check.
        what: What the output is, for the message ("The output folder", "The cache").
    """
    path = Path(path)
    for _ in range(3):  # a racing writer may rename `path` away and put its own in while we look: look again
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        except OSError as error:
            raise storage_error(error, f"inspect {what.lower()}", path) from None
        if ours(path):
            return
    kind = ("symbolic link" if stat.S_ISLNK(mode) else "folder" if stat.S_ISDIR(mode)
            else "file" if stat.S_ISREG(mode) else "special file (FIFO, socket or device)")
    raise FeaturekitError(
        f"{what} names an existing {kind} that featurekit did not write; featurekit replaces only its own "
        "outputs and never deletes or moves anything else.",
        received=str(path), fix="Choose another path, or move that one away yourself.")


def check_output_file(path: str | Path) -> Path:
    """Refuse, before any work, an output file that could not be written or would replace what is not ours.

    What is at `path` must pass `refuse_unless_ours` with the marker of a file the caller named
    (`is_regular_file`); the nearest folder that exists on the way must be a folder this user can write
    into (its missing subfolders are made when the file is written).
    """
    path = Path(path)
    refuse_unless_ours(path, is_regular_file)
    existing = next(folder for folder in path.parents if os.path.lexists(folder))  # "." or "/" at last
    writable = os.access(existing, os.W_OK | os.X_OK)
    number = errno.ENOTDIR if not existing.is_dir() else None if writable else errno.EACCES
    if number:
        raise storage_error(OSError(number, os.strerror(number)), f"write {path.name}", path)
    return path


def _put_back(aside: Path, final: Path) -> None:
    """Return our old folder from `aside` to `final`; when a racing writer's newer folder is there, the old one is
    obsolete and removed."""
    try:
        os.rename(aside, final)
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        shutil.rmtree(aside, ignore_errors=True)


def replace_directory(new: str | Path, final: str | Path, ours: Callable[[Path], bool]) -> Path:
    """Put the finished folder `new` at `final`, keeping the old one until the new one is in place.

    What is at `final` is replaced only when `ours` recognises it (`refuse_unless_ours`). The old folder
    is renamed aside first, checked again there (nothing can be swapped in between unseen), then `new` is
    renamed in, then the old one is removed, so a crash at any point leaves either the old or the new
    folder at `final` (or the old one aside, under a `.NAME.old-*` name, never lost). Two writers racing
    for `final` both succeed; the last one wins.
    """
    new, final = Path(new), Path(final)
    for _ in range(10):
        refuse_unless_ours(final, ours, "The output folder")
        aside = temporary_sibling(final, "old")
        try:
            os.rename(final, aside)
        except FileNotFoundError:  # nothing there, or another writer moved it first
            aside = None
        if aside is not None and not ours(aside):  # swapped in after the check: put it back untouched
            os.rename(aside, final)
            continue
        try:
            os.rename(new, final)
        except OSError as error:
            if aside is not None:
                _put_back(aside, final)  # the new folder could not go in: the old one goes back
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            continue  # another writer put its folder in between: set it aside next round
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
        fsync_dir(final.parent)
        return final
    raise FeaturekitError("Could not put the output folder in place: other processes keep replacing it.",
                          received=str(final), fix="Run one writer per output folder at a time.")


_TEMPORARY_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<tag>[a-z]+)-(?P<pid>\d+)-[0-9a-f]{8}(?:\.[A-Za-z0-9]+)?$")


def _process_is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        pass
    return False


def discard_stale_temporaries(path: str | Path, tags: tuple[str, ...] = ("tmp",),
                              lock_held: bool = False) -> list[Path]:
    """Remove the temporaries beside `path` whose writer was killed (SIGKILL, power loss).

    Only entries that match featurekit's own naming (`temporary_sibling`: `.NAME.TAG-PID-HEX`), that
    belong to this user, that are not links, and whose PID names no running process are removed; a
    live writer's temporary is left alone. Safe without a lock: a PID that is gone cannot come back to
    finish its temporary. With `lock_held` (the caller holds the lock that guards `path`) the PID is not
    asked: no live writer can own one.

    Returns:
        The paths removed.
    """
    path = Path(path)
    removed: list[Path] = []
    entries: list[os.DirEntry] = []
    with suppress(OSError):  # a folder that cannot be listed holds nothing we can remove
        entries = list(os.scandir(path.parent))
    for entry in entries:
        found = _TEMPORARY_NAME.match(entry.name)
        if not found or found["name"] != path.name or found["tag"] not in tags:
            continue
        with suppress(OSError):  # gone meanwhile, or not ours to remove: left as it is
            info = entry.stat(follow_symlinks=False)
            if info.st_uid != os.getuid() or stat.S_ISLNK(info.st_mode):
                continue
            if lock_held or _process_is_gone(int(found["pid"])):
                shutil.rmtree(entry.path) if stat.S_ISDIR(info.st_mode) else os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _refuse_foreign_lock(fd: int, lock_path: Path) -> None:
    """Refuse, on the open descriptor (no race with the path), a lock file featurekit cannot have made: a hard
    link to another file, not a regular file, or owned by another user. Nothing has been written to it yet."""
    info = os.fstat(fd)
    problem = ("it is not a regular file" if not stat.S_ISREG(info.st_mode) else
               f"it has {info.st_nlink} hard links (another file's contents)" if info.st_nlink > 1 else
               "another user owns it" if info.st_uid != os.geteuid() else None)
    if problem:
        os.close(fd)
        raise FeaturekitError(f"The lock file was not made by featurekit: {problem}; featurekit never writes to it.",
                              received=str(lock_path),
                              fix=f"Remove it (`rm {lock_path}`) if no featurekit command is running, then run again.")


def _names_open_file(path: Path, fd: int) -> bool:
    """`path` (not followed if a link) is the file open as `fd`, not one put there since, nor nothing."""
    try:
        return os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


@contextmanager
def exclusive_lock(lock_path: str | Path, holder_message: str, received: str, fix: str) -> Iterator[None]:
    """Hold an exclusive lock on `lock_path` for the duration of the block; refuse if another process holds it.

    The lock file is opened with O_NOFOLLOW (a symlink planted at its path is refused, never written
    through) and removed on release. flock is released by the kernel even on SIGKILL; a process that
    locked a file just removed by its holder sees that the path now names another file and locks again.

    Args:
        lock_path: The lock file, in a folder that exists (callers make it, naming what they were doing).
        holder_message: The problem sentence when another process holds the lock; "{holder}" is replaced
            by what the holder wrote into the file (its pid).
        received: The "received" part of that error.
        fix: The "fix" part of that error.
    """
    lock_path = Path(lock_path)
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise FeaturekitError(
                    "The lock file is a symbolic link; featurekit never writes through links (someone may be "
                    "trying to make it overwrite another file).",
                    received=f"{lock_path} -> {os.readlink(lock_path)}",
                    fix=f"Remove the link (`rm {lock_path}`) and run the command again.") from None
            raise
        _refuse_foreign_lock(fd, lock_path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise FeaturekitError(holder_message.replace("{holder}", holder), received=received, fix=fix) from None
        if _names_open_file(lock_path, fd):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
        yield
    finally:
        if _names_open_file(lock_path, fd):
            lock_path.unlink(missing_ok=True)  # while still holding it: nobody can lock this file meanwhile
        os.close(fd)
