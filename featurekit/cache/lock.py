"""The writer's lock: one process writes a cache at a time; readers ask whether an extraction is under way.

The lock file is ``NAME.h5.lock``. It is written only when it is a file featurekit made for this purpose: a
symbolic link (refused by O_NOFOLLOW), a hard link to some other file, something that is not a regular file,
or a file of another user is refused before anything is written, so a planted lock never makes a run
overwrite another file.
"""

from __future__ import annotations

import fcntl
import os
import stat
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from featurekit.fsutil import exclusive_lock, make_folder, storage_error


def lock_path_for(cache_path: str | Path) -> Path:
    return Path(f"{cache_path}.lock")


@contextmanager
def writer_lock(cache_path: str | Path) -> Iterator[None]:
    """Exclusive lock so two processes never write one cache; released by the kernel even on SIGKILL."""
    lock_path = lock_path_for(cache_path)
    make_folder(lock_path.parent, "create the cache folder")
    with ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(
                lock_path, "Another process ({holder}) is writing this cache right now.", received=str(cache_path),
                fix="Wait for it to finish (it resumes where it stands if stopped), or write another `cache`."))
        except OSError as error:
            raise storage_error(error, "create the cache's lock file", lock_path) from None
        yield


def lock_holder(cache_path: str | Path) -> str | None:
    """Who holds the writer lock of a cache right now ("pid 1234"), or None when nobody does.

    Asks without writing: the lock file is opened read-only, never created, and only probed with a shared lock.
    """
    try:
        fd = os.open(lock_path_for(cache_path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # released when `fd` is closed
    except BlockingIOError:
        return os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
    except OSError:
        pass
    finally:
        os.close(fd)
    return None
