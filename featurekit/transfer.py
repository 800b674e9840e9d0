"""Probes fitted on clean features, scored elsewhere: on robustness views of the test split, and on other test sets.

`compare` fits every probe on a training cache and scores it on that cache's test split. This module adds
rows for the same fitted probes, with the same threshold (chosen on the training cache's valid split),
scored on:

- **views** (`compare --view jpeg:50`): the test split of the same images, degraded (`featurekit.views`),
  embedded by the same embedder: CNNDetection's robustness protocol. The view cache is found by its
  identity (equal to the training cache's in everything but `view`, holding the test split: `subset` ""
  or "test"), first under its default name next to the training cache, then by reading the identity of
  every cache in that folder and in `cache_dir`. A missing one is extracted (test split only) from the
  training cache's data folder when that folder is still there with the same images: the command that
  would make it by hand needs that folder too, and extracting only what is missing keeps `compare` one
  command. When the folder is gone, the error gives the exact `extract` command.
- **other test sets** (`compare --test-data DIR`): every image of DIR is a test image. DIR is extracted
  with the embedder rebuilt from the training cache's attributes (as `predict` rebuilds it) into
  ``<training cache>-on-<DIR name>.h5`` next to the training cache; a rebuilt embedder whose identity differs
  (weights changed, another precision) is refused, naming the difference, before any image is read.

Every row says where it was scored: `test_set` ("test" for the training cache's own test split, else the
folder given) and `view` ("" for the clean images), and `scored_cache` names the cache whose rows were
scored. Rows come in blocks: the own test split, then one block per view, then one per test set. Each row
carries accuracy on real and on fake images separately (`accuracy_real`, `accuracy_fake`), as the field
reports robustness.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Callable

from featurekit.cache import IDENTITY_KEYS, _normalise, open_cache
from featurekit.errors import FeaturekitError, given
from featurekit.rows import OWN_TEST_SPLIT
from featurekit.views import View, parse_views


def stored_identity(path: str | Path) -> dict[str, Any] | None:
    """The identity attributes of a finished cache, read from its HDF5 attributes alone (cheap: no rows are
    read); None for a file that is not a finished featurekit cache."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if not bool(f.attrs.get("complete", False)):
                return None
            identity = {}
            for key in IDENTITY_KEYS:
                value = f.attrs.get(key)
                identity[key] = value.decode() if isinstance(value, bytes) else _normalise(value)
            return identity
    except (OSError, ValueError, TypeError):
        return None


def is_training_cache(path: str | Path) -> bool:
    """Whether a cache holds clean features of a folder split for training (no view, every split)."""
    identity = stored_identity(path)
    return identity is None or (not identity.get("view") and not identity.get("subset"))


def training_caches(paths: list[Path], found_by_scan: bool, log: Callable[[str], None] = print) -> list[Path]:
    """The caches `compare` fits probes on: a cache of one split or of another test set cannot train, so it
    is left out (with a message); a cache found by scanning the cache folder is left out too when it holds a
    view (views are scored through `view`, not compared as training caches; name one to compare it)."""
    kept, left = [], []
    for path in paths:
        identity = stored_identity(path) or {}
        if identity.get("subset") or (found_by_scan and identity.get("view")):
            left.append(path)
        else:
            kept.append(path)
    if left:
        log(f"not fitting on {len(left)} view or test-set cache(s) (scored through view / test_data instead): "
            + ", ".join(p.name for p in left))
    if not kept:
        raise FeaturekitError(
            "No training cache to compare: every cache given holds a view or a test set only.",
            received=", ".join(str(p) for p in paths),
            fix="Name a cache extracted without a view (its train, valid and test splits), e.g. "
            "`python cli.py compare --cache cache/NAME.h5 --view jpeg:50`.")
    return kept


def _same_except(identity: dict[str, Any], wanted: dict[str, Any], free: tuple[str, ...]) -> bool:
    return all(_normalise(identity.get(key)) == _normalise(wanted.get(key)) for key in IDENTITY_KEYS if key not in free)


# --------------------------------------------------------------------------------------------------
# Rebuilding the training cache's embedder


def extraction_request(attrs: dict[str, Any]) -> dict[str, Any]:
    """`extract_many` arguments that rebuild the embedder of a cache from its attributes (as `predict` does)."""
    backbone = str(attrs["backbone"])
    image_size = int(attrs["image_size"])
    if str(attrs.get("resize", "")).startswith("none"):
        image_size = None  # a hand-made feature computed on images as stored: keep refusing resampled ones
    return {
        "backbone": backbone, "weights": str(attrs.get("weights") or "none"), "image_size": image_size,
        "layers": [attrs.get("layer") or None], "poolings": [str(attrs.get("pooling"))],
        "preprocessing": attrs.get("preprocessing") or None, "dtype": str(attrs.get("dtype") or "float32"),
        "seed": int(attrs.get("seed") or 0), "precision": str(attrs.get("precision") or "float32"),
        "batch_size": int(attrs.get("batch_size") or 32), "on_missing_weights": "error",
    }


