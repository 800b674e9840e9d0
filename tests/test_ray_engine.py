"""The ray engine on a local Ray cluster (`ray.init(num_cpus=2)`, once for the module): the same cache as the
local engine row for row, retries, a batch that keeps failing, a killed driver, the #44687 refusal, and
a two-node cluster. All marked slow; skipped where the `ray` extra is not installed; CI installs it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, make_image_folder, write_image

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'featurekit[ray]'); CI installs it")
pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install 'featurekit[ray]')")

from featurekit.cache import PartialCache, open_cache  # noqa: E402
from featurekit.errors import FeaturekitError  # noqa: E402
from featurekit.extraction.extract import extract  # noqa: E402
from test_engines import faulty_worker  # noqa: E402

# A local Ray (processes, actors, Ray Data) costs tens of seconds on 2 cores: CI runs these in its slow step;
# the engine's planning and refusals without a live Ray are in test_engines.py, in the default run.
pytestmark = pytest.mark.slow
COMMON = {"backbone": "test_tiny", "pooling": "avg", "batch_size": 4, "progress": False}


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray for the module (starting one costs seconds); the engine joins it and leaves it running."""
    if ray.is_initialized():
        ray.shutdown()
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    yield context.address_info["gcs_address"]
    ray.shutdown()


def _faces(root: Path, per_class: int = 8) -> Path:
    """A class-folder of small images with three files the local engine skips, listed with their reasons."""
    data = make_image_folder(root, per_class=per_class)
    (data / "real" / "empty.jpg").write_bytes(b"")
    (data / "fake" / "text.png").write_bytes(b"hello, not a png")
    good = write_image(root.parent / f"{root.name}-good.jpg", seed=5, size=64, fmt="JPEG")
    (data / "fake" / "truncated.jpg").write_bytes(good.read_bytes()[:300])
    return data


def _cache_rows(path: Path):
    with open_cache(path) as cache:
        return cache.paths, cache.splits.tolist(), cache.labels.tolist(), cache.load()[0], cache.skipped, dict(cache.attrs)


@pytest.fixture(scope="module")
def ray_and_local(ray_address, tmp_path_factory):
    """The same folder through both engines; the ray run's actor raises once in batch 1 and its process dies
    once in batch 2 (both retried), so one run covers equality, skipped files and recovery."""
    root = tmp_path_factory.mktemp("engines")
    data = _faces(root / "faces")
    messages: list[str] = []
    local = extract(data, cache=root / "local.h5", log=messages.append, **COMMON)
    markers = root / "markers"
    markers.mkdir()
    faults = [{"batch": 1, "times": 1, "action": "raise", "markers": str(markers)},
              {"batch": 2, "times": 1, "action": "exit", "markers": str(markers)}]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("featurekit.engines.ray_engine.BatchWorker", faulty_worker(faults))
        started = time.perf_counter()
        distributed = extract(data, cache=root / "ray.h5", engine="ray", engine_options={"ray_workers": 1},
                              log=messages.append, **COMMON)
        seconds = time.perf_counter() - started
    print(f"ray engine run with two recovered faults: {seconds:.1f} s")
    return local, distributed, markers, messages


def test_ray_cache_equals_the_local_cache_row_for_row(ray_and_local):
    local, distributed, _, _ = ray_and_local
    assert distributed.status == "extracted" and distributed.n_computed == local.n_computed == 19
    paths, splits, labels, features, skipped, _ = _cache_rows(local.cache_path)
    other = _cache_rows(distributed.cache_path)
    assert other[0] == paths and other[1] == splits and other[2] == labels
    np.testing.assert_allclose(other[3], features, rtol=1e-6, atol=1e-7)
    assert other[4] == skipped


def test_undecodable_files_are_listed_as_by_the_local_engine(ray_and_local):
    local, distributed, _, _ = ray_and_local
    assert sorted(p for p, _ in distributed.skipped) == ["fake/text.png", "fake/truncated.jpg", "real/empty.jpg"]
    assert distributed.skipped == local.skipped


def test_a_worker_that_raises_once_and_one_that_dies_once_are_retried(ray_and_local):
    _, distributed, markers, _ = ray_and_local
    assert (markers / "fault-1-0").exists() and (markers / "fault-2-0").exists()  # both faults really fired
    assert distributed.n_images == 16


def test_the_cache_records_engine_and_cluster_and_info_shows_them(ray_and_local):
    from featurekit.cache.describe import describe_cache

    local, distributed, _, messages = ray_and_local
    attrs = _cache_rows(distributed.cache_path)[5]
    assert (attrs["engine"], attrs["engine_workers"], attrs["cluster_nodes"], attrs["cluster_cpus"],
            attrs["cluster_gpus"]) == ("ray", 1, 1, 2, 0)
    assert _cache_rows(local.cache_path)[5]["engine"] == "local"
    assert describe_cache(distributed.cache_path)["attributes"]["engine_workers"] == 1
    assert any("Ray: 1 node(s), 2 CPUs, 0 GPUs; 1 workers x 1 CPU" in m for m in messages)


def test_hand_made_features_of_a_view_through_ray_equal_the_local_engine(ray_address, tmp_path: Path):
    """Ray workers rebuild hand-made (numpy) embedders and get the view decoder shipped with the job."""
    from PIL import Image

    data = tmp_path / "faces"
    rng = np.random.default_rng(3)
    for name in ("real", "fake"):
        for i in range(6):
            (data / name).mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / name / f"img_{i}.png")
    common = {"backbone": "spam", "pooling": "none", "image_size": 32, "batch_size": 4, "progress": False,
              "view": "jpeg:60", "log": lambda m: None}
    local = extract(data, cache=tmp_path / "local.h5", **common)
    distributed = extract(data, cache=tmp_path / "ray.h5", engine="ray", engine_options={"ray_workers": 1}, **common)
    rows, other = _cache_rows(local.cache_path), _cache_rows(distributed.cache_path)
    assert other[0] == rows[0] and rows[5]["view"] == other[5]["view"] == "jpeg:60"
    np.testing.assert_array_equal(other[3], rows[3])


