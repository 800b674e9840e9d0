"""The ray engine: Ray Data actors decode and embed whole batches; this process writes them.

The unit of work is the batch, the same fixed slice of the sorted sample list as the local engine. One Ray
Data row per batch to compute (its index, and with `ship_bytes` its files' bytes) goes through `map_batches`
to a pool of actors (`ActorPoolStrategy`); each actor builds ONE embedder from the registry and the driver's
recorded request (backbone, taps, resolved weights, precision: never a pickled model), checks that it
describes itself exactly as the driver's does, and decodes with the same `featurekit.data.load_image` and
options. Results come back in any order, each carrying its batch index, and the driver writes each one as
it arrives (`BatchSink` -> `PartialCache.write_batch`): a killed driver keeps every batch written, and a
rerun submits only the batches still missing.

Failures:
- An actor process that dies (a crash, the OOM killer) is restarted by Ray and its batch retried, up to
  `BATCH_ATTEMPTS` times.
- An exception while computing a batch is retried by the actor, up to `BATCH_ATTEMPTS` tries in all; a
  batch that still fails comes back as data (the actor lives on) and, once the other batches are written,
  the run stops with an error naming the batch, its first file and the error. Every finished batch is kept.
- A worker that cannot work at all (its embedder differs from the driver's, the weights file or the data
  folder is not on its node) fails every batch at once, without retries: they would fail the same way.

Before launching, the request is checked against the cluster: actors holding every CPU leave none to feed
them and Ray Data waits forever (ray-project/ray#44687), so at least one CPU stays free; GPUs asked for
must exist. The driver's Keras backend and featurekit code travel to the workers in the runtime
environment (`KERAS_BACKEND`, `py_modules`), so the workers compute exactly what the driver would.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import warnings
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

import featurekit
from featurekit.engines.job import Advance, BatchSink, Engine, ExtractionJob
from featurekit.engines.ray_worker import BATCH_ATTEMPTS, BatchWorker
from featurekit.errors import FeaturekitError, given

# CPUs kept free of actors: Ray Data needs one to schedule and feed the actors (ray-project/ray#44687).
RESERVED_CPUS = 1
# Environment the driver passes on to every worker (its Keras backend is added explicitly).
FORWARDED_VARIABLES = ("TF_CPP_MIN_LOG_LEVEL", "KERAS_HOME")
_EPSILON = 1e-9


def plan_workers(requested: int | None, cpus_per_worker: float, gpus_per_worker: float,
                 node_cpus: tuple[float, ...], node_gpus: tuple[float, ...]) -> int:
    """How many actors to start; refuses, before anything launches, a request that could never run.

    Args:
        requested: Actors asked for; None for as many as the cluster holds (one CPU kept free).
        cpus_per_worker: CPUs each actor reserves (> 0).
        gpus_per_worker: GPUs each actor reserves (>= 0).
        node_cpus, node_gpus: The CPUs and GPUs of each live node of the cluster.

    Raises:
        FeaturekitError: the actors would hold every CPU (the run would hang, ray-project/ray#44687), the nodes
            cannot hold that many actors (more GPUs than the cluster has), or no node is large enough for one actor.
    """
    fix_workers = "`ray_workers` / `cpus_per_worker` / `gpus_per_worker`"
    total_cpus, total_gpus = sum(node_cpus), sum(node_gpus)
    received = (f"{given('ray_workers', requested)}, {given('cpus_per_worker', _number(cpus_per_worker))}, "
                f"{given('gpus_per_worker', _number(gpus_per_worker))} on a cluster of {len(node_cpus)} node(s) with "
                f"{_number(total_cpus)} CPUs and {_number(total_gpus)} GPUs")
    most_cpus, most_gpus = max(node_cpus, default=0), max(node_gpus, default=0)
    if cpus_per_worker > most_cpus + _EPSILON or gpus_per_worker > most_gpus + _EPSILON:
        raise FeaturekitError(
            f"Each Ray worker asks for {_number(cpus_per_worker)} CPUs and {_number(gpus_per_worker)} GPUs, but no "
            "node of the cluster has that many (the run would wait forever for them).", received=received,
            fix=f"Use at most {_number(most_cpus - RESERVED_CPUS)} `cpus_per_worker` and {_number(most_gpus)} "
                f"`gpus_per_worker` (0 on a CPU cluster).")

    def fits(have: float, need: float) -> float:  # actors of `need` that `have` holds
        return math.floor(have / need + _EPSILON) if need > 0 else math.inf

    spare_cpus = total_cpus - RESERVED_CPUS
    by_cpus = max(fits(spare_cpus, cpus_per_worker), 0)
    # Counted node by node (no actor spans two nodes), which also bounds the GPUs asked for in all.
    by_nodes = sum(min(fits(cpus, cpus_per_worker), fits(gpus, gpus_per_worker))
                   for cpus, gpus in zip(node_cpus, node_gpus))
    if requested is None:
        if min(by_cpus, by_nodes) < 1:
            raise FeaturekitError(
                f"The cluster has no room for one Ray worker of {_number(cpus_per_worker)} CPUs once one CPU is kept "
                "free for Ray Data to feed it (ray-project/ray#44687).", received=received,
                fix=f"Use fewer CPUs per worker (e.g. {given('cpus_per_worker', 0.5)}), a larger cluster, or "
                    f"`engine` local.")
        return min(by_cpus, by_nodes)
    if requested * cpus_per_worker > spare_cpus + _EPSILON:
        raise FeaturekitError(
            f"{requested} Ray workers x {_number(cpus_per_worker)} CPUs would hold "
            f"{_number(requested * cpus_per_worker)} of the cluster's {_number(total_cpus)} CPUs, leaving less than "
            f"{RESERVED_CPUS} for Ray Data to feed them: the run would wait forever (ray-project/ray#44687).",
            received=received,
            fix=f"Use at most {by_cpus} workers of {_number(cpus_per_worker)} CPUs, or fewer CPUs per worker "
                f"(e.g. {given('ray_workers', requested)} with "
                f"{given('cpus_per_worker', _number(_fraction(spare_cpus, requested)))}) ({fix_workers}).")
    if requested > by_nodes:  # too many GPUs asked for, or CPUs split across nodes so that no actor fits
        raise FeaturekitError(
            f"The cluster's nodes hold at most {by_nodes} Ray workers of {_number(cpus_per_worker)} CPUs and "
            f"{_number(gpus_per_worker)} GPUs each ({_number(total_gpus)} GPUs in all), not {requested}.",
            received=received, fix=f"Use at most {by_nodes} workers, or smaller ones ({fix_workers}).")
    return requested


def _fraction(cpus: float, workers: int) -> float:
    """The largest CPUs per worker, in steps of 0.25, that `workers` actors can share `cpus` with."""
    return max(0.25, math.floor(cpus / max(workers, 1) * 4) / 4)


def _number(value: float) -> float | int:
    """1.0 -> 1 (for messages and records), 0.5 stays 0.5."""
    return int(value) if float(value).is_integer() else float(value)


class RayEngine(Engine):
    """Computes the batches on a Ray cluster with Ray Data actors (see the module docstring).

    Use as a context manager: entering joins the cluster at `settings.ray_address` (or the Ray this process
    already runs, or starts a local one) and checks the request against it; leaving shuts down a Ray it started.

    Args:
        settings: A `featurekit.engines.settings.EngineSettings`: `ray_address` the cluster to join ("auto",
            "ray://host:10001"; None starts a local Ray on this machine unless this process is already connected
            to one), answering within `ray_timeout` seconds; `ray_workers` actors (None: as many as the cluster
            holds with one CPU kept free), each reserving `cpus_per_worker` CPUs and `gpus_per_worker` GPUs (0.5:
            two actors share one GPU); `ship_bytes` sends each file's bytes to the actors instead of its path, for
            nodes that do not see the data folder (the bytes of every batch to compute are put in Ray's object
            store up front; it spills to disk when full); `workers` decode threads in each actor (None: one per CPU
            it reserves, at least one).
        log: Where messages go.
    """

    name = "ray"
    options = ("prefetch_batches", "ray_address", "ray_workers", "cpus_per_worker", "gpus_per_worker", "ship_bytes",
               "ray_timeout")
    computes_here = False
    # Entering sets `workers` (the actors planned) and `cluster` (the record of the cluster joined); whether this
    # engine started that Ray:
    _started = False

    @classmethod
    def check_available(cls) -> None:
        try:
            import ray.data  # noqa: F401  (a Ray that is installed but broken is refused here too)
        except ImportError as error:
            raise FeaturekitError(f"The ray engine needs Ray Data, which cannot be imported ({error}).",
                                  received=given("engine", "ray"), fix="Install the extra: pip install "
                                  f"'featurekit[ray]' (or use {given('engine', 'local')}).") from None

    def __enter__(self) -> "RayEngine":
        import ray

        settings = self.settings
        if not ray.is_initialized():
            if settings.ray_address:
                check_reachable(settings.ray_address, settings.ray_timeout)
            try:
                with _quiet_ray():
                    ray.init(address=settings.ray_address, include_dashboard=False, log_to_driver=False,
                             logging_level=logging.ERROR, runtime_env=self._runtime_env(whole_job=True))
            except (ConnectionError, RuntimeError, ValueError) as error:
                where = f"the Ray cluster at {settings.ray_address}" if settings.ray_address else "a local Ray"
                raise FeaturekitError(f"Could not start or join {where} ({error}).",
                                      received=given("ray_address", settings.ray_address),
                                      fix=f"Check that the cluster runs (`ray status`), or leave "
                                          f"`ray_address` out to start a local Ray.") from None
            self._started = True
        try:
            nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
            cpus, gpus = (tuple(float(node.get(kind, 0)) for node in nodes) for kind in ("CPU", "GPU"))
            self.workers = plan_workers(settings.ray_workers, settings.cpus_per_worker, settings.gpus_per_worker,
                                        cpus, gpus)
        except BaseException:
            self.__exit__()
            raise
        self.cluster = {"cluster_nodes": len(nodes), "cluster_cpus": _number(sum(cpus)),
                        "cluster_gpus": _number(sum(gpus))}
        per_gpu = f", {_number(settings.gpus_per_worker)} GPU" if settings.gpus_per_worker else ""
        self.log(f"Ray: {len(nodes)} node(s), {_number(sum(cpus))} CPUs, {_number(sum(gpus))} "
                 f"GPUs; {self.workers} workers x {_number(settings.cpus_per_worker)} CPU{per_gpu}"
                 f"{', file bytes shipped' if settings.ship_bytes else ''}.")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def record(self) -> dict[str, Any]:
        return {"engine": self.name, "engine_workers": self.workers, **self.cluster}

    def run(self, job: ExtractionJob, embedder: Any, sink: BatchSink, advance: Advance) -> None:
        """Compute the job's batches on the cluster; each result is written by `sink` as it arrives.

        `embedder` (the driver's) is not sent anywhere: actors build their own with `job.embedder_request.build()`.

        One Ray Data pass: every batch to compute is a row, each actor returns a result row, or why it failed.

        Raises:
            FeaturekitError: a batch failed `BATCH_ATTEMPTS` times, a worker cannot work, or Ray failed; the batches
                finished before are written and kept.
        """
        import ray
        from ray.data import ActorPoolStrategy

        rows = [_batch_row(job, index, self.settings.ship_bytes) for index in job.todo]
        failed: dict[int, tuple[str, bool]] = {}  # batch: (error, whether no retry could help)
        finished: set[int] = set()
        with _quiet_ray(), warnings.catch_warnings():
            # Bounded actor restarts and task retries are Ray remote arguments, deprecated in Ray Data 2.60 in
            # favour of named parameters that do not cover them yet; its own defaults retry forever.
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*")
            results = ray.data.from_items(rows, override_num_blocks=len(rows)).map_batches(
                BatchWorker, batch_size=1, batch_format="numpy",
                compute=ActorPoolStrategy(size=max(1, min(self.workers, len(rows)))),
                num_cpus=self.settings.cpus_per_worker, num_gpus=self.settings.gpus_per_worker or None,
                fn_constructor_kwargs={"job": replace(job, root=Path(job.root).resolve()), "decode_threads":
                                       self.settings.workers or max(1, math.ceil(self.settings.cpus_per_worker))},
                runtime_env=None if self._started else self._runtime_env(whole_job=False),
                max_restarts=BATCH_ATTEMPTS, max_task_retries=BATCH_ATTEMPTS - 1)
            try:
                for row in results.iter_rows():
                    index = int(row["batch"])
                    if row["error"]:
                        failed[index] = (str(row["error"]), bool(row["permanent"]))
                        continue
                    n = int(row["n"])
                    outputs = [np.frombuffer(row[f"features_{i}"], dtype=np.float32).reshape(n, -1)
                               for i in range(len(job.descriptions))]
                    sink.put(index, outputs, np.frombuffer(row["ok"], dtype=bool), json.loads(row["reasons"]))
                    finished.add(index)
                    advance(n)
            except ray.exceptions.RayError as error:
                unfinished = [b for b in job.todo if b not in finished and b not in failed]
                raise FeaturekitError(
                    f"The Ray run failed ({_first_line(error)}); batches {_short_list(unfinished)} were not "
                    f"finished. The {len(finished)} batches finished are kept.",
                    received=f"{given('engine', 'ray')} with {self.workers} workers",
                    fix="Fix the cause (a worker that keeps dying: memory, a crash in a decoder) and run the same "
                        "command again: it computes only the missing batches.") from None
        if failed:
            index, (error, permanent) = min(failed.items())
            tries = "" if permanent else f" {BATCH_ATTEMPTS} times"
            others = f" ({len(failed) - 1} other batches failed too)" if len(failed) > 1 else ""
            raise FeaturekitError(
                f"Batch {index} (first file {job.batch_paths(index)[0]}) failed{tries} on the Ray workers: {error}"
                f"{others}. The {len(finished)} batches finished in this run are kept.",
                received=f"{given('engine', 'ray')}, batch {index} of {job.batch_size} images",
                fix="Fix the cause and run the same command again: it computes only the missing batches "
                    f"(or use `engine` local to see the error on this machine).")

    def _runtime_env(self, whole_job: bool) -> dict[str, Any]:
        """The driver's Keras backend and a few settings for every worker, and this featurekit's code: uploaded to
        every node for a Ray this engine starts or joins (`whole_job`: Ray accepts local code folders only for a
        whole job); else, for a Ray the caller connected to, first on the path (nodes that do not have that folder
        import the featurekit installed there; the embedder check catches a mismatch)."""
        from featurekit.backend import active_backend

        env = {name: os.environ[name] for name in FORWARDED_VARIABLES if name in os.environ}
        env["KERAS_BACKEND"] = active_backend()
        if 0 < self.settings.gpus_per_worker < 1:  # actors sharing a GPU must not each reserve most of its memory
            env.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", f"{0.9 * self.settings.gpus_per_worker:.2f}")
            env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        code = Path(featurekit.__file__).resolve().parent
        if whole_job:
            return {"env_vars": env, "py_modules": [str(code)]}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code.parent), os.environ.get("PYTHONPATH", "")) if p)
        return {"env_vars": env}


def _batch_row(job: ExtractionJob, index: int, ship_bytes: bool) -> dict[str, Any]:
    """One Ray Data row: a batch index, and with ship_bytes its files' bytes (or why they cannot be read)."""
    shipped = ([_read_for_shipping(Path(job.root) / path, job.image_size, job.decode_options)
                for path in job.batch_paths(index)] if ship_bytes else [])
    return {"batch": index, "blobs": [blob for blob, _ in shipped],
            "unread": json.dumps([reason for _, reason in shipped])}


def check_reachable(address: str, timeout: float) -> None:
    """Refuse, within `timeout` seconds, a Ray address (`HOST:PORT` or `ray://HOST:PORT`) where nothing listens;
    Ray itself retries such an address for many minutes. Other forms ("auto") are left to Ray."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise FeaturekitError(
            f"Nothing answers at the Ray address {address} (waited up to {timeout:g} s: {error}).",
            received=given("ray_address", address),
            fix=f"Start the cluster there (`ray start --head`) and check the host and port (`ray status`), raise "
                "`ray_timeout` for a slow network, or leave `ray_address` out to start a local Ray.") from None


def _read_for_shipping(path: Path, image_size: int, decode_options: dict[str, Any]) -> tuple[bytes | None, str]:
    """A regular file's bytes; for anything else (a folder, a FIFO, an unreadable file) the reason the local
    engine would give, found by asking `load_image` itself here (it refuses such files without reading them)."""
    from featurekit.data import ImageDecodeError, load_image

    with suppress(OSError):
        if path.is_file():  # through a symbolic link too
            return path.read_bytes(), ""
    try:
        load_image(path, image_size, **decode_options)
    except ImageDecodeError as error:
        return None, str(error) or "could not be decoded"
    return None, "could not be read on the driver"


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[-1] if lines else ''}"[:500]


def _short_list(values: list[int], limit: int = 10) -> str:
    return ", ".join(map(str, values[:limit])) + (f" and {len(values) - limit} more" if len(values) > limit else "")


@contextmanager
def _quiet_ray() -> Iterator[None]:
    """Ray Data's INFO lines and its note that progress bars are off would interleave with featurekit's own bar."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    levels = {logger: logger.level for logger in map(logging.getLogger, ("ray", "ray.data"))}
    for logger in levels:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in levels.items():
            logger.setLevel(level)
