"""The extraction request: every setting typed and validated once, before any image is read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featurekit.data import DEFAULT_SPLIT_FRACTIONS, SPLITS
from featurekit.engines import EngineSettings
from featurekit.errors import FeaturekitError, given, option_name
from featurekit.options import default as declared

DTYPES = ("float32", "float16")
MISSING_WEIGHTS_CHOICES = ("error", "random")
# Which rows a cache holds (its `subset` attribute, part of its identity): "" every image in its split; a split
# name only that split's images (a robustness view needs only the test split: 15% of the work); ALL_AS_TEST
# every image of the folder as a test image (another test set, scored by probes fitted elsewhere).
ALL_AS_TEST = "all-as-test"
SUBSETS = ("", *SPLITS, ALL_AS_TEST)


@dataclass(frozen=True)
class Tap:
    """One output of the shared forward pass: a layer (None: the last block) and how it is pooled."""

    layer: str | None
    pooling: str


@dataclass(frozen=True)
class ExtractionRequest:
    """What to extract, checked once by `make_request`; the precision is the resolved one.

    `taps` are the layer x pooling combinations, layers outer; `weights` the candidates, tried in order.
    `command` is the command line to record for the resume hint ("" when called from Python).
    """

    data: Path
    backbone: str
    taps: tuple[Tap, ...]
    weights: tuple[str, ...]
    image_size: int | None
    preprocessing: str | None
    precision: str
    batch_size: int
    dtype: str
    seed: int
    cache: Path | None
    cache_dir: Path
    overwrite: bool
    split_fractions: tuple[float, float, float]
    on_missing_weights: str
    allow_train_overlap: bool
    max_pixels: int | None
    view: Any  # featurekit.views.View | None
    subset: str
    engine: EngineSettings
    expected_identity: Mapping[str, Any] | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    command: str = ""


def make_request(
    data: str | Path,
    backbone: str,
    weights: str | list[str] | tuple[str, ...] = declared("extract", "weights"),
    image_size: int | None = None,
    layers: list[str | None] | tuple = (None,),
    poolings: list[str] | tuple = (declared("extract", "pooling"),),
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
    view: Any = None,
    subset: str | None = None,
    expected_identity: Mapping[str, Any] | None = None,
    engine: str = declared("extract", "engine"),
    engine_options: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    command: str = "",
) -> ExtractionRequest:
    """Check every setting that needs no image, once; see `featurekit.extract.extract_many` for their meaning.

    Raises:
        FeaturekitError: naming the first setting that is wrong.
    """
    from featurekit.engines import engine_settings
    from featurekit.extraction.entries import entry_for
    from featurekit.views import parse_view

    _check_choice("dtype", dtype, DTYPES)
    _check_choice("on_missing_weights", on_missing_weights, MISSING_WEIGHTS_CHOICES)
    _check_batch_size(batch_size)
    taps = tuple(Tap(layer, pooling) for layer in dict.fromkeys(layers) for pooling in dict.fromkeys(poolings))
    candidates = (weights,) if isinstance(weights, str) else tuple(weights)
    taps, precision = entry_for(backbone).check(taps, image_size, preprocessing, precision, candidates)
    if cache and len(taps) > 1:
        raise FeaturekitError(f"{option_name('cache')} names one file, but several layers or poolings were asked for.",
                              received=f"{given('cache', str(cache))} with {len(taps)} taps",
                              fix=f"Leave {option_name('cache')} out (names then follow the default pattern) and use "
                              f"{option_name('cache_dir')}.")
    return ExtractionRequest(
        data=Path(data), backbone=backbone, taps=taps, weights=candidates, image_size=image_size,
        preprocessing=preprocessing, precision=precision, batch_size=batch_size, dtype=dtype, seed=seed,
        cache=Path(cache) if cache else None, cache_dir=Path(cache_dir), overwrite=overwrite,
        split_fractions=tuple(split_fractions), on_missing_weights=on_missing_weights,
        allow_train_overlap=allow_train_overlap, max_pixels=max_pixels or None, view=parse_view(view),
        subset=check_subset(subset), engine=engine_settings(engine, engine_options, workers),
        expected_identity=expected_identity, config=dict(config or {}), command=command)


def check_subset(subset: str | None) -> str:
    """The subset as the cache records it ("" for every image), or a FeaturekitError listing the valid ones."""
    subset = subset or ""
    if subset not in SUBSETS:
        raise FeaturekitError(f"Unknown subset {subset!r}.", received=given("subset", subset),
                              fix=f"Use one of: {', '.join(repr(s) for s in SUBSETS)} ('' for every image).")
    return subset


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise FeaturekitError(f"Unknown {name} {value!r}.", received=given(name, value),
                              fix=f"Use one of: {', '.join(choices)}.")


def _check_batch_size(batch_size: Any) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise FeaturekitError("The batch size must be a whole number, at least 1.",
                              received=given("batch_size", batch_size),
                              fix=f"Use e.g. {option_name('batch_size')} 32.")
