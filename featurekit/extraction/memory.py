"""A batch's memory, estimated before anything runs, against the memory this process may still use."""

from __future__ import annotations

import re
from pathlib import Path

from featurekit.errors import FeaturekitError, given

GIB = 1 << 30
# Limits a cgroup reports when it sets none (v1 reports a huge number instead of "max").
_NO_LIMIT = 1 << 60


def available_memory() -> int | None:
    """Bytes this process may still allocate: the system's available memory, or less under a cgroup limit;
    None where neither can be read (then nothing is checked)."""
    return min((value for value in (_meminfo_available(), _cgroup_room()) if value is not None), default=None)


def _meminfo_available() -> int | None:
    try:
        found = re.search(r"^MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) * 1024 if found else None


def _cgroup_room() -> int | None:
    """Limit minus usage of this process's memory cgroup (v2, else v1)."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            usage = int(Path("/sys/fs/cgroup", usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        return None if limit == "max" or int(limit) >= _NO_LIMIT else max(int(limit) - usage, 0)
    return None


def check_batch_memory(batch_size: int, bytes_per_image: int, decoded_ahead: int, image_size: int,
                       available: int | None) -> None:
    """Refuse a batch whose forward pass would not fit in `available` bytes, naming a batch size that does.

    Args:
        batch_size: Images per forward pass.
        bytes_per_image: Memory of one image in the forward pass (input and feature maps).
        decoded_ahead: Batches decoded ahead of the one being embedded (uint8 pixels each).
        image_size: Square input size.
        available: Bytes that may still be allocated; None checks nothing.

    Raises:
        FeaturekitError: the estimate exceeds `available`.
    """
    per_image = bytes_per_image + decoded_ahead * image_size * image_size * 3  # and its uint8 pixels decoded ahead
    needed = batch_size * per_image
    if available is None or needed <= available:
        return
    fitting = int(0.8 * available // per_image)
    fix = (f"Use `batch_size` {fitting} or less" if fitting >= 1 else
           f"Use a smaller `image_size`: even one image does not fit")
    raise FeaturekitError(
        f"A batch of {batch_size} images of {image_size}x{image_size} pixels needs about {_size(needed)} "
        f"(input and feature maps), but only {_size(available)} of memory is available.",
        received=f"{given('batch_size', batch_size)} with {given('image_size', image_size)}",
        fix=f"{fix}, or free memory; nothing was computed.")


def _size(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.1f} GiB" if n_bytes >= GIB else f"{n_bytes / (1 << 20):.0f} MiB"
