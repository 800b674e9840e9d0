"""Engines without a Ray cluster: the engine interface, the local engine, the batch sink, the ray engine's
planning and its actor class run in this process (no Ray needed), options and the missing-extra error."""

from __future__ import annotations

import builtins
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import make_image_folder, write_image
from conftest import extract_tiny as _extract  # the tests' shorthand
from featurekit.cache import PartialCache, open_cache
from featurekit.engines import ENGINE_KINDS, BatchSink, ExtractionJob, engine_settings
from featurekit.engines.ray_engine import plan_workers
from featurekit.engines.ray_worker import BatchWorker
from featurekit.errors import FeaturekitError
from featurekit.parameters import ENGINES


# --------------------------------------------------------------------------------------------------
# The local engine and what every cache records


@pytest.mark.backend
def test_local_engine_records_itself_and_info_shows_it(image_folder: Path, tmp_path: Path):
    from featurekit.cache.describe import describe_cache

    result = _extract(image_folder, tmp_path / "c.h5", engine="local", engine_options={"prefetch_batches": 0})
    with open_cache(result.cache_path) as cache:
        assert cache.attrs["engine"] == "local" and cache.attrs["engine_workers"] == 1
        assert cache.attrs["cluster_nodes"] == 1 and cache.attrs["cluster_cpus"] >= 1
        assert cache.attrs["cluster_gpus"] == 0  # this CI machine has none
    shown = describe_cache(result.cache_path)["attributes"]
    assert shown["engine"] == "local" and "cluster_cpus" in shown


def test_prefetch_depth_does_not_change_the_features(image_folder: Path, tmp_path: Path):
    none = _extract(image_folder, tmp_path / "a.h5", engine_options={"prefetch_batches": 0})
    deep = _extract(image_folder, tmp_path / "b.h5", engine_options={"prefetch_batches": 5})
    with open_cache(none.cache_path) as a, open_cache(deep.cache_path) as b:
        np.testing.assert_array_equal(a.load()[0], b.load()[0])


def test_engine_is_not_identity_a_cache_made_by_one_engine_is_up_to_date_for_another(image_folder: Path,
                                                                                     tmp_path: Path):
    from featurekit.cache import IDENTITY_KEYS
    from featurekit.cache.describe import ENGINE_ATTRIBUTES

    assert not set(ENGINE_ATTRIBUTES) & set(IDENTITY_KEYS)
    _extract(image_folder, tmp_path / "c.h5")
    with open_cache(tmp_path / "c.h5") as cache:
        assert "engine" not in cache.attrs["config"]  # extract() has no config; the record is its own attribute


def test_unknown_engine_and_ray_options_without_ray_are_refused_before_reading(tmp_path: Path):
    missing = tmp_path / "nowhere"  # not even scanned: the request is refused first
    with pytest.raises(FeaturekitError, match="Unknown engine 'spark'.*local, ray"):
        _extract(missing, tmp_path / "c.h5", engine="spark")
    with pytest.raises(FeaturekitError, match="`ray_workers` applies to the ray engine only.*`engine` ray"):
        _extract(missing, tmp_path / "c.h5", engine_options={"ray_workers": 2})
    assert engine_settings("local", {"ray_workers": None}).cpus_per_worker == 1.0
    assert tuple(ENGINE_KINDS) == ENGINES  # the registry holds every engine the `engine` option offers


def test_ray_engine_without_ray_names_the_extra(monkeypatch, image_folder: Path, tmp_path: Path):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(FeaturekitError, match=r"pip install 'featurekit\[ray\]'"):
        _extract(image_folder, tmp_path / "c.h5", engine="ray")
    assert not (tmp_path / "c.h5.partial").exists()


