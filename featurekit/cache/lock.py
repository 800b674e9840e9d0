"""The writer's lock: one process writes a cache at a time; readers ask whether an extraction is under way.

The lock file is ``NAME.h5.lock``. It is written only when it is a file featurekit made for this purpose: a
symbolic link (refused by O_NOFOLLOW), a hard link to some other file, something that is not a regular file,
or a file of another user is refused before anything is written, so a planted lock never makes a run
overwrite another file.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from featurekit.cache.format import lock_path_for
from featurekit.errors import FeaturekitError
from featurekit.fsutil import exclusive_lock, make_folder, storage_error


@contextmanager
def writer_lock(cache_path: str | Path) -> Iterator[None]:
    """Exclusive lock so two processes never write one cache; released by the kernel even on SIGKILL."""
    cache_path = Path(cache_path)
    lock_path = lock_path_for(cache_path)
    make_folder(lock_path.parent, "create the cache folder")
    refuse_foreign_lock_file(lock_path)
    with ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(
                lock_path, "Another process ({holder}) is writing this cache right now.", received=str(cache_path),
                fix="Wait for it to finish (it resumes where it stands if stopped), or write another `cache`."))
        except OSError as error:
            raise storage_error(error, "create the cache's lock file", lock_path) from None
        yield


def refuse_foreign_lock_file(lock_path: Path) -> None:
    """Refuse a lock file that is a hard link, not a regular file, or another user's (nothing is written).

    A symbolic link is left to `exclusive_lock`, which refuses it when opening (O_NOFOLLOW). This check on the
    path gives the cache's own message; `fsutil.exclusive_lock` checks the same on the open descriptor before
    writing, so a link planted between the two is refused too.
    """
    try:
        found = os.lstat(lock_path)
    except FileNotFoundError:
        return
    except OSError as error:
        raise storage_error(error, "check the cache's lock file", lock_path) from None
    if stat.S_ISLNK(found.st_mode):
        return
    problem = None
    if not stat.S_ISREG(found.st_mode):
        problem = "is not a regular file"
    elif found.st_nlink > 1:
        problem = f"is a hard link ({found.st_nlink} names share its contents)"
    elif found.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {found.st_uid})"
    if problem:
        raise FeaturekitError(
            f"The cache's lock file {problem}, so featurekit did not make it; it writes nothing into it (someone may "
            "be trying to make it overwrite another file).", received=str(lock_path),
            fix=f"Remove it (`rm {lock_path}`) if no extraction of this cache is running, and run the command again.")


def lock_holder(cache_path: str | Path) -> str | None:
    """Who holds the writer lock of a cache right now ("pid 1234"), or None when nobody does.

    Asks without writing: the lock file is opened read-only, never created, and only probed with a shared lock.
    """
    lock_path = lock_path_for(cache_path)
    try:
        fd = os.open(lock_path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
