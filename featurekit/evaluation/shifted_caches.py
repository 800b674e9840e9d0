"""Caches to score fitted probes on besides the own test split: views of a split, and other test sets.

- **views** (`view`, `jpeg:50`): a split of the same images, degraded (`featurekit.views`), embedded by the same
  embedder: CNNDetection's robustness protocol. The view cache is found by its identity (equal to the training
  cache's in everything but `view`, holding that split: `subset` "" or the split), first under its default name
  next to the training cache, then by reading the identity of every cache in that folder and in `cache_dir`. A
  missing one is extracted (that split only) from the training cache's data folder when that folder is still there
  with the same images: the command that would make it by hand needs that folder too, and extracting only what is
  missing keeps `compare` one command. When the folder is gone, the error gives the exact `extract` command.
- **other test sets** (`test_data`, a folder DIR): every image of DIR is a test image. DIR is extracted with the
  embedder rebuilt from the training cache's attributes (as `predict` rebuilds it) into
  ``<training cache>-on-<DIR name>.h5`` next to the training cache; a rebuilt embedder whose identity differs
  (weights changed, another precision) is refused, naming the difference, before any image is read.
  `fake=DIR` pairs a folder of fakes only (another generator) with the REAL images of the training cache's test
  split (`real=DIR` likewise; `real=DIR1,fake=DIR2` two folders): the images are gathered once into a
  content-named folder ``testset-<name>-<hash>`` next to the training cache and embedded like any test set.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from featurekit.cache import IDENTITY_KEYS, normalise_attr, open_cache
from featurekit.errors import FeaturekitError, given
from featurekit.rows import OWN_TEST_SPLIT, PAIRED_TEST_SET
from featurekit.views import View


def cache_attrs(path: str | Path) -> dict[str, Any]:
    """The attributes of a finished cache (opened and checked like any cache)."""
    with open_cache(path) as reader:
        return dict(reader.attrs)


def stored_identity(path: str | Path, keys: tuple[str, ...] = IDENTITY_KEYS) -> dict[str, Any] | None:
    """The identity attributes (or other `keys`) of a finished cache, read from its HDF5 attributes alone (cheap:
    no rows are read); None for a file that is not a finished featurekit cache."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if not bool(f.attrs.get("complete", False)):
                return None
            return {key: value.decode() if isinstance(value := f.attrs.get(key), bytes) else normalise_attr(value)
                    for key in keys}
    except (OSError, ValueError, TypeError):
        return None


def _same_except(identity: dict[str, Any], wanted: dict[str, Any], free: tuple[str, ...]) -> bool:
    return all(normalise_attr(identity.get(key)) == normalise_attr(wanted.get(key)) for key in IDENTITY_KEYS if key not in free)


# --------------------------------------------------------------------------------------------------
# Rebuilding the training cache's embedder


def extraction_request(attrs: dict[str, Any]) -> dict[str, Any]:
    """`extract_many` arguments that rebuild the embedder of a cache from its attributes (as `predict` does)."""
    # A hand-made feature computed on images as stored (resize "none..."): keep refusing resampled ones.
    image_size = None if str(attrs.get("resize", "")).startswith("none") else int(attrs["image_size"])
    return {
        "backbone": str(attrs["backbone"]), "weights": str(attrs.get("weights") or "none"), "image_size": image_size,
        "layers": [attrs.get("layer") or None], "poolings": [str(attrs.get("pooling"))],
        "preprocessing": attrs.get("preprocessing") or None, "dtype": str(attrs.get("dtype") or "float32"),
        "seed": int(attrs.get("seed") or 0), "precision": str(attrs.get("precision") or "float32"),
        "batch_size": int(attrs.get("batch_size") or 32), "on_missing_weights": "error",
    }


def _recorded_split(attrs: dict[str, Any]) -> Any:
    """The split fractions the cache's config recorded (None: the default ones)."""
    return attrs["config"].get("split") if isinstance(attrs.get("config"), dict) else None


def extract_command(attrs: dict[str, Any], view: View, cache: Path, views_split: str = OWN_TEST_SPLIT) -> str:
    """The `extract` command that makes the view cache of a split of a training cache by hand."""
    from featurekit.backbones import get_spec

    request = extraction_request(attrs)
    split = _recorded_split(attrs)
    choices = {"weights": request["weights"], "pooling": request["poolings"][0], "preprocessing":
               str(request["preprocessing"]), "precision": request["precision"], "seed": request["seed"]}
    applies = get_spec(request["backbone"]).request_options
    flags = {"backbone": request["backbone"], "data": str(attrs.get("data_root")),
             **{name: value for name, value in choices.items() if name in applies},
             "layer": request["layers"][0], "image-size": request["image_size"],
             "split": (split if isinstance(split, str) else ",".join(map(str, split))) if split else None,
             "dtype": request["dtype"], "batch-size": request["batch_size"], "view": view.name,
             "views-split": views_split, "cache": cache}
    args = [arg for name, value in flags.items() if value is not None for arg in (f"--{name}", str(value))]
    return " ".join(shlex.quote(a) for a in ["python", "cli.py", "extract", *args])


# --------------------------------------------------------------------------------------------------
# Finding or making the caches to score on


