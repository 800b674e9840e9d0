"""The writer's lock: one process writes a cache at a time.

The lock file ``NAME.h5.lock`` is opened with O_NOFOLLOW: a symbolic link planted at its path is refused,
never written through (it could otherwise make a run overwrite any file the user may write).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from featurekit.cache.format import lock_path_for
from featurekit.errors import option_name
from featurekit.fsutil import exclusive_lock, make_folder, storage_error


@contextmanager
def writer_lock(cache_path: str | Path) -> Iterator[None]:
    """Exclusive lock so two processes never write one cache; released by the kernel even on SIGKILL."""
    cache_path = Path(cache_path)
    lock_path = lock_path_for(cache_path)
    make_folder(lock_path.parent, "create the cache folder")
    with ExitStack() as stack:
        try:
            stack.enter_context(exclusive_lock(
                lock_path, "Another process ({holder}) is writing this cache right now.", received=str(cache_path),
                fix=f"Wait for it to finish (it resumes where it stands if stopped), or write another {option_name('cache')}."))
        except OSError as error:
            raise storage_error(error, "create the cache's lock file", lock_path) from None
        yield