def _split_fractions(attrs: dict[str, Any]) -> tuple[float, float, float]:
    from featurekit.config import parse_split_fractions
    from featurekit.data import DEFAULT_SPLIT_FRACTIONS

    split = (attrs.get("config") or {}).get("split") if isinstance(attrs.get("config"), dict) else None
    return parse_split_fractions(split) if split else DEFAULT_SPLIT_FRACTIONS


def extract_command(attrs: dict[str, Any], view: View, cache: Path, views_split: str = "test") -> str:
    """The `extract` command that makes the view cache of a training cache's `views_split` by hand."""
    from featurekit.backbones import get_spec

    request = extraction_request(attrs)
    args = ["python", "cli.py", "extract", "--backbone", request["backbone"], "--data", str(attrs.get("data_root"))]
    applies = get_spec(request["backbone"]).request_options
    for name, value in (("weights", request["weights"]), ("pooling", request["poolings"][0]),
                        ("preprocessing", str(request["preprocessing"])), ("precision", request["precision"]),
                        ("seed", str(request["seed"]))):
        if name in applies:
            args += [f"--{name}", value]
    if request["layers"][0]:
        args += ["--layer", str(request["layers"][0])]
    if request["image_size"] is not None:
        args += ["--image-size", str(request["image_size"])]
    split = (attrs.get("config") or {}).get("split") if isinstance(attrs.get("config"), dict) else None
    if split:
        args += ["--split", split if isinstance(split, str) else ",".join(map(str, split))]
    args += ["--dtype", request["dtype"], "--batch-size", str(request["batch_size"]), "--view", view.name,
             "--views-split", views_split, "--cache", str(cache)]
    return " ".join(shlex.quote(a) for a in args)


# --------------------------------------------------------------------------------------------------
# Finding or making the caches to score on


def default_view_cache(training_cache: Path, view: View, split: str = "test") -> Path:
    """``<training cache>-view-<slug>-only-<split>.h5`` next to it: the name `extract --view V --views-split SPLIT`
    gives when the training cache has its default name."""
    return training_cache.with_name(f"{training_cache.stem}-view-{view.slug}-only-{split}.h5")


def view_cache_for(training_cache: Path, attrs: dict[str, Any], view: View, cache_dir: str | Path | None,
                   log: Callable[[str], None] = print, split: str = "test") -> Path:
    """The cache of `view` of the training cache's `split` (test; train for training views): found by identity,
    else extracted.

    Raises:
        FeaturekitError: none is found and the data folder is gone or holds other images (with the exact
            extract command), or the rebuilt embedder differs from the training cache's.
    """
    wanted = {key: attrs.get(key) for key in IDENTITY_KEYS} | {"view": view.name}
    default = default_view_cache(training_cache, view, split)
    full = training_cache.with_name(f"{training_cache.stem}-view-{view.slug}.h5")
    folders = [training_cache.parent] + ([Path(cache_dir)] if cache_dir is not None else [])
    candidates = [default, full] + [p for folder in dict.fromkeys(folders) if folder.is_dir()
                                    for p in sorted(folder.glob("*.h5"))]
    for candidate in dict.fromkeys(candidates):
        if not candidate.is_file():
            continue
        identity = stored_identity(candidate)
        if identity is not None and identity.get("subset") in ("", split) and \
                _same_except(identity, wanted, ("subset",)):
            return candidate
    data_root = Path(str(attrs.get("data_root") or ""))
    if not attrs.get("data_root") or not data_root.is_dir():
        raise FeaturekitError(
            f"No cache of view {view.name!r} of {training_cache.name}'s {split} split was found, and its data folder "
            f"{data_root} is not here to extract one.",
            received=f"{given('view', view.name)} for cache {training_cache}",
            fix=f"Extract it where the images are: `{extract_command(attrs, view, default, split)}`.")
    from featurekit.extract import extract_many

    log(f"extracting view {view.name} of the {split} split of {training_cache.name} into {default.name} ...")
    extract_many(data_root, **extraction_request(attrs), cache=default, split_fractions=_split_fractions(attrs),
                 view=view, subset=split, expected_identity={k: v for k, v in wanted.items() if k != "view"},
                 log=log, progress=False)
    return default


