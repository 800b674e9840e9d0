"""Samples x backbone -> cache: run a frozen backbone over a data folder exactly once.

Batches are fixed slices of the sorted sample list, so a resumed run computes exactly the batches an
uninterrupted run would have computed, and the finished cache is the same row for row.
"""

from __future__ import annotations

import shlex
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np
from rich.markup import escape

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
from featurekit.data import DEFAULT_MAX_PIXELS, DEFAULT_SPLIT_FRACTIONS, SPLITS, ImageFolder, scan_image_folder
from featurekit.errors import FeaturekitError, WeightsUnavailableError, given, option_name
from featurekit.options import default as declared

DTYPES = ("float32", "float16")
# Which rows a cache holds (its `subset` attribute, part of its identity): "" every image in its split; a split
# name only that split's images (a robustness view needs only the test split: 15% of the work); ALL_AS_TEST
# every image of the folder as a test image (another test set, scored by probes fitted elsewhere).
ALL_AS_TEST = "all-as-test"
SUBSETS = ("", *SPLITS, ALL_AS_TEST)
# Options of the extract command that go to the engine (see featurekit.engines.open_engine).
ENGINE_OPTIONS = ("prefetch_batches", "ray_address", "ray_workers", "cpus_per_worker", "gpus_per_worker", "ship_bytes")


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
    **options: Any,
) -> ExtractResult:
    """Extract one cache: `extract_many` with a single layer and pooling (same arguments)."""
    return extract_many(data, backbone, weights, image_size, layers=[layer], poolings=[pooling], **options)[0]


@dataclass
class _Target:
    """One cache being written: a tap and pooling of the shared forward pass."""

    index: int
    requested_layer: str | None
    description: dict[str, Any]
    identity: dict[str, Any]
    path: Path
    partial: PartialCache
    status: str = "extracted"
    done: set[int] = field(default_factory=set)


