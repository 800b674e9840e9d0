"""A crafted cache cannot make a reader allocate by the sizes it declares (issue 16 item 10)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from featurekit.cache import open_cache
from featurekit.errors import FeaturekitError

DECLARED_ROWS = 300_000_000


def _crafted(path: Path, rows: int = DECLARED_ROWS, chunked: bool = True, padding: int = 0) -> Path:
    """A tiny file that looks like a finished cache and declares `rows` rows, none of them written."""
    strings = h5py.string_dtype("utf-8")
    chunks = {"chunks": True} if chunked else {}
    with h5py.File(path, "w") as f:
        f.create_dataset("features", shape=(rows, 4), dtype="float32", chunks=(min(rows, 1024), 4) if chunked else None)
        f.create_dataset("labels", shape=(rows,), dtype="int8", **chunks)
        for name in ("paths", "splits", "sha256"):
            f.create_dataset(name, shape=(rows,), dtype=strings, **chunks)
        if padding:
            f.create_dataset("padding", data=np.random.default_rng(0).integers(0, 255, padding, dtype=np.uint8))
        f.attrs.update(schema_version=2, complete=True, backbone="test_tiny", pooling="avg", n_samples=rows)
        f.attrs["class_names"] = np.array(["real", "fake"], dtype=object)
    return path


@pytest.mark.parametrize("chunked", [True, False])
def test_a_crafted_file_declaring_3e8_rows_is_refused_without_allocating(tmp_path: Path, chunked: bool):
    path = _crafted(tmp_path / "crafted.h5", chunked=chunked)
    assert path.stat().st_size < 64 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(FeaturekitError, match=r"damaged: features declares 300,000,000 rows, more than a file of"):
            open_cache(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"opening allocated {peak / 2**20:.0f} MiB"


def test_info_on_a_crafted_file_is_a_clear_error(tmp_path: Path):
    from featurekit.cli import app

    result = CliRunner().invoke(app, ["info", str(_crafted(tmp_path / "crafted.h5"))])
    assert result.exit_code == 2 and "declares 300,000,000 rows" in result.output
    assert "MemoryError" not in result.output and "Traceback" not in result.output


def test_declared_rows_without_their_data_are_refused(tmp_path: Path):
    """Within the bound the file size gives, a dataset whose data was never written is refused too."""
    path = _crafted(tmp_path / "unwritten.h5", rows=5_000, chunked=False, padding=200_000)
    with pytest.raises(FeaturekitError, match=r"features declares shape \(5000, 4\) but the file does not hold its data"):
        open_cache(path)


def test_an_attribute_declaring_more_than_it_holds_is_a_clear_error(tmp_path: Path):
    """The dimension of an attribute's dataspace patched in the file's bytes: 1234 values become 3e8."""
    from conftest import separable_cache

    path = separable_cache(tmp_path / "sep.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["huge"] = np.zeros(1234)
    data = path.read_bytes()
    declared = (1234).to_bytes(8, "little")
    assert data.count(declared) == 2  # its size and maximum size
    path.write_bytes(data.replace(declared, DECLARED_ROWS.to_bytes(8, "little")))
    tracemalloc.start()
    try:
        with pytest.raises(FeaturekitError, match=r"damaged: its attributes cannot be read"):
            open_cache(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"opening allocated {peak / 2**20:.0f} MiB"


def test_a_group_where_a_dataset_belongs_is_a_clear_error(tmp_path: Path):
    path = _crafted(tmp_path / "crafted.h5", rows=10)
    with h5py.File(path, "r+") as f:
        del f["features"]
        f.create_group("features")
    with pytest.raises(FeaturekitError, match=r"damaged: features is not a dataset"):
        open_cache(path)
