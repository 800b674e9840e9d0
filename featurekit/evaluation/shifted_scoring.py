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
  `--test-data fake=DIR` pairs a folder of fakes only (another generator) with the REAL images of the training
  cache's test split (`real=DIR` likewise; `real=DIR1,fake=DIR2` two folders): the images are gathered once into
  a content-named folder ``testset-<name>-<hash>`` next to the training cache and embedded like any test set.
- **a threshold chosen on valid plus its views** (`compare --threshold-on valid+views`): the valid split and the
  same images under every view (view caches of the valid split, found or extracted like those of the test split)
  choose each probe's threshold together; every row is then reported at it. Test never chooses anything.

Every row says where it was scored: `test_set` ("test" for the training cache's own test split, else the
folder given) and `view` ("" for the clean images), and `scored_cache` names the cache whose rows were
scored. Rows come in blocks: the own test split, then one block per view, then one per test set. Each row
carries accuracy on real and on fake images separately (`accuracy_real`, `accuracy_fake`), as the field
reports robustness.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from featurekit.cache import IDENTITY_KEYS, normalise_attr, open_cache
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
                identity[key] = value.decode() if isinstance(value, bytes) else normalise_attr(value)
            return identity
    except (OSError, ValueError, TypeError):
        return None


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
    return all(normalise_attr(identity.get(key)) == normalise_attr(wanted.get(key)) for key in IDENTITY_KEYS if key not in free)


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


def extract_command(attrs: dict[str, Any], view: View, cache: Path, views_split: str = OWN_TEST_SPLIT) -> str:
    """The `extract` command that makes the view cache of a split of a training cache by hand."""
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


def default_view_cache(training_cache: Path, view: View, split: str = OWN_TEST_SPLIT) -> Path:
    """``<training cache>-view-<slug>-only-<split>.h5`` next to it: the name `extract --view V --views-split SPLIT`
    gives when the training cache has its default name."""
    return training_cache.with_name(f"{training_cache.stem}-view-{view.slug}-only-{split}.h5")


def view_cache_for(training_cache: Path, attrs: dict[str, Any], view: View, cache_dir: str | Path | None,
                   log: Callable[[str], None] = print, split: str = OWN_TEST_SPLIT) -> Path:
    """The cache of `view` of one split of the training cache (the test split unless said): found by identity (a
    cache of that split only, or of every split), else extracted.

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
    from featurekit.extraction.extract import extract_many

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
    from featurekit.extraction.extract import ALL_AS_TEST, extract_many, scan_for_extraction

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
# Other test sets: a folder of both classes, or one class paired with the other class of the test split

_PAIRED = re.compile(r"^(real|fake)=([^,]+?)(?:,(real|fake)=([^,]+))?$")


@dataclass(frozen=True)
class OtherTestSet:
    """Another test set: `folder` (DIR/<class>/..., every image a test image), or `real` and/or `fake` folders
    whose images all belong to that class; a class without a folder takes the images of that class of the
    training cache's TEST split (fakes of another generator beside the real faces the probe was tested on)."""

    text: str
    folder: Path | None = None
    real: Path | None = None
    fake: Path | None = None

    @property
    def label(self) -> str:
        """How rows name it: the folder as given, or "fake=DIR + real of the test split"."""
        if self.folder is not None:
            return self.text
        return " + ".join(f"{key}={getattr(self, key)}" if getattr(self, key) is not None
                          else f"{key} of the test split" for key in ("fake", "real"))


def parse_test_set(spec: str | Path | OtherTestSet) -> OtherTestSet:
    """A test-set spec: "DIR", "fake=DIR", "real=DIR" or "real=DIR1,fake=DIR2" (see `OtherTestSet`).

    Raises:
        FeaturekitError: a class named twice.
    """
    if isinstance(spec, OtherTestSet):
        return spec
    text = str(spec)
    match = _PAIRED.match(text)
    if match is None:
        return OtherTestSet(text, folder=Path(text))
    first, first_dir, second, second_dir = match.groups()
    if first == second:
        raise FeaturekitError(f"A test set names the {first} folder twice.", received=given("test_data", text),
                              fix="Use fake=DIR, real=DIR, or real=DIR1,fake=DIR2.")
    folders = {first: Path(first_dir)} | ({second: Path(second_dir)} if second else {})
    return OtherTestSet(text, real=folders.get("real"), fake=folders.get("fake"))