def extract_many(
    data: str | Path,
    backbone: str,
    weights: str | list[str] = declared("extract", "weights"),
    image_size: int | None = None,
    layers: list[str | None] = (None,),
    poolings: list[str] = (declared("extract", "pooling"),),
    preprocessing: str | None = None,
    batch_size: int = declared("extract", "batch_size"),
    dtype: str = declared("extract", "dtype"),
    cache: str | Path | None = None,
    cache_dir: str | Path = declared("extract", "cache_dir"),
    overwrite: bool = declared("extract", "overwrite"),
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
    seed: int = declared("extract", "seed"),
    on_missing_weights: str = declared("extract", "on_missing_weights"),
    precision: str = declared("extract", "precision"),
    allow_train_overlap: bool = declared("extract", "allow_train_overlap"),
    max_pixels: int | None = declared("extract", "max_pixels"),
    workers: int | None = None,
    view: str | Any | None = None,
    subset: str | None = None,
    expected_identity: dict[str, Any] | None = None,
    engine: str = declared("extract", "engine"),
    engine_options: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
) -> list[ExtractResult]:
    """Extract embeddings of every image of `data` with one backbone: one cache per layer x pooling.

    All taps come from ONE forward pass per batch, so exploring layers costs one pass over the images.

    Args:
        data: Data folder (`DIR/<class>/...` or `DIR/{train,valid,test}/<class>/...`).
        backbone: Registry name.
        weights: "default", "imagenet", "none" (seeded random init) or a weights file path; or a list of
            these, tried in order (the first that can be had is used, and the choice is logged).
        image_size: Square input size; default the backbone's native size.
        layers: Layers to tap; None taps the last block.
        poolings: flatten, avg, max and/or meanstd.
        preprocessing: Override of the backbone's own preprocessing (e.g. the study's "rescale").
        batch_size: Images per forward pass (and per crash-safe batch file).
        dtype: Stored feature dtype, float32 or float16.
        cache: Cache path (one tap only); default `cache_dir/<data>-<backbone>[-<layer>]-<pooling>-<size>.h5`.
        overwrite: Rebuild caches that exist or differ from the request.
        split_fractions: train/valid/test fractions for the class-folder layout.
        seed: Seed of random-init weights.
        on_missing_weights: "error", or "random" to continue with seeded random weights (labelled so)
            when pretrained weights cannot be had.
        precision: The backbone's compute precision: "float32", "bfloat16", "float16", or "auto" (bfloat16
            where the hardware has it). Part of each cache's identity (the resolved value is recorded); `dtype`
            still says how the features are stored.
        max_pixels: Largest image (width x height) decoded; larger files are skipped and listed (a guard against
            decompression bombs). None: no limit of featurekit's own.
        workers: Decode threads (of this process, or with the ray engine of each Ray actor); None for the default.
        engine: Where the batches are computed: "local" (this process) or "ray" (Ray Data actors; the extra
            `featurekit[ray]`). The features are the same; the engine and cluster size are recorded in each cache.
        engine_options: prefetch_batches; for the ray engine ray_address, ray_workers, cpus_per_worker,
            gpus_per_worker, ship_bytes (see `featurekit.engines.open_engine`). Missing ones take their declared
            defaults.
        allow_train_overlap: Extract even when the weights come from `train-backbone` and were trained on
            images this extraction puts in its valid or test split (refused by default: probe scores on
            them would be optimistic). The caches then record the overlap per split and are flagged.
        view: A robustness view (`featurekit.views`: "jpeg:50", "blur:1", "jpeg:50+blur:1", ...) applied to every
            decoded image before the backbone's resize; None for the clean images. Part of each cache's identity
            and of its default name (`...-view-jpeg50.h5`).
        subset: Which rows to extract: None or "" every image; "train", "valid" or "test" only that split (the
            cache records it, and its data fingerprint stays the folder's, so it matches the full cache's);
            "all-as-test" every image as a test image (another test set).
        expected_identity: Identity attributes of a training cache that these features must equal (`compare`
            scoring its probes elsewhere); the view and the subset may differ, and so may the images when
            `data_fingerprint` is left out. A difference (weights changed, another precision) is refused, naming
            it, before any image is read.
        config: The resolved config, stored in each cache.
        log: Where messages go.
        progress: Show a progress bar.

    Returns:
        One ExtractResult per layer x pooling, layers outer.

    Hand-made features (`spam`, `spectrum`) are backbones here: their `layers` are parameter variants
    (`threshold=2+order=1`), their pooling is "none", and they run in numpy without importing Keras; see
    `featurekit.handmade.embedder` for what their caches record.
    """
    from featurekit.backbones import HANDMADE_POOLING, get_spec
    from featurekit.engines import check_engine_request, open_engine
    from featurekit.views import parse_view, view_name

    # Every check that needs no image comes first: a refused request reads and writes nothing.
    spec = get_spec(backbone)
    if spec.is_handmade:
        from featurekit.handmade.embedder import check_handmade_request

        check_handmade_request(spec, image_size, list(poolings), preprocessing, precision, weights)
        poolings, precision = [HANDMADE_POOLING], "float32"
    else:
        from featurekit.backend import resolve_precision
        from featurekit.embedder import check_image_size

        check_image_size(spec, image_size)
        precision = resolve_precision(precision)
    view = parse_view(view)
    subset = _check_subset(subset)
    if dtype not in DTYPES:
        raise FeaturekitError(f"Unknown feature dtype {dtype!r}.", received=given("dtype", dtype),
                              fix=f"Use one of: {', '.join(DTYPES)}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise FeaturekitError("The batch size must be a whole number, at least 1.",
                              received=given("batch_size", batch_size),
                              fix=f"Use e.g. {option_name('batch_size')} 32.")
    if on_missing_weights not in ("error", "random"):
        raise FeaturekitError(f"Unknown on_missing_weights {on_missing_weights!r}.",
                              received=given("on_missing_weights", on_missing_weights), fix="Use error or random.")
    taps = [(layer, pooling) for layer in dict.fromkeys(layers) for pooling in dict.fromkeys(poolings)]
    if cache and len(taps) > 1:
        raise FeaturekitError(f"{option_name('cache')} names one file, but several layers or poolings were asked for.",
                              received=f"{given('cache', str(cache))} with {len(taps)} taps",
                              fix=f"Leave {option_name('cache')} out (names then follow the default pattern) and use "
                              f"{option_name('cache_dir')}.")
    check_engine_request(engine, engine_options)
    folder, data_fingerprint = scan_for_extraction(data, split_fractions, subset)
    build_options = dict(backbone=backbone, taps=taps, image_size=image_size, preprocessing=preprocessing, seed=seed,
                         precision=precision, batch_size=batch_size)
    if spec.is_handmade:
        from featurekit.handmade.embedder import build_handmade_embedder

        embedder = build_handmade_embedder(backbone, taps, image_size, batch_size, preprocessing, precision, weights)
        overlap: dict[str, int] = {}
    else:
        embedder = _first_available_embedder(
            [weights] if isinstance(weights, str) else list(weights), on_missing_weights, log, **build_options)
        overlap = _train_overlap(embedder.embedders[0].describe(), folder, allow_train_overlap, log)
    targets = []
    for index, ((layer, pooling), tap) in enumerate(zip(taps, embedder.embedders)):
        description = tap.describe()
        path = Path(cache) if cache else default_cache_path(
            folder.root, backbone, _name_layer(spec, layer, tap), description["pooling"], description["image_size"],
            cache_dir, tag=_tag(description, spec.preprocessing, view, subset))
        identity = {**description, "dtype": dtype, "data_fingerprint": data_fingerprint, "view": view_name(view),
                    "subset": subset}
        if expected_identity is not None:
            _check_expected_identity(identity, expected_identity)
        targets.append(_Target(index, layer, description, identity, path, PartialCache(path)))
    stored_size = getattr(embedder, "stored_size", None)
    if stored_size is not None:
        from featurekit.handmade.embedder import refuse_other_sizes

        refuse_other_sizes(folder.root, [sample.path for sample in folder.samples], stored_size, backbone)

    with ExitStack() as locks:
        for target in targets:
            locks.enter_context(writer_lock(target.path))
        for target in targets:
            _check_existing(target, overwrite, log, len(folder.samples))
        active = [t for t in targets if t.status != "up-to-date"]
        # The engine is ready (a Ray cluster joined and the request checked) before anything is written.
        runner = locks.enter_context(open_engine(engine, engine_options, workers, log)) if active else None
        batch_size = _agreed_batch_size(active, batch_size, log)
        embedder.batch_size = batch_size
        n_batches = -(-len(folder.samples) // batch_size)
        command = " ".join(shlex.quote(a) for a in ["python", "cli.py", *sys.argv[1:]]) if sys.argv[1:] else ""
        for target in active:
            if target.partial.exists():
                target.done = target.partial.done_batches()
                target.status = "resumed" if target.done else "extracted"
                log(f"Resuming {target.path}: {len(target.done)} of {n_batches} batches already done.")
            else:
                target.partial.start({key: target.identity[key] for key in IDENTITY_KEYS} | {
                    "batch_size": batch_size, "n_batches": n_batches, "n_samples": len(folder.samples),
                    "command": command})
        todo = sorted({b for t in active for b in range(n_batches) if b not in t.done})
        request = {**build_options, "weights": _absolute_if_file(embedder.embedders[0].describe()["weights"])}
        n_computed, seconds, engine_record = _run_batches(
            runner, embedder, folder, active, todo, batch_size, dtype, progress,
            decode_options=decode_options(folder.root, max_pixels, view, stored_size, backbone),
            embedder_request=request)

        for target in active:
            description = target.description
            attrs = {**target.identity, "weights": _absolute_if_file(description["weights"]),
                     "random_features": description["random_features"],
                     "class_names": list(folder.class_names), "data_root": str(folder.root.resolve()),
                     "layout": folder.layout, "versions": library_versions(), "config": config or {},
                     "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "batch_size": batch_size, "seed": seed,
                     "resize": "none (images as stored)" if stored_size else "pillow-bilinear",
                     "backbone_params": description.get("backbone_params", 0), **engine_record,
                     **{f"train_overlap_{split}": count for split, count in overlap.items()}}
            finalize_cache(target.partial, folder.samples, attrs, ignored=folder.unsupported)

    results = []
    for target in targets:
        with open_cache(target.path) as finished:
            skipped, n_rows = finished.skipped, finished.n_rows
        computed = 0 if target.status == "up-to-date" else n_computed
        results.append(ExtractResult(target.path, target.status, n_rows, len(skipped), computed,
                                     seconds if computed else 0.0, target.description["weights_label"],
                                     skipped=skipped, unsupported=folder.unsupported))
    return results


def _check_existing(target: _Target, overwrite: bool, log: Callable[[str], None], n_samples: int) -> None:
    """Mark an up-to-date cache; refuse (or with overwrite, remove) a cache or partial run that differs."""
    if target.path.exists():
        if overwrite:
            target.path.unlink()
        else:
            with open_cache(target.path) as existing:
                differences = describe_differences(_with_defaults(existing.attrs), target.identity)
            if differences:
                raise FeaturekitError(
                    f"Cache {target.path} exists but differs from this request: {'; '.join(differences)}.",
                    received=given("cache", str(target.path)),
                    fix=f"Pass {option_name('overwrite')} to rebuild it, or {option_name('cache')} PATH to write "
                    "another file.")
            log(f"Cache {target.path} is up to date ({n_samples} images); nothing to compute.")
            target.status = "up-to-date"
            target.partial.remove()  # batches left when a run was killed between the merge's rename and cleanup
            return
    if target.partial.exists() and overwrite:
        target.partial.remove()
    if target.partial.exists():
        differences = describe_differences(_with_defaults(target.partial.read_request()), target.identity)
        if differences:
            raise FeaturekitError(
                f"An interrupted extraction of {target.path} differs from this request: {'; '.join(differences)}.",
                received=given("cache", str(target.path)),
                fix=f"Re-run the original command to finish it, or pass {option_name('overwrite')} to start over.")


def _train_overlap(description: dict[str, Any], folder, allowed: bool, log: Callable[[str], None]) -> dict[str, int]:
    """Valid and test images of this extraction that the backbone was trained on ({} for other weights).

    Refused unless `allowed`: a probe judged on images its backbone was trained on looks better than it is.
    """
    from featurekit.training.provenance import train_overlap, training_record_for

    record = training_record_for(description["weights"], description["weights_sha256"])
    if record is None:
        return {}
    overlap = train_overlap(record, folder.samples)
    if not any(overlap.values()):
        return overlap
    where = " and ".join(f"{count} in {split}" for split, count in overlap.items() if count)
    problem = (f"The backbone ({description['weights_label']}) was trained on {sum(overlap.values())} images that "
               f"this extraction puts in its validation or test split ({where}); probe results on them would be "
               "optimistic.")
    if not allowed:
        raise FeaturekitError(
            problem, received=f"{given('weights', description['weights'])} with {given('data', str(folder.root))}",
            fix="Extract images the backbone never trained on, or the same data with the split it was trained with "
            f"(its training.json records it), or pass {option_name('allow_train_overlap')} to extract anyway: the "
            "caches then record the overlap and are flagged.")
    log(f"[bold yellow]WARNING[/]: {escape(problem)} Continuing because overlap was allowed; the caches record it.")
    return overlap


def _with_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """Identity attributes of caches made before they were recorded: those were all computed in float32, with
    the standard (Keras) architectures."""
    return {"precision": "float32", "architecture_variant": "standard", **stored}


def _agreed_batch_size(active: list[_Target], batch_size: int, log: Callable[[str], None]) -> int:
    """The batch size of interrupted runs, so their finished batches stay valid; else the one asked for."""
    stored = {t.partial.read_request()["batch_size"] for t in active if t.partial.exists()}
    if len(stored) > 1:
        raise FeaturekitError(
            "Interrupted extractions of these caches used different batch sizes, so one pass cannot finish them all.",
            received=f"batch sizes {sorted(stored)}",
            fix=f"Finish them one layer/pooling at a time, or pass {option_name('overwrite')} to start over.")
    if stored and stored != {batch_size}:
        resumed = stored.pop()
        log(f"Resuming with the interrupted run's batch size {resumed} (asked: {batch_size}), "
            "so its finished batches stay valid.")
        return resumed
    return batch_size


def extract_from_options(options: dict[str, Any], log: Callable[[str], None] = print,
                         progress: bool = True) -> list[ExtractResult]:
    """`extract_many` with the options of the `extract` command; the resolved options are stored in each cache.

    Options left out take their declared defaults (featurekit.options), so a Python caller, a config
    file and the command line get the same ones. `layer` and `pooling` may be lists or comma-separated
    strings: every combination is extracted in one pass. `view` may list several views (`none` for the clean
    images): each is its own pass, restricted to the split `views_split` names (all by default).

    Raises:
        FeaturekitError: an unknown option, a value of the wrong type, or no `backbone` or `data`.
    """
    from featurekit.config import parse_split_fractions
    from featurekit.options import complete
    from featurekit.views import parse_views

    options = complete("extract", options)
    stored = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()}
    views = parse_views(options["view"]) or [None]
    if options["cache"] and len(views) > 1:
        raise FeaturekitError(f"{option_name('cache')} names one file, but several views were asked for.",
                              received=f"{given('cache', str(options['cache']))} with {len(views)} views",
                              fix=f"Leave {option_name('cache')} out (each view then gets its default name).")
    results: list[ExtractResult] = []
    # One pass per view: the loop decodes one array per image, and the forward pass, not the decode, is what
    # costs (a JPEG decode is a few ms against tens of ms of CNN per image on a CPU), so sharing decodes
    # between views would save little.
    for view in views:
        results += extract_many(
            data=options["data"], backbone=options["backbone"], weights=options["weights"],
            image_size=options["image_size"], layers=_as_list(options["layer"]), poolings=_as_list(options["pooling"]),
            preprocessing=options["preprocessing"], batch_size=options["batch_size"], dtype=options["dtype"],
            cache=options["cache"], cache_dir=options["cache_dir"], overwrite=options["overwrite"],
            split_fractions=parse_split_fractions(options["split"]), seed=options["seed"],
            on_missing_weights=options["on_missing_weights"], precision=options["precision"],
            allow_train_overlap=options["allow_train_overlap"], max_pixels=options["max_pixels"] or None,
            workers=options["workers"], engine=options["engine"],
            engine_options={name: options[name] for name in ENGINE_OPTIONS}, view=view,
            subset=_views_subset(options["views_split"]) if view is not None else None,
            config=stored, log=log, progress=progress)
    return results