def test_set_cache_for(training_cache: Path, attrs: dict[str, Any], data: str | Path,
                       log: Callable[[str], None] = print) -> Path:
    """Every image of `data` as a test image, embedded like the training cache, in
    ``<training cache>-on-<data name>.h5`` next to it (reused while up to date, made again when the folder's
    images changed).

    Raises:
        FeaturekitError: the rebuilt embedder differs from the training cache's (the difference is named),
            its weights cannot be had, or `data` is not a data folder.
    """
    from featurekit.extract import ALL_AS_TEST, extract_many, scan_for_extraction

    path = training_cache.with_name(f"{training_cache.stem}-on-{Path(data).expanduser().resolve().name}.h5")
    wanted = {key: attrs.get(key) for key in IDENTITY_KEYS if key not in ("data_fingerprint", "view", "subset")}
    overwrite = False
    if path.is_file():
        stored = stored_identity(path)
        _, fingerprint = scan_for_extraction(data, subset=ALL_AS_TEST)
        if stored is not None and stored.get("data_fingerprint") != fingerprint and _same_except(
                stored, wanted | {"view": "", "subset": ALL_AS_TEST}, ("data_fingerprint",)):
            log(f"the images of {data} changed since {path.name} was made; extracting them again.")
            overwrite = True
    log(f"test set {data}: every image embedded like {training_cache.name}, in {path.name}")
    extract_many(data, **extraction_request(attrs), cache=path, subset=ALL_AS_TEST, expected_identity=wanted,
                 overwrite=overwrite, log=log, progress=False)
    return path


# --------------------------------------------------------------------------------------------------
# Scoring


def score_elsewhere(rows: list[dict[str, Any]], caches: list[Path], views: list[str | View] = (),
                    test_data: list[str | Path] = (), cache_dir: str | Path | None = None, n_boot: int = 1000,
                    log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """`compare`'s rows followed by the same probes scored on each view and each other test set.

    Args:
        rows: Rows of `featurekit.compare.compare` (own test split), each naming its fitted probe (`model_dir`).
        caches: The training caches those rows were made from.
        views: View texts or Views (`featurekit.views`); "none" entries are ignored (that is the own row).
        test_data: Folders whose every image is a test image.
        cache_dir: A further folder to look for view caches in.
        n_boot: Bootstrap resamples for the intervals.
        log: Where progress messages go.

    Returns:
        The rows, then one block per view, then one block per test set; every row with `test_set`, `view` and
        `scored_cache`.
    """
    views = [view for view in parse_views(list(views)) if view is not None]
    by_name = {Path(c).name: Path(c) for c in caches}
    for row in rows:
        row.setdefault("test_set", OWN_TEST_SPLIT)
        row.setdefault("view", "")
        row.setdefault("scored_cache", row.get("cache"))
    fitted_cache: dict[str, Any] = {}
    blocks: list[list[dict[str, Any]]] = [rows]
    targets = [(view, None) for view in views] + [(None, data) for data in test_data]
    for view, data in targets:
        block = []
        for name, training_cache in by_name.items():
            own = [row for row in rows if row.get("cache") == name and row.get("test_set") == OWN_TEST_SPLIT
                   and not row.get("view")]
            if not own:
                continue
            with open_cache(training_cache) as reader:
                attrs = dict(reader.attrs)
            if view is not None:
                scored = view_cache_for(training_cache, attrs, view, cache_dir, log)
            else:
                scored = test_set_cache_for(training_cache, attrs, data, log)
            block += _score_rows(own, training_cache, scored, fitted_cache, n_boot,
                                 view=view.name if view is not None else "",
                                 test_set=OWN_TEST_SPLIT if view is not None else str(data))
        blocks.append(block)
    return [row for block in blocks for row in block]


def _score_rows(own: list[dict[str, Any]], training_cache: Path, scored: Path, fitted_cache: dict[str, Any],
                n_boot: int, view: str, test_set: str) -> list[dict[str, Any]]:
    """The own rows' probes scored on the test rows of `scored`, at their own thresholds."""
    from featurekit.fitting import load_fitted, split_scores
    from featurekit.metrics import evaluate

    out = []
    with open_cache(training_cache) as training, open_cache(scored) as reader:
        reader.require_splits(("test",))
        for row in own:
            directory = str(row["model_dir"])
            if directory not in fitted_cache:
                fitted_cache[directory] = load_fitted(directory, training)  # refuses a probe of another cache
            fitted = fitted_cache[directory]
            scores, labels = split_scores(fitted, reader, "test")
            metrics = evaluate(labels, scores, fitted.threshold, n_boot=n_boot)
            new = {key: value for key, value in row.items() if not key.startswith("_")}
            new.update({key: value for key, value in metrics.items() if key in new or key == "collapsed"})
            new.update(n_test=metrics["n"], test_set=test_set, view=view, scored_cache=scored.name, reused=True,
                       _scores=scores, _labels=labels)
            out.append(new)
    return out
