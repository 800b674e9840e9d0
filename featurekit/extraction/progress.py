"""A rich progress bar for an extraction (images, images/s, time left): what the command line shows."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def rich_progress_bar(total: int, description: str) -> Iterator[Callable[[int], None]]:
    """A progress bar over `total` images; yields `advance(n)`. A `ProgressFactory` of `featurekit.extraction.run`."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                   transient=False)
    task = bar.add_task(description, total=total, rate="")
    start = time.perf_counter()

    def advance(n: int) -> None:
        completed = bar.tasks[0].completed + n
        bar.update(task, advance=n, rate=f"{completed / max(time.perf_counter() - start, 1e-9):.1f} img/s")

    with bar:
        yield advance