def test_every_cpu_asked_for_is_refused_before_anything_is_written(ray_address, tmp_path: Path):
    data = make_image_folder(tmp_path / "faces", per_class=2)
    with pytest.raises(FeaturekitError, match=r"2 Ray workers x 1 CPUs.*2 CPUs.*wait forever.*#44687"):
        extract(data, cache=tmp_path / "c.h5", engine="ray", engine_options={"ray_workers": 2}, log=lambda m: None,
                **COMMON)
    assert not (tmp_path / "c.h5").exists() and not PartialCache(tmp_path / "c.h5").directory.exists()


def test_a_batch_that_keeps_failing_stops_the_run_keeps_the_rest_and_a_rerun_completes(ray_address, tmp_path: Path,
                                                                                       monkeypatch):
    data = make_image_folder(tmp_path / "faces", per_class=8)
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setattr("featurekit.engines.ray_engine.BatchWorker",
                        faulty_worker([{"batch": 1, "times": 99, "action": "raise", "markers": str(markers)}]))
    cache = tmp_path / "c.h5"
    with pytest.raises(FeaturekitError, match=r"Batch 1 \(first file fake/img_04.png\) failed 3 times.*injected fault"
                                              r".*3 batches finished in this run are kept"):
        extract(data, cache=cache, engine="ray", engine_options={"ray_workers": 1}, log=lambda m: None, **COMMON)
    assert PartialCache(cache).done_batches() == {0, 2, 3} and not cache.exists()

    monkeypatch.undo()
    messages: list[str] = []
    resumed = extract(data, cache=cache, engine="ray", engine_options={"ray_workers": 1, "ship_bytes": True},
                      log=messages.append, **COMMON)
    assert resumed.status == "resumed" and resumed.n_computed == 4  # only batch 1 was submitted
    whole = extract(data, cache=tmp_path / "local.h5", log=lambda m: None, **COMMON)
    np.testing.assert_allclose(_cache_rows(cache)[3], _cache_rows(whole.cache_path)[3], rtol=1e-6, atol=1e-7)


def test_sigkill_of_the_driver_mid_run_then_rerun_gives_the_same_cache(ray_address, tmp_path: Path):
    data = make_image_folder(tmp_path / "faces", per_class=150, size=48)
    killed = tmp_path / "killed.h5"
    options = ["--backbone", "test_tiny", "--data", str(data), "--pooling", "avg", "--batch-size", "2",
               "--no-progress", "--engine", "ray", "--ray-address", ray_address, "--ray-workers", "1"]
    process = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "extract", *options, "--cache", str(killed)],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = PartialCache(killed)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if partial.directory.exists() and len(partial.done_batches()) >= 5:
            break
        time.sleep(0.002)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    done_before = len(partial.done_batches())
    assert not killed.exists(), "the run finished before it could be killed; the test proves nothing"
    assert 5 <= done_before < 150

    resumed = extract(data, cache=killed, engine="ray", engine_options={"ray_workers": 1}, log=lambda m: None,
                      **{**COMMON, "batch_size": 2})
    assert resumed.status == "resumed" and resumed.n_computed == 300 - 2 * done_before
    whole = extract(data, cache=tmp_path / "whole.h5", log=lambda m: None, **{**COMMON, "batch_size": 2})
    a, b = _cache_rows(killed), _cache_rows(whole.cache_path)
    assert a[0] == b[0]
    np.testing.assert_allclose(a[3], b[3], rtol=1e-6, atol=1e-7)


TWO_NODES = """
import json, sys, time
from ray.cluster_utils import Cluster
sys.path.insert(0, {repo!r})
from featurekit.extraction.extract import extract
from featurekit.cache import open_cache
cluster = Cluster(initialize_head=True, head_node_args={{"num_cpus": 1}})
cluster.add_node(num_cpus=2)
started = time.perf_counter()
common = dict(backbone="test_tiny", pooling="avg", batch_size=4, progress=False, log=lambda m: None)
result = extract({data!r}, cache={cache!r}, engine="ray",
                 engine_options={{"ray_address": cluster.address, "ray_workers": 2}}, **common)
seconds = time.perf_counter() - started
cluster.shutdown()
with open_cache(result.cache_path) as cache:
    attrs = {{k: cache.attrs[k] for k in ("engine_workers", "cluster_nodes", "cluster_cpus")}}
print(json.dumps({{"seconds": seconds, **attrs}}))
"""


def test_a_two_node_cluster_on_one_machine(tmp_path: Path):
    """Runs in its own process: a process joins one Ray cluster at a time, and this module's is running."""
    data = make_image_folder(tmp_path / "faces", per_class=8)
    cache = tmp_path / "two.h5"
    script = TWO_NODES.format(repo=str(REPO), data=str(data), cache=str(cache))
    completed = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    record = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"two-node run: {record['seconds']:.1f} s")
    assert record["cluster_nodes"] == 2 and record["cluster_cpus"] == 3 and record["engine_workers"] == 2
    whole = extract(data, cache=tmp_path / "local.h5", log=lambda m: None, **COMMON)
    np.testing.assert_allclose(_cache_rows(cache)[3], _cache_rows(whole.cache_path)[3], rtol=1e-6, atol=1e-7)
