"""The extraction request: every setting typed, and checked once, before any image is read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from featurekit.backbones import get_spec
from featurekit.data import DEFAULT_SPLIT_FRACTIONS, SPLITS
from featurekit.engines import EngineSettings, engine_settings
from featurekit.errors import FeaturekitError, given
from featurekit.extraction.embedder_request import Tap
from featurekit.parameters import BATCH_SIZE, CACHE_DIR, DTYPE, ENGINE, MAX_PIXELS, POOLING, PRECISION, SEED, WEIGHTS
from featurekit.views import parse_view

# Which rows a cache holds (its `subset` attribute, part of its identity): "" every image in its split; a split
# name only that split's images (a robustness view needs only the test split: 15% of the work); ALL_AS_TEST
# every image of the folder as a test image (another test set, scored by probes fitted elsewhere).
ALL_AS_TEST = "all-as-test"
SUBSETS = ("", *SPLITS, ALL_AS_TEST)


@dataclass(frozen=True)
class ExtractionRequest:
    """What to extract; made (and checked, once) by `make_request`, where every setting is described.

    `taps` are the layer x pooling combinations, layers outer; `weights` the candidates, tried in order;
    `precision` the resolved one; `command` the command line to record for the resume hint ("" from Python).
    """

    data: Path
    backbone: str
    taps: tuple[Tap, ...] = (Tap(None, POOLING),)
    weights: tuple[str, ...] = (WEIGHTS,)
    image_size: int | None = None
    preprocessing: str | None = None
    precision: str = PRECISION
    batch_size: int = BATCH_SIZE
    dtype: str = DTYPE
    seed: int = SEED
    cache: Path | None = None
    cache_dir: Path = Path(CACHE_DIR)
    overwrite: bool = False
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS
    on_missing_weights: str = "error"
    allow_train_overlap: bool = False
    max_pixels: int | None = MAX_PIXELS
    view: Any = None  # featurekit.views.View | None
    subset: str = ""
    engine: EngineSettings = EngineSettings()
    expected_identity: Mapping[str, Any] | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    command: str = ""


def make_request(data: str | Path, backbone: str, weights: str | list[str] | tuple[str, ...] | None = None,
                 image_size: int | None = None, layers: list[str | None] | tuple = (None,),
                 poolings: list[str] | tuple = (POOLING,), cache: str | Path | None = None,
                 cache_dir: str | Path | None = None, view: Any = None, subset: str | None = None,
                 engine: str = ENGINE, engine_options: Mapping[str, Any] | None = None,
                 workers: int | None = None, **settings: Any) -> ExtractionRequest:
    """One typed request from settings checked against their declarations (`featurekit.options`: by
    `extract_many` or `extract_from_options`); checks, once, what else needs no image.

    Args:
        data: Data folder (`DIR/<class>/...` or `DIR/{train,valid,test}/<class>/...`).
        backbone: Registry name.
        weights: "default", "imagenet", "none" (seeded random init) or a weights file path; or a list of these,
            tried in order. None: the declared default.
        image_size: Square input size; None the backbone's native size.
        layers, poolings: Every layer x pooling is one tap of the shared forward pass (None: the last block).
        cache, cache_dir: One cache path (one tap only), or the folder of default names.
        view: A robustness view (`featurekit.views`) applied to every decoded image; None the clean images.
        subset: None or "" every image; "train", "valid" or "test" that split only; "all-as-test" every image as
            a test image.
        engine, engine_options, workers: Where batches are computed (see `featurekit.engines.engine_settings`).
        **settings: Any other field of ExtractionRequest (preprocessing, precision, batch_size, dtype, seed,
            overwrite, split_fractions, on_missing_weights, allow_train_overlap, max_pixels, expected_identity,
            config, command); see `featurekit.extraction.extract.extract_many`.

    Raises:
        FeaturekitError: naming the first setting that is wrong.
    """
    if (subset or "") not in SUBSETS:
        raise FeaturekitError(f"Unknown subset {subset!r}.", received=given("subset", subset),
                              fix=f"Use one of: {', '.join(repr(s) for s in SUBSETS)} ('' for every image).")
    candidates = (weights,) if isinstance(weights, str) else tuple(weights) if weights is not None else (WEIGHTS,)
    request = ExtractionRequest(
        Path(data), backbone, weights=candidates, image_size=image_size,
        cache=Path(cache) if cache else None, view=parse_view(view), subset=subset or "",
        engine=engine_settings(engine, engine_options, workers), **settings,
        **({"cache_dir": Path(cache_dir)} if cache_dir is not None else {}))
    asked = tuple(dict.fromkeys(poolings))
    # The entry refuses what does not apply to it; it returns the poolings it uses and the precision resolved.
    used, precision = get_spec(backbone).check_request(image_size, asked, request.preprocessing, request.precision,
                                                       list(request.weights))
    used = used if len(used) == len(asked) else (used[0],) * len(asked)  # one for all (a hand-made feature's)
    taps = tuple(dict.fromkeys(Tap(layer, pooling) for layer in layers for pooling in used))
    if request.cache and len(taps) > 1:
        raise FeaturekitError(f"`cache` names one file, but several layers or poolings were asked for.",
                              received=f"{given('cache', str(cache))} with {len(taps)} taps",
                              fix="Leave `cache` out (names then follow the default pattern) and use `cache_dir`.")
    return replace(request, taps=taps, precision=precision, max_pixels=request.max_pixels or None,
                   split_fractions=tuple(request.split_fractions), config=dict(request.config or {}))