def _views_subset(views_split: str | None) -> str:
    """The `subset` of a view pass: the split asked for, or "" for all of them."""
    return "" if views_split in (None, "", "all") else views_split


def _absolute_if_file(weights: str) -> str:
    """Weight files are recorded by absolute path, so `predict` finds them from any working directory."""
    path = Path(weights).expanduser()
    return str(path.resolve()) if weights not in ("imagenet", "none", "default") and path.is_file() else weights


def _as_list(value: Any) -> list:
    if value is None:
        return [None]
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return list(value)


def _first_available_embedder(candidates: list[str], on_missing_weights: str, log: Callable[[str], None], **options):
    """Build with the first weights that can be had; else fail, or fall back to labelled random weights."""
    from featurekit.embedder import build_multi_embedder

    failures: list[WeightsUnavailableError] = []

    def problems() -> str:
        return "; ".join(error.problem.rstrip(".") for error in failures) + "."

    for candidate in candidates:
        try:
            embedder = build_multi_embedder(weights=candidate, **options)
        except WeightsUnavailableError as error:
            failures.append(error)
            continue
        if failures:
            log(escape(f"Using weights {candidate!r} ({embedder.embedders[0].describe()['weights_label']}); earlier "
                       f"choices were not available: {problems()}"))
        return embedder
    if on_missing_weights != "random":
        if len(failures) == 1:
            raise failures[0]
        raise WeightsUnavailableError(
            "None of the weights asked for could be had: " + problems(),
            received=f"weights {candidates}", fix=failures[0].fix)
    log(f"[bold yellow]WARNING[/]: {escape(problems())}\n"
        f"Continuing with seeded random-init weights (seed {options['seed']}): every output of this run is a "
        "RANDOM-FEATURES baseline, not an ImageNet result.")
    return build_multi_embedder(weights="none", **options)


