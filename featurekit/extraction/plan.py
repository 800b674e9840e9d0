"""Planning an extraction: the images, the embedder, one target cache per tap, and what each has already.

`plan_extraction` reads the data folder and builds the embedder but writes nothing; `settle_targets` runs under
the caches' locks: it marks caches that are up to date, accepts only an interrupted run made with the same
settings, agrees on the batch size, and checks a batch's memory, all before any batch is computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from rich.markup import escape

from featurekit.backbones import get_spec
from featurekit.backbones.provenance import train_overlap, training_record_for
from featurekit.cache import (IDENTITY_KEYS, PartialCache, default_cache_path, describe_differences, normalise_attr,
                              open_cache)
from featurekit.cache.format import is_featurekit_cache
from featurekit.data import DEFAULT_SPLIT_FRACTIONS, ImageFolder, scan_image_folder
from featurekit.errors import FeaturekitError, WeightsUnavailableError, given
from featurekit.extraction.embedder_request import EmbedderRequest
from featurekit.extraction.request import ALL_AS_TEST, ExtractionRequest
from featurekit.fsutil import refuse_unless_ours
from featurekit.parameters import WEIGHTS_KEYWORDS
from featurekit.views import view_name

Log = Callable[[str], None]


@dataclass
class Target:
    """One cache being written: a tap of the shared forward pass (`identity`: its `describe()` and what else
    decides the cache's content)."""

    index: int
    identity: dict[str, Any]
    path: Path
    partial: PartialCache
    status: str = "extracted"
    done: set[int] = field(default_factory=set)
    replaced: bool = False  # `overwrite` removes its cache or interrupted run once every check has passed


@dataclass
class ExtractionPlan:
    """What an extraction computes: the images, the embedder and its rebuild request, the target caches."""

    request: ExtractionRequest
    folder: ImageFolder
    embedder: Any
    embedder_request: EmbedderRequest
    targets: list[Target]
    overlap: dict[str, int]
    settings: dict[str, Any]  # besides identity, what decides which rows a batch holds (max_pixels, resize)

    @property
    def batch_size(self) -> int:
        return self.embedder_request.batch_size

    @property
    def n_batches(self) -> int:
        return -(-len(self.folder.samples) // self.batch_size)

    @property
    def active(self) -> list[Target]:
        return [target for target in self.targets if target.status != "up-to-date"]

    def may_compute(self) -> bool:
        """Whether some target may need batches (else every cache exists and is up to date or refused)."""
        return self.request.overwrite or any(not target.path.exists() for target in self.targets)


def plan_extraction(request: ExtractionRequest, log: Log) -> ExtractionPlan:
    """Scan the images, build the embedder, name each target cache; nothing is written.

    The batch never exceeds the images there are, so nothing is padded beyond them.
    """
    spec = get_spec(request.backbone)
    folder, fingerprint = scan_for_extraction(request.data, request.split_fractions, request.subset)
    batch_size = min(request.batch_size, max(len(folder.samples), 1))
    embedder_request, embedder = _first_available_embedder(request, batch_size, log)
    description = embedder.embedders[0].describe()
    overlap = _train_overlap(description, folder, request.allow_train_overlap, log)
    targets = [_target(request, spec, index, tap, built, folder.root, fingerprint)
               for index, (tap, built) in enumerate(zip(request.taps, embedder.embedders))]
    embedder.check_images(folder.root, [sample.path for sample in folder.samples])
    settings = {"max_pixels": request.max_pixels or 0,
                "resize": "none (images as stored)" if getattr(embedder, "stored_size", None) else "pillow-bilinear"}
    return ExtractionPlan(request, folder, embedder, replace(embedder_request, weights=absolute_if_file(
        description["weights"])), targets, overlap, settings)


def _target(request: ExtractionRequest, spec: Any, index: int, tap: Any, built: Any, root: Path,
            fingerprint: str) -> Target:
    description = built.describe()
    path = request.cache or default_cache_path(
        root, request.backbone, spec.cache_name_layer(tap.layer), description["pooling"], description["image_size"],
        request.cache_dir, tag=name_tag(description, spec.preprocessing, request.view, request.subset))
    identity = {**description, "dtype": request.dtype, "data_fingerprint": fingerprint,
                "view": view_name(request.view), "subset": request.subset}
    check_expected_identity(identity, dict(request.expected_identity or {}))
    return Target(index, identity, Path(path), PartialCache(path))


def settle_targets(plan: ExtractionPlan, log: Log, check_memory: bool = True) -> None:
    """Under the caches' locks: mark up-to-date caches, check interrupted runs, agree on the batch size and
    check its memory (`check_memory`: the batches are computed in this process). Only once every check has
    passed does `overwrite` remove what it replaces; nothing else is written."""
    from featurekit.extraction.memory import available_memory, check_batch_memory

    for target in plan.targets:
        _check_existing(target, plan, log)
    # The batch size of interrupted runs, so their finished batches stay valid; else the one asked for.
    stored = {t.partial.read_request()["batch_size"] for t in plan.active if not t.replaced and t.partial.exists()}
    if len(stored) > 1:
        raise FeaturekitError(
            "Interrupted extractions of these caches used different batch sizes, so one pass cannot finish them all.",
            received=f"batch sizes {sorted(stored)}",
            fix=f"Finish them one layer/pooling at a time, or pass `overwrite` to start over.")
    batch_size = stored.pop() if stored else plan.batch_size
    if batch_size != plan.batch_size:
        log(f"Resuming with the interrupted run's batch size {batch_size} (asked: {plan.batch_size}), "
            "so its finished batches stay valid.")
    if check_memory and plan.active:
        check_batch_memory(batch_size, plan.embedder.bytes_per_image(),
                           plan.request.engine.prefetch_batches, plan.embedder.image_size, available_memory())
    plan.embedder_request = replace(plan.embedder_request, batch_size=batch_size)
    plan.embedder.batch_size = batch_size
    for target in plan.active:
        if target.replaced:
            target.path.unlink(missing_ok=True)
            target.partial.remove()
        elif target.partial.exists():
            target.done = target.partial.done_batches()
            target.status = "resumed" if target.done else "extracted"
            log(f"Resuming {target.path}: {len(target.done)} of {plan.n_batches} batches already done.")


def _check_existing(target: Target, plan: ExtractionPlan, log: Log) -> None:
    """Mark an up-to-date cache, or one `overwrite` replaces; refuse a cache or interrupted run that differs."""
    if plan.request.overwrite:
        refuse_unless_ours(target.path, is_featurekit_cache, "The cache path")  # never a user's own file
        target.replaced = target.path.exists() or target.partial.exists()
        return
    if target.path.exists():
        with open_cache(target.path) as existing:
            differences = describe_differences(with_defaults(existing.attrs), target.identity)
        if differences:
            raise FeaturekitError(
                f"Cache {target.path} exists but differs from this request: {'; '.join(differences)}.",
                received=given("cache", str(target.path)),
                fix="Pass `overwrite` to rebuild it, or `cache` PATH to write another file.")
        log(f"Cache {target.path} is up to date ({len(plan.folder.samples)} images); nothing to compute.")
        target.status = "up-to-date"
        target.partial.remove()  # batches left when a run was killed between the merge's rename and cleanup
        return
    if target.partial.exists():
        stored = with_defaults(target.partial.read_request())
        differences = describe_differences(stored, target.identity | plan.settings,
                                           keys=[*IDENTITY_KEYS, *(key for key in plan.settings if key in stored)])
        if differences:
            raise FeaturekitError(
                f"An interrupted extraction of {target.path} was made with other settings: {'; '.join(differences)}. "
                "Its finished batches cannot be merged with this run's.",
                received=given("cache", str(target.path)),
                fix=f"Re-run the original command to finish it, or pass `overwrite` to start over.")


def with_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """Identity attributes of caches made before they were recorded: those were all computed in float32, with
    the standard (Keras) architectures."""
    return {"precision": "float32", "architecture_variant": "standard", **stored}


def _first_available_embedder(request: ExtractionRequest, batch_size: int, log: Log) -> tuple[EmbedderRequest, Any]:
    """Build with the first weights that can be had; else fail, or fall back to labelled random weights.

    Returns:
        (the request the embedder was built from, the embedder).
    """
    base = EmbedderRequest(request.backbone, request.taps, "none", request.image_size, request.preprocessing,
                           request.seed, request.precision, batch_size)
    failures: list[WeightsUnavailableError] = []
    for candidate in request.weights:
        try:
            embedder = replace(base, weights=candidate).build()
        except WeightsUnavailableError as error:
            failures.append(error)
            continue
        if failures:
            log(escape(f"Using weights {candidate!r} ({embedder.embedders[0].describe()['weights_label']}); earlier "
                       f"choices were not available: {_problems(failures)}"))
        return replace(base, weights=candidate), embedder
    if request.on_missing_weights != "random":
        raise failures[0] if len(failures) == 1 else WeightsUnavailableError(
            "None of the weights asked for could be had: " + _problems(failures),
            received=f"weights {list(request.weights)}", fix=failures[0].fix)
    log(f"[bold yellow]WARNING[/]: {escape(_problems(failures))}\n"
        f"Continuing with seeded random-init weights (seed {request.seed}): every output of this run is a "
        "RANDOM-FEATURES baseline, not an ImageNet result.")
    return base, base.build()


def _problems(failures: list[WeightsUnavailableError]) -> str:
    return "; ".join(error.problem.rstrip(".") for error in failures) + "."


def _train_overlap(description: dict[str, Any], folder: ImageFolder, allowed: bool, log: Log) -> dict[str, int]:
    """Valid and test images of this extraction that the backbone was trained on ({} for other weights).

    Refused unless `allowed`: a probe judged on images its backbone was trained on looks better than it is.
    """
    record = training_record_for(description["weights"], description["weights_sha256"])
    overlap = train_overlap(record, folder.samples) if record is not None else {}
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
            f"(its training.json records it), or pass `allow_train_overlap` to extract anyway: the "
            "caches then record the overlap and are flagged.")
    log(f"[bold yellow]WARNING[/]: {escape(problem)} Continuing because overlap was allowed; the caches record it.")
    return overlap


def absolute_if_file(weights: str) -> str:
    """Weight files are recorded by absolute path, so `predict` finds them from any working directory."""
    path = Path(weights).expanduser()
    return str(path.resolve()) if weights not in WEIGHTS_KEYWORDS and path.is_file() else weights


def name_tag(description: dict[str, Any], native_preprocessing: str, view: Any = None, subset: str = "") -> str | None:
    """Name suffix for caches that are not the backbone's standard recipe, so they never collide."""
    parts = (description["preprocessing"] if description["preprocessing"] != native_preprocessing else "",
             description.get("precision", "float32") if description.get("precision", "float32") != "float32" else "",
             "random" if description.get("random_features") else "",
             f"view-{view.slug}" if view is not None else "",
             (subset if subset == ALL_AS_TEST else f"only-{subset}") if subset else "")
    return "-".join(part for part in parts if part) or None


def scan_for_extraction(data: str | Path, split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
                        subset: str | None = None) -> tuple[ImageFolder, str]:
    """The data folder's images as a cache of `subset` (checked by `make_request`) holds them, and the data
    fingerprint it records.

    A one-split subset keeps that split's images and the whole folder's fingerprint (so the cache of a view's
    test split is recognised as belonging to the full cache of the same folder); ALL_AS_TEST makes every image
    a test image and fingerprints that, so it is never mistaken for the folder split for training.

    Raises:
        FeaturekitError: as `scan_image_folder`, or the subset leaves no image.
    """
    folder = scan_image_folder(data, split_fractions)
    if subset == ALL_AS_TEST:
        folder = replace(folder, samples=[replace(sample, split="test") for sample in folder.samples])
        return folder, folder.fingerprint()
    kept = [sample for sample in folder.samples if not subset or sample.split == subset]
    if not kept:
        raise FeaturekitError(f"The data folder has no images in its {subset!r} split.",
                              received=f"{given('data', str(data))} with {given('subset', subset)}",
                              fix="Extract every split (leave the split choice out), or change the split fractions.")
    return replace(folder, samples=kept), folder.fingerprint()


def check_expected_identity(identity: dict[str, Any], expected: dict[str, Any]) -> None:
    """Refuse features that differ from the training cache's in any identity key `expected` names (the view
    and the subset excepted): leave `data_fingerprint` out of `expected` for another test set, keep it in for a
    view of the training cache's own test split."""
    wanted = with_defaults(expected)
    differences = ["the images (or their split) differ from those the training cache was made from"
                   if key == "data_fingerprint" else
                   f"{key} is {wanted[key]!r} in the training cache but {identity.get(key)!r} here"
                   for key in IDENTITY_KEYS if key in expected and key not in ("view", "subset")
                   and normalise_attr(wanted[key]) != normalise_attr(identity.get(key))]
    if differences:
        raise FeaturekitError(
            f"The embedder rebuilt from the training cache does not give the features its probes were fitted on: "
            f"{'; '.join(differences)}.",
            received=f"backbone {identity.get('backbone')}, weights {identity.get('weights')}",
            fix="Make the training cache's weights and images available as they were (the same files, unchanged), or "
            "re-extract the training cache and refit its probes.")