def other_test_set_cache(training_cache: Path, test_set: OtherTestSet, log: Callable[[str], None] = print) -> Path:
    """The cache of another test set, embedded like the training cache (`test_set_cache_for`); a paired test set
    is first gathered into its own folder next to the training cache (`paired_folder`)."""
    with open_cache(training_cache) as reader:
        attrs = dict(reader.attrs)
    folder = test_set.folder if test_set.folder is not None else paired_folder(training_cache, attrs, test_set, log)
    return test_set_cache_for(training_cache, attrs, folder, log)


def paired_folder(training_cache: Path, attrs: dict[str, Any], test_set: OtherTestSet,
                  log: Callable[[str], None] = print) -> Path:
    """A data folder <class>/<file> of copies of a paired test set's images, next to the training cache, named by
    its content (``testset-<names>-<hash>``): made once, reused while the images are the same.

    Raises:
        FeaturekitError: a given folder holds no image, or the training cache's data folder (for the test split's
            images) is gone.
    """
    import hashlib
    import shutil

    from featurekit.fsutil import storage_error, temporary_sibling

    files = _paired_files(training_cache, attrs, test_set)
    digest = hashlib.sha256()
    for class_name, pairs in files.items():
        for source, name in pairs:
            try:
                stat = source.stat()
            except OSError as error:
                raise FeaturekitError(f"An image of the test set cannot be read ({error.strerror}).",
                                      received=f"{given('test_data', test_set.text)}: {source}",
                                      fix="Restore the file, or name a folder whose images are all there.") from None
            digest.update(f"{class_name}/{name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    given_names = "-".join(Path(str(getattr(test_set, key))).name for key in ("real", "fake")
                           if getattr(test_set, key) is not None)
    # Named by content, so caches of the same images (other backbones, fusion members) share one folder.
    final = training_cache.with_name(f"testset-{given_names}-{digest.hexdigest()[:10]}")
    if final.is_dir():
        return final
    log(f"test set {test_set.label}: gathering {sum(map(len, files.values()))} images into {final.name}")
    building = temporary_sibling(final)
    try:
        for class_name, pairs in files.items():
            (building / class_name).mkdir(parents=True)
            for source, name in pairs:
                shutil.copyfile(source, building / class_name / name)
    except OSError as error:
        shutil.rmtree(building, ignore_errors=True)  # only what this call wrote
        raise storage_error(error, "gather the images of the test set", final) from None
    try:
        os.rename(building, final)
    except OSError:  # another process put the same folder in place first: ours is not needed
        shutil.rmtree(building, ignore_errors=True)
    return final


def _paired_files(training_cache: Path, attrs: dict[str, Any], test_set: OtherTestSet
                  ) -> dict[str, list[tuple[Path, str]]]:
    """For each class (the training cache's names, label order): (source file, file name in the paired folder)."""
    from featurekit.data import IMAGE_SUFFIXES

    with open_cache(training_cache) as reader:
        class_names, paths, labels = reader.class_names, reader.paths, reader.labels
        test_rows = reader.split_indices(OWN_TEST_SPLIT)
    files: dict[str, list[tuple[Path, str]]] = {}
    for label, key in enumerate(("real", "fake")):
        given_folder = getattr(test_set, key)
        if given_folder is not None:
            folder = Path(given_folder).expanduser()
            found = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()) \
                if folder.is_dir() else []
            if not found:
                raise FeaturekitError(f"The {key} folder of a test set holds no images ({', '.join(IMAGE_SUFFIXES)}).",
                                      received=given("test_data", test_set.text), fix="Name a folder of images.")
            files[class_names[label]] = [(f, "given__" + f.relative_to(folder).as_posix().replace("/", "__"))
                                         for f in found]
            continue
        root = Path(str(attrs.get("data_root") or ""))
        if not attrs.get("data_root") or not root.is_dir():
            raise FeaturekitError(
                f"The test set pairs its images with the {key} images of {training_cache.name}'s test split, but its "
                f"data folder {root} is not here.", received=given("test_data", test_set.text),
                fix="Run where the training cache's data folder is, or give both classes: real=DIR1,fake=DIR2.")
        files[class_names[label]] = [(root / paths[i], "testsplit__" + paths[i].replace("/", "__"))
                                     for i in test_rows if int(labels[i]) == label]
    return files