def _tag(description: dict[str, Any], native_preprocessing: str, view: Any = None, subset: str = "") -> str | None:
    """Name suffix for caches that are not the backbone's standard recipe, so they never collide."""
    parts = []
    if description["preprocessing"] != native_preprocessing:
        parts.append(description["preprocessing"])
    if description.get("precision", "float32") != "float32":
        parts.append(description["precision"])
    if description.get("random_features"):
        parts.append("random")
    if view is not None:
        parts.append(f"view-{view.slug}")
    if subset:
        parts.append(subset if subset == ALL_AS_TEST else f"only-{subset}")
    return "-".join(parts) or None


def _name_layer(spec: Any, layer: str | None, tap: Any) -> str | None:
    """The layer part of a default cache name: the layer asked for; for a hand-made feature the parameters that
    differ from its defaults (None when none do, so `--layer threshold=3` names the default cache)."""
    if not spec.is_handmade:
        return layer
    from featurekit.handmade.embedder import overrides_text

    return overrides_text(spec.handmade, tap.feature)


def _check_subset(subset: str | None) -> str:
    subset = subset or ""
    if subset not in SUBSETS:
        raise FeaturekitError(f"Unknown subset {subset!r}.", received=given("subset", subset),
                              fix=f"Use one of: {', '.join(repr(s) for s in SUBSETS)} ('' for every image).")
    return subset


