"""Which engine computes an extraction's batches, and its settings: the engine registry, checked before any image
is read. Each entry checks and builds itself (`featurekit.engines.job.Engine`); nothing branches on its kind."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping

from featurekit.engines.job import Engine
from featurekit.engines.local import LocalEngine
from featurekit.engines.ray_engine import RayEngine
from featurekit.errors import FeaturekitError, given, refuse_unknown
from featurekit.parameters import CPUS_PER_WORKER, ENGINE, GPUS_PER_WORKER, PREFETCH_BATCHES, RAY_TIMEOUT

ENGINE_KINDS: dict[str, type[Engine]] = {engine.name: engine for engine in (LocalEngine, RayEngine)}


@dataclass(frozen=True)
class EngineSettings:
    """Which engine computes the batches, and its settings; made (and checked) by `engine_settings`.

    `workers` are decode threads (of this process for local, of each Ray worker for ray; None: the default);
    the other fields are the engine options of the `extract` command (see `featurekit.engines.ray_engine.RayEngine`
    for the ray ones; `ray_address` is joined within `ray_timeout` seconds).
    """

    name: str = ENGINE
    workers: int | None = None
    prefetch_batches: int = PREFETCH_BATCHES
    ray_address: str | None = None
    ray_workers: int | None = None
    cpus_per_worker: float = CPUS_PER_WORKER
    gpus_per_worker: float = GPUS_PER_WORKER
    ship_bytes: bool = False
    ray_timeout: float = RAY_TIMEOUT

    def open(self, log: Callable[[str], None] = print) -> Engine:
        """The engine, to enter before any cache is locked: entering joins (or starts) a Ray cluster and checks the
        request against it; leaving releases it.

        Raises:
            FeaturekitError: a cluster that cannot be reached, or a request the cluster cannot run.
        """
        return ENGINE_KINDS[self.name](self, log)


# The engine options of the `extract` command (every field but the engine's name and `workers`).
ENGINE_OPTIONS = tuple(f.name for f in fields(EngineSettings))[2:]


def engine_settings(engine: str = "local", engine_options: Mapping[str, Any] | None = None,
                    workers: int | None = None) -> EngineSettings:
    """The checked settings of an engine: refuses an unknown engine or option, an option the engine does not
    take (ray options for the local engine), or an engine that cannot run here (ray without Ray installed).
    Options left out (or None) keep their declared defaults. Runs before any image is read."""
    refuse_unknown("engine", engine, tuple(ENGINE_KINDS))
    options = {name: value for name, value in (engine_options or {}).items() if value is not None}
    kind = ENGINE_KINDS[engine]
    for name, value in options.items():
        refuse_unknown("engine_option", name, ENGINE_OPTIONS)
        if name not in kind.options and value != getattr(EngineSettings, name):  # the field's default
            takers = [other.name for other in ENGINE_KINDS.values() if name in other.options]
            raise FeaturekitError(
                f"`{name}` applies to the {' and '.join(takers)} engine only.", received=given(name, value),
                fix=f"Add `engine` {takers[0]}, or leave `{name}` out.")
    kind.check_available()
    return EngineSettings(engine, workers, **options)
