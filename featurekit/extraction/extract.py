"""Samples x backbone -> cache: run a frozen backbone over a data folder exactly once.

Batches are fixed slices of the sorted sample list, so a resumed run computes exactly the batches an
uninterrupted run would have computed, and the finished cache is the same row for row.

An extraction is request -> plan -> run (`featurekit.extraction`): `extract_many` (or `extract_from_options`)
checks the settings against their declarations once, `make_request` makes them one typed request,
`plan_extraction` scans the images, builds the embedder and names the target caches, `settle_targets` (under the
caches' locks) sees what is cached already, and `run` has the engine compute the missing batches.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable

from featurekit.cache import writer_lock
from featurekit.config import parse_split_fractions
from featurekit.engines import ENGINE_KINDS, ENGINE_OPTIONS
from featurekit.errors import FeaturekitError, given
from featurekit.extraction.plan import plan_extraction, scan_for_extraction, settle_targets
from featurekit.extraction.request import ALL_AS_TEST, ExtractionRequest, make_request
from featurekit.extraction.run import ExtractResult, ProgressFactory, run
from featurekit.options import check_value, complete, name_list, options_for
from featurekit.views import parse_views

# Settings of `extract_many` checked against the declarations of the `extract` options of the same name
# (`featurekit.options`); so are `poolings` (as `pooling`) and the engine options. The others are checked where they
# are read (weights, view, subset, the engine; image size and preprocessing by the registry entry, which knows its
# own: a hand-made feature records and accepts preprocessing "none").
DECLARED_SETTINGS = ("precision", "batch_size", "dtype", "seed", "overwrite", "on_missing_weights",
                     "allow_train_overlap", "max_pixels", "workers")
# Options of the `extract` command that `make_request` takes as they are.
REQUEST_OPTIONS = ("data", "backbone", "weights", "image_size", "preprocessing", "cache", "cache_dir", "engine",
                   *DECLARED_SETTINGS)


def extract(data: str | Path, backbone: str, weights: str | list[str] | None = None, image_size: int | None = None,
            layer: str | None = None, pooling: str | None = None, **settings: Any) -> ExtractResult:
    """Extract one cache: `extract_many` with a single layer and pooling (None: the declared default)."""
    poolings = {"poolings": [pooling]} if pooling else {}
    return extract_many(data, backbone, weights, image_size, layers=[layer], **poolings, **settings)[0]


def extract_many(data: str | Path, backbone: str, weights: str | list[str] | None = None,
                 image_size: int | None = None, *, log: Callable[[str], None] = print,
                 progress: ProgressFactory | None = None, **settings: Any) -> list[ExtractResult]:
    """Extract embeddings of every image of `data` with one backbone: one cache per layer x pooling.

    All taps come from ONE forward pass per batch, so exploring layers costs one pass over the images.

    Args:
        data: Data folder (`DIR/<class>/...` or `DIR/{train,valid,test}/<class>/...`).
        backbone: Registry name.
        weights: "default", "imagenet", "none" (seeded random init) or a weights file path; or a list of
            these, tried in order (the first that can be had is used, and the choice is logged).
        image_size: Square input size; default the backbone's native size.
        log: Where messages go.
        progress: `progress(total_images, label)` -> a context manager yielding `advance(n)` (e.g.
            `featurekit.extraction.progress.rich_progress_bar`); None (or False) shows nothing.
        **settings: The other settings of `featurekit.extraction.request.make_request` and `ExtractionRequest`:
            layers, poolings (flatten, avg, max, meanstd), preprocessing (an override of the backbone's own),
            batch_size (images per forward pass and per crash-safe batch file; never more than the images),
            dtype (stored: float32 or float16), cache (one tap only) or cache_dir, overwrite, split_fractions,
            seed (of random-init weights), on_missing_weights ("error", or "random": seeded random weights,
            labelled so), precision ("auto", the default: bfloat16 where the hardware computes it natively, else
            float32; or "float32", "bfloat16", "float16"; the resolved value is recorded and is part of each
            cache's identity), max_pixels (larger images are skipped and listed), workers (decode threads),
            engine and engine_options ("local" or "ray"; see `featurekit.engines.engine_settings`),
            allow_train_overlap, view, subset, expected_identity, config (stored in each cache) and command (the
            command line recorded for the resume hint; "" from Python).

    Returns:
        One ExtractResult per layer x pooling, layers outer.

    Raises:
        FeaturekitError: a setting outside its declaration (`featurekit.options`: type, bounds, choices), named as
            passed, before anything is read; or what the request, the plan or the engine refuse.

    Hand-made features (`spam`, `spectrum`) are backbones here: their `layers` are parameter variants
    (`threshold=2+order=1`), their pooling is "none", and they run in numpy without importing Keras.
    """
    settings = {name: _checked(name, value) for name, value in settings.items()}
    if settings.get("engine_options"):
        settings["engine_options"] = {name: _checked(name, value) for name, value in settings["engine_options"].items()}
    return extract_request(make_request(data, backbone, weights, image_size, **settings), log, progress)


def _checked(name: str, value: Any) -> Any:
    """`value` checked and converted by the declaration of the option the setting `name` stands for (see
    DECLARED_SETTINGS; engine options are named as their options); other settings as they are."""
    option = "pooling" if name == "poolings" else name
    return value if value is None or option not in (*DECLARED_SETTINGS, *ENGINE_OPTIONS, "pooling") else check_value(
        options_for("extract")[option], value, parameter=name)


def extract_request(request: ExtractionRequest, log: Callable[[str], None] = print,
                    progress: ProgressFactory | None = None) -> list[ExtractResult]:
    """Plan and run one checked request. The engine is ready (a Ray cluster joined, or refused naming its address)
    before any cache is locked, and every check is done before the first batch is computed."""
    plan = plan_extraction(request, log)
    with ExitStack() as stack:
        engine = stack.enter_context(request.engine.open(log)) if plan.may_compute() else None
        for target in plan.targets:
            stack.enter_context(writer_lock(target.path))
        settle_targets(plan, log, check_memory=ENGINE_KINDS[request.engine.name].computes_here)
        if plan.active and engine is None:  # a cache removed since the plan was made
            engine = stack.enter_context(request.engine.open(log))
        return run(plan, engine, progress)


def extract_from_options(options: dict[str, Any], log: Callable[[str], None] = print,
                         progress: ProgressFactory | None = None, command: str = "") -> list[ExtractResult]:
    """`extract_many` with the options of the `extract` command; the resolved options are stored in each cache.

    Options left out take their declared defaults (featurekit.options), so a Python caller, a config
    file and the command line get the same ones. `layer` and `pooling` may be lists or comma-separated
    strings: every combination is extracted in one pass. `view` may list several views (`none` for the clean
    images): each is its own pass, restricted to the split `views_split` names (all by default).

    Args:
        options: Options of the `extract` command.
        log: Where messages go.
        progress: See `extract_many`; None shows nothing.
        command: The command line to record for the resume hint ("" when called from Python).

    Raises:
        FeaturekitError: an unknown option, a value of the wrong type, or no `backbone` or `data`.
    """
    options = complete("extract", options)
    views = parse_views(options["view"]) or [None]
    if options["cache"] and len(views) > 1:
        raise FeaturekitError(f"`cache` names one file, but several views were asked for.",
                              received=f"{given('cache', str(options['cache']))} with {len(views)} views",
                              fix=f"Leave `cache` out (each view then gets its default name).")
    settings = {name: options[name] for name in REQUEST_OPTIONS} | {
        "layers": name_list(options["layer"]), "poolings": name_list(options["pooling"]),
        "split_fractions": parse_split_fractions(options["split"]),
        "engine_options": {name: options[name] for name in ENGINE_OPTIONS}, "config": options, "command": command}
    subset = None if options["views_split"] == "all" else options["views_split"]  # None: every split
    requests = [make_request(**settings, view=view, subset=subset if view is not None else None) for view in views]
    # One pass per view: the forward pass, not the decode, is what costs (a JPEG decode is a few ms against tens
    # of ms of CNN per image on a CPU), so sharing decodes between views would save little.
    return [result for request in requests for result in extract_request(request, log, progress)]


__all__ = ["ALL_AS_TEST", "ENGINE_OPTIONS", "ExtractResult", "ExtractionRequest", "extract",
           "extract_from_options", "extract_many", "extract_request", "make_request", "scan_for_extraction"]