def test_cli_engine_ray_without_ray_exits_2_with_the_extra(monkeypatch, image_folder: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from featurekit.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError, as where Ray is missing or broken
    result = CliRunner().invoke(app, ["extract", "--backbone", "test_tiny", "--data", str(image_folder), "--engine",
                                      "ray", "--cache", str(tmp_path / "c.h5"), "--no-progress"])
    assert result.exit_code == 2
    assert "pip install 'featurekit[ray]'" in result.output and "--engine local" in result.output  # the way out, in flags


def test_engine_options_are_declared_for_extract():
    from featurekit.options import options_for, validate

    declared = options_for("extract")
    assert declared["engine"].choices == ("local", "ray") and declared["engine"].default == "local"
    assert declared["cpus_per_worker"].default == 1.0 and declared["gpus_per_worker"].default == 0.0
    with pytest.raises(FeaturekitError, match="cpus_per_worker"):
        validate("extract", {"cpus_per_worker": 0})
    with pytest.raises(FeaturekitError, match="ray_workers"):
        validate("extract", {"ray_workers": 0})


# --------------------------------------------------------------------------------------------------
# The batch sink


def test_sink_writes_kept_and_skipped_rows_only_to_caches_that_miss_the_batch(tmp_path: Path):
    class Target:
        def __init__(self, index, path, done):
            self.index, self.partial, self.done = index, PartialCache(path), done
            self.partial.start({"batch_size": 3, "n_samples": 6, "n_batches": 2})

    a, b = Target(0, tmp_path / "a.h5", set()), Target(1, tmp_path / "b.h5", {1})
    with BatchSink([a, b], batch_size=3, dtype="float32") as sink:
        outputs = [np.arange(6, dtype=np.float32).reshape(3, 2), np.ones((3, 4), np.float32)]
        sink.put(1, outputs, np.array([True, False, True]), ["", "broken", ""])
    assert a.partial.done_batches() == {1} and b.partial.done_batches() == set()
    import h5py

    with h5py.File(a.partial.batch_path(1)) as f:
        assert f["row_indices"][()].tolist() == [3, 5] and f["skipped_indices"][()].tolist() == [4]
        np.testing.assert_array_equal(f["features"][()], [[0, 1], [4, 5]])


class _HookedTarget:
    """A sink target of three one-row batches whose batch writes go through `hook(real_write, index, *args)`."""

    index, done = 0, set()

    def __init__(self, folder: Path, hook):
        self.partial = PartialCache(folder / "a.h5")
        self.partial.start({"batch_size": 1, "n_samples": 3, "n_batches": 3})
        real_write = self.partial.write_batch
        self.partial.write_batch = lambda index, *args: hook(real_write, index, *args)


def test_sink_raises_a_failed_write_and_keeps_the_batches_before(tmp_path: Path):
    def full_disk_at_batch_1(real_write, index, *args):
        if index == 1:
            raise OSError(28, "No space left on device")
        real_write(index, *args)

    target = _HookedTarget(tmp_path, full_disk_at_batch_1)
    with pytest.raises(OSError, match="No space"):
        with BatchSink([target], batch_size=1, dtype="float32") as sink:
            for index in range(3):
                sink.put(index, [np.ones((1, 2), np.float32)], np.array([True]), [""])
    assert 0 in target.partial.done_batches() and 1 not in target.partial.done_batches()


# --------------------------------------------------------------------------------------------------
# Ray: planning the workers against the cluster (before anything launches)


TWO_CPUS = ((2.0,), (0.0,))  # CPUs and GPUs of each node


def test_workers_holding_every_cpu_are_refused_as_the_44687_hang():
    with pytest.raises(FeaturekitError, match=r"2 Ray workers x 1 CPUs.*#44687") as refused:
        plan_workers(2, 1.0, 0.0, *TWO_CPUS)
    assert "ray_workers=2" in str(refused.value) and "cpus_per_worker=0.5" in str(refused.value)
    assert plan_workers(2, 0.5, 0.0, *TWO_CPUS) == 2
    assert plan_workers(1, 1.0, 0.0, *TWO_CPUS) == 1


def test_default_worker_count_fills_the_cluster_but_one_cpu():
    assert plan_workers(None, 1.0, 0.0, (8.0, 8.0), (0.0, 0.0)) == 15
    assert plan_workers(None, 0.5, 0.0, *TWO_CPUS) == 2
    assert plan_workers(None, 1.0, 1.0, (16.0,), (1.0,)) == 1
    assert plan_workers(None, 1.0, 0.5, (16.0,), (1.0,)) == 2
    with pytest.raises(FeaturekitError, match="no room for one Ray worker"):
        plan_workers(None, 1.0, 0.0, (1.0,), (0.0,))


def test_gpus_the_cluster_does_not_have_are_refused():
    with pytest.raises(FeaturekitError, match="no node of the cluster has that many"):
        plan_workers(1, 1.0, 1.0, *TWO_CPUS)
    with pytest.raises(FeaturekitError, match=r"at most 1 Ray workers of 1 CPUs and 1 GPUs each \(1 GPUs in all\), "
                                              "not 2"):
        plan_workers(2, 1.0, 1.0, (16.0,), (1.0,))


def test_workers_too_large_for_any_node_are_refused():
    with pytest.raises(FeaturekitError, match="no node of the cluster has that many"):
        plan_workers(1, 3.0, 0.0, (2.0, 2.0), (0.0, 0.0))
    odd_nodes = ((1.9, 1.9, 1.9), (0.0, 0.0, 0.0))  # 5.7 CPUs, but one 1-CPU worker per node
    assert plan_workers(3, 1.0, 0.0, *odd_nodes) == 3 and plan_workers(None, 1.0, 0.0, *odd_nodes) == 3
    with pytest.raises(FeaturekitError, match="nodes hold at most 3 Ray workers"):
        plan_workers(4, 1.0, 0.0, *odd_nodes)


# --------------------------------------------------------------------------------------------------
# Ray: the actor class, run here in this process


@pytest.fixture
def worker_setup(tmp_path: Path):
    from featurekit.data import scan_image_folder
    from featurekit.backbones.embedder import build_multi_embedder

    data = make_image_folder(tmp_path / "faces", per_class=3)
    (data / "real" / "empty.jpg").write_bytes(b"")
    good = write_image(tmp_path / "good.jpg", seed=5, size=64, fmt="JPEG")
    (data / "fake" / "truncated.jpg").write_bytes(good.read_bytes()[:300])
    folder = scan_image_folder(data)
    from featurekit.extraction.embedder_request import EmbedderRequest
    from featurekit.extraction.request import Tap

    request = EmbedderRequest("test_tiny", (Tap(None, "avg"), Tap(None, "max")), weights="none", image_size=None,
                              preprocessing=None, seed=0, precision="float32", batch_size=8)
    embedder = build_multi_embedder("test_tiny", taps=[(None, "avg"), (None, "max")], weights="none",
                                    precision="float32", batch_size=8)
    job = ExtractionJob(root=folder.root, paths=tuple(s.path for s in folder.samples), todo=(0,), batch_size=8,
                        image_size=embedder.image_size, decode_options={"max_pixels": 10**7}, embedder_request=request,
                        descriptions=tuple(e.describe() for e in embedder.embedders))
    return job, embedder


def faulty_worker(faults: list[dict], base: type = BatchWorker) -> type:
    """A `BatchWorker` whose batch `fault["batch"]` raises (action "raise") or exits its process ("exit") on its
    first `fault["times"]` tries, counted with marker files in `fault["markers"]` so restarted actors count too.
    Defined in a function, so Ray ships it by value to its actors."""

    class FaultyWorker(base):
        def _compute(self, index, *args):
            for fault in faults:
                if int(fault["batch"]) == index:
                    _fail_once(fault, index)
            return super()._compute(index, *args)

    def _fail_once(fault: dict, index: int) -> None:
        import os

        for attempt in range(int(fault.get("times", 1))):
            try:
                os.close(os.open(Path(fault["markers"]) / f"fault-{index}-{attempt}",
                                 os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue
            if fault.get("action") == "exit":
                os._exit(1)
            raise RuntimeError(f"injected fault in batch {index} (try {attempt + 1})")

    return FaultyWorker


def _worker(job: ExtractionJob, worker_class: type = BatchWorker, **changes) -> BatchWorker:
    """The actor as Ray builds it, for `job` with `changes` (fields of the job)."""
    return worker_class(replace(job, **changes), decode_threads=2)


def _row(job: ExtractionJob, index: int, ship_bytes: bool) -> dict[str, np.ndarray]:
    """One Ray Data row as `map_batches(batch_size=1, batch_format="numpy")` hands it to the actor."""
    from featurekit.engines.ray_engine import _batch_row

    row = _batch_row(job, index, ship_bytes)
    column = np.empty(1, dtype=object)
    column[0] = np.array(row["blobs"], dtype=object)
    return {"batch": np.array([row["batch"]]), "blobs": column, "unread": np.array([row["unread"]], dtype=object)}


def _features(result: dict[str, np.ndarray], dim: int, tap: int = 0) -> np.ndarray:
    return np.frombuffer(result[f"features_{tap}"][0], np.float32).reshape(int(result["n"][0]), dim)


@pytest.mark.parametrize("ship_bytes", [False, True])
def test_the_actor_computes_what_the_local_engine_computes(worker_setup, ship_bytes: bool):
    from featurekit.pipeline import image_batches

    job, embedder = worker_setup
    result = _worker(job)(_row(job, 0, ship_bytes))
    assert result["error"][0] == ""
    images, ok, reasons = next(image_batches(job.root, job.paths, job.image_size, 8, **job.decode_options))
    expected = embedder(images)
    assert np.frombuffer(result["ok"][0], bool).tolist() == ok.tolist() and not ok.all()
    assert json.loads(result["reasons"][0]) == reasons
    for tap, dim in enumerate(d["feature_dim"] for d in job.descriptions):
        np.testing.assert_array_equal(_features(result, dim, tap)[ok], expected[tap][ok])


@pytest.mark.parametrize("ship_bytes", [False, True])
def test_the_actor_draws_a_random_view_as_the_local_engine_does(worker_setup, ship_bytes: bool):
    from featurekit.pipeline import image_batches
    from featurekit.views import ViewDecoder, parse_view

    job, embedder = worker_setup  # each image's draws are seeded by its path in the data folder, wherever it is read
    job = replace(job, decode_options={"max_pixels": 10**7,
                                       "decode": ViewDecoder(parse_view("jpeg:20-90+blur:0-2"), str(job.root))})
    result = _worker(job)(_row(job, 0, ship_bytes))
    images, ok, _ = next(image_batches(job.root, job.paths, job.image_size, 8, **job.decode_options))
    expected = embedder(images)
    for tap, dim in enumerate(d["feature_dim"] for d in job.descriptions):
        np.testing.assert_array_equal(_features(result, dim, tap)[ok], expected[tap][ok])


def test_shipped_bytes_of_a_file_the_driver_cannot_read_give_the_local_reason(worker_setup):
    job, _ = worker_setup
    (job.root / job.paths[1]).unlink()  # vanished between the scan and the read
    by_path = _worker(job)(_row(job, 0, False))
    by_bytes = _worker(job)(_row(job, 0, True))
    reasons = json.loads(by_bytes["reasons"][0])
    assert reasons == json.loads(by_path["reasons"][0]) and reasons[1] != ""
    assert np.frombuffer(by_bytes["ok"][0], bool)[1] == False  # noqa: E712


def test_the_actor_retries_a_batch_that_raises_once(worker_setup, tmp_path: Path):
    job, _ = worker_setup
    worker = faulty_worker([{"batch": 0, "times": 1, "action": "raise", "markers": str(tmp_path)}])
    result = _worker(job, worker)(_row(job, 0, False))
    assert result["error"][0] == "" and (tmp_path / "fault-0-0").exists()


def test_a_batch_that_keeps_failing_comes_back_as_an_error_not_an_exception(worker_setup,
                                                                            tmp_path: Path):
    job, _ = worker_setup
    worker = faulty_worker([{"batch": 0, "times": 5, "action": "raise", "markers": str(tmp_path)}])
    result = _worker(job, worker)(_row(job, 0, False))
    assert "injected fault in batch 0 (try 3)" in result["error"][0] and not result["permanent"][0]
    assert len(list(tmp_path.glob("fault-0-*"))) == 3  # three tries, then given up


def test_a_worker_whose_embedder_differs_fails_every_batch_at_once(worker_setup):
    job, _ = worker_setup
    wrong = [dict(d, weights_sha256="0" * 64) for d in job.descriptions]
    result = _worker(job, descriptions=wrong)(_row(job, 0, False))
    assert result["permanent"][0] and "weights_sha256" in result["error"][0]
    unbuildable = _worker(job, embedder_request=replace(job.embedder_request, backbone="no_such_net"))
    assert "could not build its embedder" in unbuildable(_row(job, 0, False))["error"][0]


def test_a_worker_that_cannot_see_the_data_folder_says_to_ship_bytes(worker_setup, tmp_path: Path):
    job, _ = worker_setup
    result = _worker(job, root=tmp_path / "not-on-this-node")(_row(job, 0, False))
    assert result["permanent"][0] and "not visible" in result["error"][0] and "ship_bytes" in result["error"][0]


# --------------------------------------------------------------------------------------------------
# Ray: an address where nothing listens (issue 16, item 12)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.timeout(120)
def test_a_ray_address_where_nothing_listens_fails_in_seconds_before_the_lock(image_folder: Path, tmp_path: Path):
    import time

    pytest.importorskip("ray.data", reason="the ray extra is not installed (pip install 'featurekit[ray]')")
    import ray

    assert not ray.is_initialized()  # else the engine would use that Ray and never dial the address
    address = f"127.0.0.1:{_free_port()}"
    cache = tmp_path / "c.h5"
    started = time.perf_counter()
    with pytest.raises(FeaturekitError, match=rf"Nothing answers at the Ray address {address}.*ray_address="):
        _extract(image_folder, cache, engine="ray", engine_options={"ray_address": address, "ray_timeout": 5.0})
    assert time.perf_counter() - started < 60
    assert not Path(f"{cache}.lock").exists() and not PartialCache(cache).directory.exists()  # the lock never taken


def test_the_ray_timeout_is_declared_and_only_a_listening_address_passes():
    import socket

    from featurekit.engines.ray_engine import check_reachable
    from featurekit.options import options_for, validate

    assert options_for("extract")["ray_timeout"].default == 30.0
    with pytest.raises(FeaturekitError, match="ray_timeout"):
        validate("extract", {"ray_timeout": 0})
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(4)
        port = listening.getsockname()[1]
        check_reachable(f"127.0.0.1:{port}", 5.0)
        check_reachable(f"ray://127.0.0.1:{port}", 5.0)
    with pytest.raises(FeaturekitError, match=rf"ray://127.0.0.1:{port} \(waited up to 2 s"):
        check_reachable(f"ray://127.0.0.1:{port}", 2.0)


def test_sink_writes_every_queued_batch_when_the_run_fails(tmp_path: Path):
    """A run that stops with an error (a batch failed on a Ray worker) keeps every batch it computed before."""
    import time

    def slow_write(real_write, *args):
        time.sleep(0.2)  # the writer is still busy when the run fails
        real_write(*args)

    target = _HookedTarget(tmp_path, slow_write)
    with pytest.raises(RuntimeError, match="engine failed"):
        with BatchSink([target], batch_size=1, dtype="float32", threads=1) as sink:
            for index in range(3):
                sink.put(index, [np.ones((1, 2), np.float32)], np.array([True]), [""])
            raise RuntimeError("engine failed")
    assert target.partial.done_batches() == {0, 1, 2}