# --------------------------------------------------------------------------------------------------
# Scoring


def score_elsewhere(rows: list[dict[str, Any]], caches: list[Path], views: list[str | View] = (),
                    test_data: list[str | Path] = (), cache_dir: str | Path | None = None, n_boot: int = 1000,
                    log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """`compare`'s rows followed by the same probes scored on each view and each other test set.

    Args:
        rows: Rows of `featurekit.evaluation.compare.compare` (own test split), each naming its fitted probe (`model_dir`).
        caches: The training caches those rows were made from.
        views: View texts or Views (`featurekit.views`); "none" entries are ignored (that is the own row).
        test_data: Other test sets (`parse_test_set`): a folder whose every image is a test image, or one class's
            folder paired with the other class of the training cache's test split.
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
                scored = other_test_set_cache(training_cache, parse_test_set(data), log)
            block += _score_rows(own, training_cache, scored, fitted_cache, n_boot,
                                 view=view.name if view is not None else "",
                                 test_set=OWN_TEST_SPLIT if view is not None else parse_test_set(data).label)
        blocks.append(block)
    return [row for block in blocks for row in block]


def _score_rows(own: list[dict[str, Any]], training_cache: Path, scored_cache: Path, fitted_cache: dict[str, Any],
                n_boot: int, view: str, test_set: str) -> list[dict[str, Any]]:
    """The own rows' probes scored on the test rows of `scored_cache`, at their own thresholds."""
    from featurekit.evaluation.compare import scored
    from featurekit.evaluation.fitting import load_fitted

    out = []
    with open_cache(training_cache) as training, open_cache(scored_cache) as reader:
        reader.require_splits(("test",))
        for row in own:
            directory = str(row["model_dir"])
            if directory not in fitted_cache:  # the fit compare made, else loaded (refusing a probe of another cache)
                fitted_cache[directory] = row.get("_fitted") or load_fitted(directory, training)
            metrics = scored(fitted_cache[directory], reader, "test", n_boot)
            new = {key: value for key, value in row.items() if not key.startswith("_")}
            new.update({key: value for key, value in metrics.items() if key in new or key == "collapsed"})
            new.update(n_test=metrics["n"], test_set=test_set, view=view, scored_cache=scored_cache.name, reused=True,
                       _scores=metrics["_scores"], _labels=metrics["_labels"])
            out.append(new)
    return out


def score_on_test_sets(source: Any, fitted: Any, test_data: list[str | Path], n_boot: int,
                       log: Callable[[str], None] = print, views: list[str | View] = (),
                       threshold: float | None = None) -> list[dict[str, Any]]:
    """One fitted configuration (a cache or a fusion) scored on each view of the test split and each other test
    set, at its own threshold (chosen on valid) unless another is given: what a sweep reports about its choice,
    after the choice.

    Returns:
        One dict per view, then per test set: `test_set` (its label), `view`, `scored_cache`, and every metric of
        `compare.scored`.
    """
    from featurekit.evaluation.compare import scored
    from featurekit.cache.fusion import open_source

    members = _members(source)
    targets = [(view.name, OWN_TEST_SPLIT, [view_cache_for(m, _attrs(m), view, None, log) for m in members])
               for view in parse_views(list(views)) if view is not None]
    targets += [("", parse_test_set(spec).label, [other_test_set_cache(m, parse_test_set(spec), log) for m in members])
                for spec in test_data]
    rows = []
    for view, label, caches in targets:
        with open_source(caches if len(caches) > 1 else caches[0], log, keep_order=True) as reader:
            reader.require_splits(("test",))
            metrics = scored(fitted, reader, "test", n_boot, threshold)
        rows.append({"test_set": label, "view": view, "scored_cache": ", ".join(c.name for c in caches),
                     **{k: v for k, v in metrics.items() if not k.startswith("_")}})
    return rows


def _members(source: Any) -> list[Path]:
    """The member caches of a cache or fusion, in the column order its probes were fitted on (a fusion puts its
    members in a canonical order, which the caches substituted for them on a view or test set need not share)."""
    if not isinstance(source, (list, tuple)) or len(source) < 2:
        return [Path(source[0] if isinstance(source, (list, tuple)) else source)]
    from featurekit.cache.fusion import open_source

    with open_source(source) as fused:
        return [Path(p) for p in fused.member_paths]


def _attrs(cache: Path) -> dict[str, Any]:
    with open_cache(cache) as reader:
        return dict(reader.attrs)


def valid_and_views_threshold(source: Any, fitted: Any, views: list[str | View], cache_dir: str | Path | None = None,
                              log: Callable[[str], None] = print) -> float:
    """The threshold of a fitted configuration (a cache or a fusion) chosen on its valid split together with the
    same valid images under every view (each view's valid split found or extracted like a test view). A threshold
    that has seen degraded copies may hold better under a shift; it is still chosen without test.

    Raises:
        FeaturekitError: no view is given.
    """
    from featurekit.evaluation.fitting import split_scores
    from featurekit.cache.fusion import open_source
    from featurekit.metrics import choose_threshold

    views = _threshold_views(views)
    members = _members(source)
    sources = [members] + [[view_cache_for(m, _attrs(m), view, cache_dir, log, split="valid") for m in members]
                          for view in views]
    parts = []
    for part in sources:
        with open_source(part if not isinstance(part, list) or len(part) > 1 else part[0], log,
                         keep_order=True) as reader:
            parts.append(split_scores(fitted, reader, "valid"))
    return float(choose_threshold(np.concatenate([labels for _, labels in parts]),
                                  np.concatenate([scores for scores, _ in parts])))


def thresholds_on_valid_and_views(rows: list[dict[str, Any]], caches: list[Path], views: list[str | View],
                                  cache_dir: str | Path | None = None, log: Callable[[str], None] = print
                                  ) -> dict[str, float]:
    """For each probe of the rows of `caches` scored on their own test split (by `model_dir`): its
    `valid_and_views_threshold`."""
    from featurekit.evaluation.fitting import load_fitted

    _threshold_views(views)
    thresholds: dict[str, float] = {}
    names = {Path(c).name: Path(c) for c in caches}
    for row in rows:
        training_cache = names.get(str(row.get("cache")))
        if training_cache is None or row.get("view") or row.get("test_set", OWN_TEST_SPLIT) != OWN_TEST_SPLIT:
            continue
        fitted = row.get("_fitted") or load_fitted(row["model_dir"])
        thresholds[str(row["model_dir"])] = valid_and_views_threshold(training_cache, fitted, views, cache_dir, log)
    return thresholds


def _threshold_views(views: list[str | View]) -> list[View]:
    """The views a valid+views threshold is chosen on; refused when there are none."""
    views = [view for view in parse_views(list(views)) if view is not None]
    if not views:
        raise FeaturekitError("A threshold chosen on valid plus its views needs at least one view.",
                              received=given("threshold_on", "valid+views"),
                              fix=f"Name views with {given('view', 'jpeg:50')} (repeat for several), e.g. the views "
                              "you report robustness on.")
    return views


def at_thresholds(rows: list[dict[str, Any]], thresholds: dict[str, float], rule: str, n_boot: int
                  ) -> list[dict[str, Any]]:
    """The rows evaluated again at the thresholds given per probe (`model_dir`), each saying its rule in
    `threshold_on`; rows of probes without one keep theirs."""
    from featurekit.evaluation.compare import shift_figures
    from featurekit.metrics import evaluate

    out = []
    for row in rows:
        threshold = thresholds.get(str(row.get("model_dir")))
        if threshold is None:
            out.append(row)
            continue
        metrics = {**evaluate(row["_labels"], row["_scores"], threshold, n_boot=n_boot),
                   **shift_figures(row["_labels"], row["_scores"])}
        out.append({**row, **{key: value for key, value in metrics.items() if key in row}, "threshold_on": rule})
    return out

