"""Samples x backbone -> cache: run a frozen backbone over a data folder exactly once.

Batches are fixed slices of the sorted sample list, so a resumed run computes exactly the batches an
uninterrupted run would have computed, and the finished cache is the same row for row.
"""

from __future__ import annotations

import shlex
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from featurekit.cache import (
    IDENTITY_KEYS,
    PartialCache,
    default_cache_path,
    describe_differences,
    finalize_cache,
    library_versions,
    open_cache,
    writer_lock,
)
from featurekit.data import DEFAULT_SPLIT_FRACTIONS, scan_image_folder
from featurekit.errors import FeaturekitError, WeightsUnavailableError

DTYPES = ("float32", "float16")


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


def extract(
    data: str | Path,
    backbone: str,
    weights: str | list[str] = "default",
    image_size: int | None = None,
    layer: str | None = None,
    pooling: str = "flatten",
    preprocessing: str | None = None,
    batch_size: int = 32,
    dtype: str = "float32",
    cache: str | Path | None = None,
    cache_dir: str | Path = "cache",
    overwrite: bool = False,
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
    seed: int = 0,
    on_missing_weights: str = "error",
    config: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> ExtractResult:
    """Extract embeddings of every image of `data` with one backbone into an HDF5 cache.

    Args:
        data: Data folder (`DIR/<class>/...` or `DIR/{train,valid,test}/<class>/...`).
        backbone: Registry name.
        weights: "default", "imagenet", "none" (seeded random init) or a weights file path; or a list of
            these, tried in order (the first that can be had is used, and the choice is logged).
        image_size: Square input size; default the backbone's native size.
        layer: Layer to tap instead of the last block.
        pooling: flatten, avg, max or meanstd.
        preprocessing: Override of the backbone's own preprocessing (e.g. the study's "rescale").
        batch_size: Images per forward pass (and per crash-safe batch file).
        dtype: Stored feature dtype, float32 or float16.
        cache: Cache path; default `cache_dir/<data>-<backbone>[-<layer>]-<pooling>-<size>.h5`.
        overwrite: Rebuild a cache that exists or differs from the request.
        split_fractions: train/valid/test fractions for the class-folder layout.
        seed: Seed of random-init weights.
        on_missing_weights: "error", or "random" to continue with seeded random weights (labelled so)
            when pretrained weights cannot be had.
        config: The resolved config, stored in the cache.
        log: Where messages go.
        progress: Show a progress bar.
    """
    from featurekit.backbones import get_spec

    if dtype not in DTYPES:
        raise FeaturekitError(f"Unknown feature dtype {dtype!r}.", received=f"--dtype {dtype}",
                              fix=f"Use one of: {', '.join(DTYPES)}.")
    if batch_size < 1:
        raise FeaturekitError("The batch size must be at least 1.", received=f"--batch-size {batch_size}",
                              fix="Use e.g. --batch-size 32.")
    if on_missing_weights not in ("error", "random"):
        raise FeaturekitError(f"Unknown on_missing_weights {on_missing_weights!r}.",
                              received=f"--on-missing-weights {on_missing_weights}", fix="Use error or random.")
    folder = scan_image_folder(data, split_fractions)
    embedder = _first_available_embedder(
        [weights] if isinstance(weights, str) else list(weights), on_missing_weights, log,
        backbone=backbone, image_size=image_size, layer=layer, pooling=pooling, preprocessing=preprocessing, seed=seed)
    description = embedder.describe()
    cache_path = Path(cache) if cache else default_cache_path(
        folder.root, backbone, layer, pooling, description["image_size"], cache_dir,
        tag=_tag(description, get_spec(backbone).preprocessing))
    identity = {**description, "dtype": dtype, "data_fingerprint": folder.fingerprint()}

    with writer_lock(cache_path):
        if cache_path.exists():
            if overwrite:
                cache_path.unlink()
            else:
                with open_cache(cache_path) as existing:
                    differences = describe_differences(existing.attrs, identity)
                if differences:
                    raise FeaturekitError(
                        f"Cache {cache_path} exists but differs from this request: {'; '.join(differences)}.",
                        received=f"--cache {cache_path}",
                        fix="Pass --overwrite to rebuild it, or --cache PATH to write another file.")
                log(f"Cache {cache_path} is up to date ({len(folder.samples)} images); nothing to compute.")
                return ExtractResult(cache_path, "up-to-date", len(folder.samples), 0, 0, 0.0,
                                     description["weights_label"], unsupported=folder.unsupported)

        partial = PartialCache(cache_path)
        n_batches = -(-len(folder.samples) // batch_size)
        request = {key: identity[key] for key in IDENTITY_KEYS} | {
            "batch_size": batch_size, "n_batches": n_batches, "n_samples": len(folder.samples),
            "command": " ".join(shlex.quote(a) for a in ["python", "cli.py", *sys.argv[1:]]) if sys.argv[1:] else ""}
        if partial.exists() and overwrite:
            partial.remove()
        if partial.exists():
            stored = partial.read_request()
            differences = describe_differences(stored, identity)
            if differences:
                raise FeaturekitError(
                    f"An interrupted extraction of {cache_path} differs from this request: {'; '.join(differences)}.",
                    received=f"--cache {cache_path}",
                    fix="Re-run the original command to finish it, or pass --overwrite to start over.")
            if stored["batch_size"] != batch_size:
                log(f"Resuming with the interrupted run's batch size {stored['batch_size']} (asked: {batch_size}), "
                    "so its finished batches stay valid.")
                batch_size, n_batches = stored["batch_size"], stored["n_batches"]
            request = stored
        else:
            partial.start(request)

        done = partial.done_batches()
        todo = [b for b in range(n_batches) if b not in done]
        status = "resumed" if done else "extracted"
        if done:
            log(f"Resuming {cache_path}: {len(done)} of {n_batches} batches already done.")
        n_computed, seconds = _run_batches(embedder, folder, partial, todo, batch_size, dtype, progress)

        attrs = {**identity, "weights": description["weights"], "random_features": description["random_features"],
                 "class_names": list(folder.class_names), "data_root": str(folder.root.resolve()),
                 "layout": folder.layout, "versions": library_versions(), "config": config or {},
                 "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                 "batch_size": batch_size, "resize": "pillow-bilinear", "seed": seed,
                 "backbone_params": description.get("backbone_params", 0)}
        finalize_cache(partial, folder.samples, attrs)

    with open_cache(cache_path) as finished:
        skipped = finished.skipped
        n_rows = finished.n_rows
    return ExtractResult(cache_path, status, n_rows, len(skipped), n_computed, seconds,
                         description["weights_label"], skipped=skipped, unsupported=folder.unsupported)


def extract_from_options(options: dict[str, Any], log: Callable[[str], None] = print,
                         progress: bool = True) -> ExtractResult:
    """`extract` with a resolved config (see featurekit.config.EXTRACT_DEFAULTS); the config is stored too."""
    from featurekit.config import parse_split_fractions

    for key, example in (("backbone", "--backbone vgg16"), ("data", "--data DIR")):
        if options.get(key) in (None, ""):
            raise FeaturekitError(f"Missing option --{key}.", received="no value on the command line or in --config",
                                  fix=f"Pass it, e.g. {example}, or set `{key}` in a --config file.")
    stored = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    return extract(
        data=options["data"], backbone=options["backbone"], weights=options["weights"],
        image_size=options["image_size"], layer=options["layer"], pooling=options["pooling"],
        preprocessing=options["preprocessing"], batch_size=options["batch_size"], dtype=options["dtype"],
        cache=options["cache"], cache_dir=options["cache_dir"], overwrite=options["overwrite"],
        split_fractions=parse_split_fractions(options["split"]), seed=options["seed"],
        on_missing_weights=options["on_missing_weights"], config=stored, log=log, progress=progress)


def _first_available_embedder(candidates: list[str], on_missing_weights: str, log: Callable[[str], None], **options):
    """Build with the first weights that can be had; else fail, or fall back to labelled random weights."""
    from featurekit.embedder import build_embedder

    failures: list[WeightsUnavailableError] = []
    for candidate in candidates:
        try:
            embedder = build_embedder(weights=candidate, **options)
        except WeightsUnavailableError as error:
            failures.append(error)
            continue
        if failures:
            log(f"Using weights {candidate!r} ({embedder.describe()['weights_label']}); earlier choices were "
                f"not available: {'; '.join(e.problem for e in failures)}")
        return embedder
    if on_missing_weights != "random":
        if len(failures) == 1:
            raise failures[0]
        raise WeightsUnavailableError(
            "None of the weights asked for could be had: " + "; ".join(e.problem for e in failures),
            received=f"weights {candidates}", fix=failures[0].fix)
    log(f"[bold yellow]WARNING[/]: {'; '.join(e.problem for e in failures)}\n"
        f"Continuing with seeded random-init weights (seed {options['seed']}): every output of this run is a "
        "RANDOM-FEATURES baseline, not an ImageNet result.")
    return build_embedder(weights="none", **options)


def _tag(description: dict[str, Any], native_preprocessing: str) -> str | None:
    """Name suffix for caches that are not the backbone's standard recipe, so they never collide."""
    parts = []
    if description["preprocessing"] != native_preprocessing:
        parts.append(description["preprocessing"])
    if description.get("random_features"):
        parts.append("random")
    return "-".join(parts) or None


def _run_batches(embedder, folder, partial: PartialCache, todo: list[int], batch_size: int, dtype: str,
                 progress: bool) -> tuple[int, float]:
    """Forward the missing batches and write each as soon as it is done; returns (images computed, seconds)."""
    from featurekit.pipeline import image_dataset

    if not todo:
        return 0, 0.0
    rows = np.concatenate([np.arange(b * batch_size, min((b + 1) * batch_size, len(folder.samples))) for b in todo])
    size = embedder.describe()["image_size"]
    dataset = image_dataset(folder.root, [folder.samples[i].path for i in rows], size, batch_size)
    total = len(rows)
    embedder(np.zeros((1, size, size, 3), np.uint8))  # trace the graph before the clock and the bar start
    started = time.perf_counter()
    # Batch files are written by one background thread, so the next forward pass never waits on the disk.
    with _progress_bar(progress, total, f"{embedder.describe()['backbone']} features") as advance, \
            ThreadPoolExecutor(max_workers=1) as writer:
        pending: deque[Future] = deque()
        offset = 0
        for batch_index, (images, ok, reasons) in zip(todo, dataset):
            ok = ok.numpy()
            batch_rows = rows[offset:offset + len(ok)]
            offset += len(ok)
            features = embedder(images)[ok]
            skipped_reasons = [r.decode() for r in reasons.numpy()[~ok]]
            pending.append(writer.submit(partial.write_batch, batch_index, batch_rows[ok], features,
                                         batch_rows[~ok], skipped_reasons, dtype))
            while len(pending) > 2 or (pending and pending[0].done()):
                pending.popleft().result()  # re-raises a failed write here, in order
            advance(len(ok))
        for future in pending:
            future.result()
    return total, time.perf_counter() - started


class _progress_bar:
    """A rich progress bar with images/s and time left; silent when disabled."""

    def __init__(self, enabled: bool, total: int, description: str):
        self.enabled, self.total, self.description = enabled, total, description

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
            transient=False)
        self._progress.start()
        task = self._progress.add_task(self.description, total=self.total, rate="")
        start = time.perf_counter()

        def advance(n: int) -> None:
            completed = self._progress.tasks[0].completed + n
            rate = completed / max(time.perf_counter() - start, 1e-9)
            self._progress.update(task, advance=n, rate=f"{rate:.1f} img/s")

        return advance

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._progress.stop()
