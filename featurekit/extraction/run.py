"""Running a settled plan: the engine computes the missing batches, then each target cache is finalised."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from featurekit.cache import IDENTITY_KEYS, finalize_cache, library_versions, open_cache
from featurekit.engines import Advance, BatchSink, ExtractionJob
from featurekit.extraction.plan import ExtractionPlan, Target
from featurekit.views import ViewDecoder

# `progress(total_images, label)` -> a context manager yielding `advance(n_images)`; e.g.
# `featurekit.extraction.progress.rich_progress_bar`. None shows nothing.
ProgressFactory = Callable[[int, str], AbstractContextManager[Advance]]


@dataclass
class ExtractResult:
    """What an extraction did, for the closing line and for callers."""

    cache_path: Path
    status: str  # "extracted", "resumed" or "up-to-date"
    n_images: int
    n_skipped: int
    n_computed: int
    seconds: float
    weights_label: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unsupported: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.n_computed / self.seconds if self.seconds > 0 else 0.0


def run(plan: ExtractionPlan, engine: Any, progress: ProgressFactory | None = None) -> list[ExtractResult]:
    """Compute the batches the target caches miss with `engine`, write them, finalise every cache.

    Args:
        plan: A plan settled under the caches' locks (`featurekit.extraction.plan.settle_targets`).
        engine: An entered engine (`EngineSettings.open`, `featurekit.engines`); None when every cache is up to date.
        progress: Shows the progress (see ProgressFactory); None (or False) shows nothing.

    Returns:
        One ExtractResult per target, in the plan's order.
    """
    for target in plan.active:
        if not target.partial.exists():
            target.partial.start(_partial_record(plan, target))
    n_computed, seconds = _compute(plan, engine, progress)
    for target in plan.active:  # an engine was entered for them
        finalize_cache(target.partial, plan.folder.samples, _cache_attributes(plan, target, engine.record()),
                       ignored=plan.folder.unsupported)
    return [_result(plan, target, n_computed, seconds) for target in plan.targets]


def _partial_record(plan: ExtractionPlan, target: Target) -> dict[str, Any]:
    """What an interrupted run leaves for its resume to check: identity, settings, batch layout, command."""
    return {key: target.identity[key] for key in IDENTITY_KEYS} | plan.settings | {
        "batch_size": plan.batch_size, "n_batches": plan.n_batches, "n_samples": len(plan.folder.samples)} | (
        {"command": plan.request.command} if plan.request.command else {})


def _compute(plan: ExtractionPlan, engine: Any, progress: ProgressFactory | None) -> tuple[int, float]:
    """Have the engine compute the batches some target misses; each target's part is written as it arrives.

    Returns:
        (images computed, seconds).
    """
    active = plan.active
    todo = sorted({b for target in active for b in range(plan.n_batches) if b not in target.done})
    if not todo:
        return 0, 0.0
    job = ExtractionJob(root=plan.folder.root, paths=tuple(sample.path for sample in plan.folder.samples),
                        todo=tuple(todo), batch_size=plan.batch_size, image_size=plan.embedder.image_size,
                        decode_options=_decode_options(plan), embedder_request=plan.embedder_request,
                        descriptions=tuple(tap.describe() for tap in plan.embedder.embedders))
    engine.warm_up(job, plan.embedder)  # e.g. compile the forward pass before the clock and the bar start
    label = f"{plan.request.backbone} features" + (f" ({len(active)} taps)" if len(active) > 1 else "")
    bar = progress(job.n_rows, label) if progress else nullcontext(lambda n: None)
    started = time.perf_counter()
    with bar as advance, BatchSink(active, plan.batch_size, plan.request.dtype) as sink:
        engine.run(job, plan.embedder, sink, advance)
    return job.n_rows, time.perf_counter() - started


def _decode_options(plan: ExtractionPlan) -> dict[str, Any]:
    """Options of the per-image decoder (`featurekit.pipeline.image_batches`): the pixel limit, and a
    `featurekit.views.ViewDecoder` when a view degrades the images or a hand-made feature needs them as stored.

    The decoder is plain data, so an engine may ship these options to other processes.
    """
    view, stored_size = plan.request.view, getattr(plan.embedder, "stored_size", None)
    options: dict[str, Any] = {"max_pixels": plan.request.max_pixels}
    if view is not None or stored_size is not None:
        options["decode"] = ViewDecoder(view, str(plan.folder.root), stored_size, plan.request.backbone)
    return options


def _cache_attributes(plan: ExtractionPlan, target: Target, engine_record: dict[str, Any]) -> dict[str, Any]:
    """Every attribute a finished cache records besides its rows."""
    folder = plan.folder
    return {**target.identity, "weights": plan.embedder_request.weights, "class_names": list(folder.class_names),
            "data_root": str(folder.root.resolve()), "layout": folder.layout, "config": dict(plan.request.config),
            "versions": library_versions(), "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "batch_size": plan.batch_size, "seed": plan.request.seed, "resize": plan.settings["resize"],
            **engine_record, **{f"train_overlap_{split}": count for split, count in plan.overlap.items()}}


def _result(plan: ExtractionPlan, target: Target, n_computed: int, seconds: float) -> ExtractResult:
    with open_cache(target.path) as finished:
        skipped, n_rows = finished.skipped, finished.n_rows
    computed = 0 if target.status == "up-to-date" else n_computed
    return ExtractResult(target.path, target.status, n_rows, len(skipped), computed, seconds if computed else 0.0,
                         target.identity["weights_label"], skipped=skipped, unsupported=plan.folder.unsupported)