def view_cache_for(training_cache: Path, view: View, cache_dir: str | Path | None = None,
                   log: Callable[[str], None] = print, split: str = OWN_TEST_SPLIT) -> Path:
    """The cache of `view` of one split of the training cache (the test split unless said): found by identity (a
    cache of that split only, or of every split), else extracted.

    Raises:
        FeaturekitError: none is found and the data folder is gone or holds other images (with the exact
            extract command), or the rebuilt embedder differs from the training cache's.
    """
    attrs = cache_attrs(training_cache)
    wanted = {key: attrs.get(key) for key in IDENTITY_KEYS} | {"view": view.name}
    # The name `extract --view V --views-split SPLIT` gives next to a training cache of the default name, the name
    # of a view of every split, then every cache in the training cache's folder and in `cache_dir`.
    default = training_cache.with_name(f"{training_cache.stem}-view-{view.slug}-only-{split}.h5")
    folders = [training_cache.parent] + ([Path(cache_dir)] if cache_dir is not None else [])
    candidates = [default, training_cache.with_name(f"{training_cache.stem}-view-{view.slug}.h5")] + [
        p for folder in dict.fromkeys(folders) if folder.is_dir() for p in sorted(folder.glob("*.h5"))]
    for identity, candidate in ((stored_identity(c), c) for c in dict.fromkeys(candidates) if c.is_file()):
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
    from featurekit.config import parse_split_fractions
    from featurekit.data import DEFAULT_SPLIT_FRACTIONS
    from featurekit.extraction.extract import extract_many

    log(f"extracting view {view.name} of the {split} split of {training_cache.name} into {default.name} ...")
    extract_many(data_root, **extraction_request(attrs), cache=default, view=view, subset=split, log=log,
                 split_fractions=parse_split_fractions(_recorded_split(attrs) or DEFAULT_SPLIT_FRACTIONS),
                 expected_identity=wanted, progress=False)
    return default


def other_test_set_cache(training_cache: Path, test_set: OtherTestSet, log: Callable[[str], None] = print) -> Path:
    """Every image of another test set as a test image, embedded like the training cache, in
    ``<training cache>-on-<folder name>.h5`` next to it (reused while up to date, made again when the folder's
    images changed); a paired test set is first gathered into its own folder next to the training cache
    (`paired_folder`).

    Raises:
        FeaturekitError: the rebuilt embedder differs from the training cache's (the difference is named),
            its weights cannot be had, or the folder is not a data folder.
    """
    from featurekit.extraction.extract import ALL_AS_TEST, extract_many, scan_for_extraction

    attrs = cache_attrs(training_cache)
    data = test_set.folder if test_set.folder is not None else paired_folder(training_cache, attrs, test_set, log)
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


def parse_test_set(spec: str | Path) -> OtherTestSet:
    """A test-set spec: "DIR", "fake=DIR", "real=DIR" or "real=DIR1,fake=DIR2" (see `OtherTestSet`).

    Raises:
        FeaturekitError: a class named twice.
    """
    text = str(spec)
    match = PAIRED_TEST_SET.match(text)
    if match is None:
        return OtherTestSet(text, folder=Path(text))
    first, first_dir, second, second_dir = match.groups()
    if first == second:
        raise FeaturekitError(f"A test set names the {first} folder twice.", received=given("test_data", text),
                              fix="Use fake=DIR, real=DIR, or real=DIR1,fake=DIR2.")
    folders = {first: Path(first_dir)} | ({second: Path(second_dir)} if second else {})
    return OtherTestSet(text, real=folders.get("real"), fake=folders.get("fake"))


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
    for class_name, source, name in files:
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
    log(f"test set {test_set.label}: gathering {len(files)} images into {final.name}")
    building = temporary_sibling(final)
    try:
        for class_name, source, name in files:
            (building / class_name).mkdir(parents=True, exist_ok=True)
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
                  ) -> list[tuple[str, Path, str]]:
    """(class folder: the training cache's class name, source file, file name in the paired folder) of each image,
    class by class in label order."""
    from featurekit.data import IMAGE_SUFFIXES

    with open_cache(training_cache) as reader:
        class_names, paths, labels = reader.class_names, reader.paths, reader.labels
        test_rows = reader.split_indices(OWN_TEST_SPLIT)
    files: list[tuple[str, Path, str]] = []
    for label, key in enumerate(("real", "fake")):
        given_folder = getattr(test_set, key)
        if given_folder is not None:
            folder = Path(given_folder).expanduser()
            found = sorted(f for f in folder.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if not found:
                raise FeaturekitError(f"The {key} folder of a test set holds no images ({', '.join(IMAGE_SUFFIXES)}).",
                                      received=given("test_data", test_set.text), fix="Name a folder of images.")
            files += [(class_names[label], f, "given__" + f.relative_to(folder).as_posix().replace("/", "__"))
                      for f in found]
            continue
        root = Path(str(attrs.get("data_root") or ""))
        if not attrs.get("data_root") or not root.is_dir():
            raise FeaturekitError(
                f"The test set pairs its images with the {key} images of {training_cache.name}'s test split, but its "
                f"data folder {root} is not here.", received=given("test_data", test_set.text),
                fix="Run where the training cache's data folder is, or give both classes: real=DIR1,fake=DIR2.")
        files += [(class_names[label], root / paths[i], "testsplit__" + paths[i].replace("/", "__"))
                  for i in test_rows if int(labels[i]) == label]
    return files