def scan_for_extraction(data: str | Path, split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
                        subset: str | None = None) -> tuple[ImageFolder, str]:
    """The data folder's images as a cache of `subset` holds them, and the data fingerprint it records.

    A one-split subset keeps that split's images and the whole folder's fingerprint (so the cache of a view's
    test split is recognised as belonging to the full cache of the same folder); ALL_AS_TEST makes every image
    a test image and fingerprints that, so it is never mistaken for the folder split for training.

    Raises:
        FeaturekitError: as `scan_image_folder`, or the subset leaves no image.
    """
    from dataclasses import replace

    subset = _check_subset(subset)
    folder = scan_image_folder(data, split_fractions)
    if subset == ALL_AS_TEST:
        folder = replace(folder, samples=[replace(sample, split="test") for sample in folder.samples])
        return folder, folder.fingerprint()
    fingerprint = folder.fingerprint()
    if subset:
        kept = [sample for sample in folder.samples if sample.split == subset]
        if not kept:
            raise FeaturekitError(f"The data folder has no images in its {subset!r} split.",
                                  received=f"{given('data', str(data))} with {given('subset', subset)}",
                                  fix="Extract every split (leave the split choice out), or change the split "
                                  "fractions.")
        folder = replace(folder, samples=kept)
    return folder, fingerprint


def _check_expected_identity(identity: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse features that differ from the training cache's in any identity key `expected` names (the view
    and the subset excepted): leave `data_fingerprint` out of `expected` for another test set, keep it in for a
    view of the training cache's own test split."""
    from featurekit.cache import _normalise

    wanted = _with_defaults(expected)
    differences = []
    for key in IDENTITY_KEYS:
        if key in ("view", "subset") or key not in expected or _normalise(wanted[key]) == _normalise(identity.get(key)):
            continue
        if key == "data_fingerprint":
            differences.append("the images (or their split) differ from those the training cache was made from")
        else:
            differences.append(f"{key} is {wanted[key]!r} in the training cache but {identity.get(key)!r} here")
    if differences:
        raise FeaturekitError(
            f"The embedder rebuilt from the training cache does not give the features its probes were fitted on: "
            f"{'; '.join(differences)}.",
            received=f"backbone {identity.get('backbone')}, weights {identity.get('weights')}",
            fix="Make the training cache's weights and images available as they were (the same files, unchanged), or "
            "re-extract the training cache and refit its probes.")


def decode_options(root: str | Path, max_pixels: int | None, view: Any = None, stored_size: int | None = None,
                   feature: str = "") -> dict[str, Any]:
    """Options of the per-image decoder (`featurekit.pipeline.image_batches`): the pixel limit, and a
    `featurekit.views.ViewDecoder` when a view degrades the images or a hand-made feature needs them as stored.

    The decoder is plain data, so an engine may ship these options to other processes.
    """
    options: dict[str, Any] = {"max_pixels": max_pixels}
    if view is not None or stored_size is not None:
        from featurekit.views import ViewDecoder

        options["decode"] = ViewDecoder(view, str(root), stored_size, feature)
    return options


def _run_batches(runner, embedder, folder, targets: list[_Target], todo: list[int], batch_size: int, dtype: str,
                 progress: bool, decode_options: dict[str, Any] | None = None,
                 embedder_request: dict[str, Any] | None = None) -> tuple[int, float, dict[str, Any]]:
    """Have the engine compute the batches some target misses; each target's part is written as it arrives.

    Returns:
        (images computed, seconds, what the engine records in the caches).
    """
    from featurekit.engines import BatchSink, ExtractionJob

    job = ExtractionJob(root=folder.root, paths=tuple(sample.path for sample in folder.samples), todo=tuple(todo),
                        batch_size=batch_size, image_size=embedder.image_size, decode_options=dict(decode_options or {}),
                        embedder_request=dict(embedder_request or {}),
                        descriptions=tuple(tap.describe() for tap in embedder.embedders))
    if not todo:
        return 0, 0.0, runner.record() if runner is not None else {}
    runner.warm_up(job, embedder)  # e.g. compile the forward pass before the clock and the bar start
    backbone = targets[0].description["backbone"]
    label = f"{backbone} features" + (f" ({len(targets)} taps)" if len(targets) > 1 else "")
    started = time.perf_counter()
    with _progress_bar(progress, job.n_rows, label) as advance, BatchSink(targets, batch_size, dtype) as sink:
        record = runner.run(job, embedder, sink, advance)
    return job.n_rows, time.perf_counter() - started, record


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
