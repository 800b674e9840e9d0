"""Images -> P(fake) with a fitted model, through the same backbone, weights and preprocessing as its cache.

Before anything is scored, the model's `fitted.json` is cross-checked: its embedding record against the
estimator it loads (number of features), against the cache it names when that cache is present (its
fingerprint and every recorded field), against the cache fingerprint it was fitted on when the cache is
absent, and against the embedder rebuilt from it. An edited or stale record (a changed pooling once turned
P(fake) 0.26 into 0.003 without a word) is refused with the field that differs.

A model fitted on a fusion of caches (its fitted.json lists `members`) rebuilds every member's embedder,
each checked as above, embeds each image with each of them, and concatenates the features in member
order, as `featurekit.cache.fusion.FusedCache` did for fitting.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.cache import IDENTITY_KEYS, cache_fingerprint, normalise_attr, open_cache
from featurekit.data import IMAGE_SUFFIXES, printable_path, read_problem
from featurekit.errors import FeaturekitError, WeightsUnavailableError
from featurekit.evaluation.fitting import load_fitted
from featurekit.hashing import file_sha256
from featurekit.options import validate_params
from featurekit.parameters import BATCH_SIZE, MAX_PIXELS


def entry_problem(path: Path) -> str:
    """Why an entry cannot be decoded as an image, found without opening it ("" when it can be tried).

    A FIFO is never opened (reading one blocks until someone writes to it); a link is followed.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a dangling symbolic link (its target does not exist)" if path.is_symlink() else "the file disappeared"
    except OSError as error:
        return read_problem(error)
    if stat.S_ISDIR(mode):
        return "a folder, not an image file"
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        return f"not a regular file ({kind}): not read"
    return ""


def folder_entries(folder: Path) -> list[tuple[Path, str]]:
    """(file, problem) for every image-named entry below `folder`, and every subfolder that cannot be read.

    Links to folders are not entered (no loops); any other entry with an image suffix is listed, whatever
    it is, so a FIFO or a dangling link gets its own row.
    """
    entries: list[tuple[Path, str]] = []

    def unreadable(error: OSError) -> None:
        entries.append((Path(error.filename), f"a folder that cannot be read: {error.strerror or error}"))

    for root, _, names in os.walk(folder, onerror=unreadable):
        entries += [(Path(root) / name, entry_problem(Path(root) / name)) for name in names
                    if Path(name).suffix.lower() in IMAGE_SUFFIXES]
    return sorted(entries)


def collect_images(inputs: list[str | Path]) -> list[tuple[Path, str]]:
    """(file, problem) for every image named, or found (recursively) in named folders, in a stable order.

    An entry that cannot be read (a FIFO, a dangling link, a file or folder without permission) is kept
    with its problem, so it gets its own error row; only an input that does not exist at all is refused.
    """
    entries: list[tuple[Path, str]] = []
    for item in map(Path, inputs):
        if not os.path.lexists(item):
            raise FeaturekitError("Input not found.", received=str(item), fix="Pass image files or folders that exist.")
        problem = entry_problem(item)
        entries += folder_entries(item) if problem == "a folder, not an image file" else [(item, problem)]
    if not entries:
        raise FeaturekitError("No images to predict.", received=", ".join(map(str, inputs)),
                              fix=f"Pass image files or folders holding {', '.join(IMAGE_SUFFIXES)} files.")
    return entries


# Fields of the embedding record that the rebuilt embedder's describe() must give back, with the value a
# record written before the field existed stands for.
DESCRIBED_KEYS = {"backbone": None, "weights_label": None, "weights_sha256": None, "layer": None, "pooling": None,
                  "image_size": None, "preprocessing": None, "precision": "float32", "feature_dim": None}


def _refuse_field(model_dir: str | Path, field: str, recorded: Any, actual: Any, where: str) -> FeaturekitError:
    return FeaturekitError(
        f"The model's fitted.json says {field} is {recorded!r}, but {where} says {actual!r}: the model would "
        "score features other than those it was fitted on.",
        received=f"{Path(model_dir) / 'fitted.json'} ({field})",
        fix="Restore the original fitted.json, or refit the model on its cache (the `fit` command with its `cache` "
        "and `probe`).")


def check_fitted_record(model_dir: str | Path, meta: dict[str, Any], estimator: Any) -> None:
    """Refuse a fitted.json whose embedding record disagrees with its model, its cache or its fingerprint.

    Args:
        model_dir: The fitted-model folder (for messages).
        meta: Its parsed fitted.json.
        estimator: The estimator loaded from it.
    """
    embedding = meta.get("embedding") or {}
    n_features = getattr(estimator, "n_features_in_", None)
    if n_features is not None and embedding.get("feature_dim") not in (None, "") and \
            int(n_features) != int(embedding["feature_dim"]):
        raise _refuse_field(model_dir, "feature_dim", embedding["feature_dim"], int(n_features),
                            "the fitted estimator (n_features_in_)")
    cache_path = Path(str(meta.get("cache", "")))
    if meta.get("cache") and cache_path.is_file():
        with open_cache(cache_path) as cache:
            attrs, fingerprint, class_names = cache.attrs, cache.fingerprint, cache.class_names
        in_cache = [(key, value, attrs[key]) for key, value in embedding.items() if key in attrs]
        for field, recorded, actual in [("cache_fingerprint", meta.get("cache_fingerprint"), fingerprint),
                                        ("class_names", meta.get("class_names", class_names), class_names), *in_cache]:
            if normalise_attr(recorded) != normalise_attr(actual):
                raise _refuse_field(model_dir, field, recorded, actual, f"its cache {cache_path}")
        return
    # The cache is not here: the record must still give the fingerprint of the cache the model was fitted on.
    if all(key in embedding for key in ("data_fingerprint", "n_rows", "feature_dim")) and meta.get("cache_fingerprint"):
        recomputed = cache_fingerprint(embedding, int(embedding["n_rows"]), int(embedding["feature_dim"]))
        if recomputed != meta["cache_fingerprint"]:
            raise FeaturekitError(
                "The model's fitted.json was changed after fitting: its embedding record no longer gives the "
                f"fingerprint of the cache the model was fitted on (one of {', '.join(IDENTITY_KEYS)} differs; "
                f"the cache itself, {meta.get('cache')}, is not here to say which).",
                received=f"{Path(model_dir) / 'fitted.json'} (cache_fingerprint {meta['cache_fingerprint']}, record "
                f"gives {recomputed})",
                fix="Restore the original fitted.json, or refit the model on its cache.")


def check_embedder_matches(model_dir: str | Path, embedding: dict[str, Any], described: dict[str, Any]) -> None:
    """Refuse when the embedder rebuilt from the record does not describe the embeddings the record names."""
    for key, default in DESCRIBED_KEYS.items():
        recorded = default if embedding.get(key) is None else embedding[key]
        if recorded is not None and normalise_attr(recorded) != normalise_attr(described.get(key)):
            raise _refuse_field(model_dir, key, recorded, described.get(key), "the embedder rebuilt from it")


def embedder_for(embedding: dict[str, Any]):
    """Rebuild the embedder that made a model's cache; refuse when its weights cannot be had as they were.

    Caches record weight files by absolute path; a recorded file that is not at its path (a checkout that
    moved, or the shipped MobileNet file of another installation) is found again by its content where the
    weights records know it.
    """
    from featurekit.backbones import get_spec
    from featurekit.backbones.weights import record_for_sha256, record_path

    spec = get_spec(str(embedding.get("backbone") or ""))
    weights = embedding.get("weights") or "none"
    expected_sha = embedding.get("weights_sha256") or ""
    if weights not in ("none", "imagenet", "default") and expected_sha and not Path(weights).exists():
        record = record_for_sha256(expected_sha)
        weights = str(record_path(record)) if record is not None and record_path(record).is_file() else weights
    if weights not in ("none", "imagenet") and expected_sha and Path(weights).exists() and \
            file_sha256(weights) != expected_sha:
        raise FeaturekitError(
            "The weights file has changed since the model's cache was extracted.",
            received=f"{weights} (sha256 differs from {expected_sha[:12]}...)",
            fix="Restore the original file, or re-extract the cache and refit the model.")
    try:
        embedder = spec.rebuild_embedder(embedding, weights=weights)
    except (WeightsUnavailableError, FileNotFoundError) as error:
        raise FeaturekitError(
            f"The model's backbone weights are not available here: {error}",
            received=f"weights {weights}",
            fix="Make the same weights file available at that path (or Keras' ImageNet file in ~/.keras/models).",
        ) from None
    label = embedder.describe()["weights_label"]
    if label != embedding.get("weights_label"):
        raise FeaturekitError(
            "The backbone weights found here are not the ones the model's cache was made with.",
            received=f"{label!r}, expected {embedding.get('weights_label')!r}",
            fix="Provide the original weights, or re-extract the cache and refit.")
    return embedder


@validate_params("predict")
def predict(model_dir: str | Path, inputs: list[str | Path], batch_size: int = BATCH_SIZE, max_pixels: int | None = MAX_PIXELS,
            workers: int | None = None) -> list[dict[str, Any]]:
    """P(fake) and the label at the model's stored threshold for every input image.

    Args:
        model_dir: A fitted-model folder (``runs/<cache>/<probe>``).
        inputs: Image files and/or folders.
        batch_size: Images per forward pass.
        max_pixels: Largest image (width x height) decoded; larger files get an error row. 0 or None: no limit.
        workers: Decode threads; None for one per CPU core.

    Returns:
        One dict per file: path (printable: a name that is not UTF-8 is shown with escapes), p_fake, label,
        threshold, and error for a file that could not be read or decoded (its p_fake and label None).
    """
    fitted = load_fitted(model_dir)
    entries = collect_images(inputs)
    embedders = model_embedders(model_dir, fitted.meta, fitted.estimator)
    readable = [str(path.resolve()) for path, problem in entries if not problem]
    scored = _scores(fitted.estimator, embedders, readable, batch_size, max_pixels or None, workers)
    class_names, threshold = fitted.meta["class_names"], fitted.threshold
    rows: list[dict[str, Any]] = []
    for path, problem in entries:
        p_fake, reason = (None, problem) if problem else next(scored)
        label = None if p_fake is None else class_names[int(p_fake >= threshold)]
        rows.append({"path": printable_path(str(path)), "p_fake": p_fake, "label": label, "threshold": threshold,
                     **({"error": reason or "not decoded"} if p_fake is None else {})})
    return rows


def model_embedders(model_dir: str | Path, meta: dict[str, Any], estimator: Any) -> list[tuple[Any, int]]:
    """(embedder, its image size) for each block of the model's feature columns, in column order: one for a
    model fitted on one cache, one per member for a fusion; each record checked first.

    Raises:
        FeaturekitError: A record that disagrees with the estimator, its cache, its fingerprint or its
            rebuilt embedder; for a fusion also a members list that is not well formed, or member sizes and
            fingerprints that do not add up to the fused record (an edited fitted.json).
    """
    fused = meta.get("members") is not None
    embedders = []
    for record in _member_records(model_dir, meta, estimator) if fused else [meta]:
        check_fitted_record(model_dir, record, None if fused else estimator)
        embedder = embedder_for(record["embedding"])
        check_embedder_matches(model_dir, record["embedding"], embedder.describe())
        embedders.append((embedder, int(record["embedding"]["image_size"])))
    return embedders


def _member_records(model_dir: str | Path, meta: dict[str, Any], estimator: Any) -> list[dict[str, Any]]:
    """The record of each member of a model fitted on a fusion, once the fused record adds up."""
    from featurekit.cache.fusion import fused_fingerprint

    members = meta.get("members")
    if not isinstance(members, list) or len(members) < 2 or not all(
            isinstance(m, dict) and isinstance(m.get("embedding"), dict) and m.get("fingerprint") for m in members):
        raise FeaturekitError("The model's fitted.json lists its fused caches in a form this version cannot read.",
                              received=f"{Path(model_dir) / 'fitted.json'} (members)",
                              fix="Refit it on the fusion of its caches (the `fit` command with `fuse`).")
    fingerprint = fused_fingerprint([m["fingerprint"] for m in members])
    if fingerprint != meta.get("cache_fingerprint"):
        raise _refuse_field(model_dir, "cache_fingerprint", meta.get("cache_fingerprint"), fingerprint,
                            "the fingerprints of its members")
    check_fitted_record(model_dir, meta, estimator)  # the fused feature_dim against the estimator
    dims = [m["embedding"].get("feature_dim") for m in members]
    fused_dim = (meta.get("embedding") or {}).get("feature_dim")
    if all(isinstance(d, int) for d in dims) and isinstance(fused_dim, int) and sum(dims) != fused_dim:
        raise _refuse_field(model_dir, "feature_dim", fused_dim, sum(dims), "the sum of its members' feature_dim")
    return [{"cache": m.get("path"), "cache_fingerprint": m["fingerprint"], "embedding": m["embedding"]}
            for m in members]


def _scores(estimator: Any, embedders: list[tuple[Any, int]], paths: list[str], batch_size: int,
            max_pixels: int | None, workers: int | None) -> Iterator[tuple[float | None, str]]:
    """(P(fake) or None, reason) per path: each image through every embedder, the features concatenated."""
    from featurekit.pipeline import image_batches
    from featurekit.probes import fake_scores

    for embedder, _ in embedders:
        embedder.batch_size = batch_size
    # One decode per distinct input size; the streams slice the files identically, batch by batch.
    sizes = list(dict.fromkeys(size for _, size in embedders))
    streams = [image_batches("", paths, size, batch_size, workers=workers, max_pixels=max_pixels) for size in sizes]
    for decoded in zip(*streams):
        by_size = dict(zip(sizes, decoded))
        ok = np.logical_and.reduce([batch[1] for batch in decoded])
        reasons = [next((r for r in row_reasons if r), "") for row_reasons in zip(*(batch[2] for batch in decoded))]
        scores = np.full(len(ok), np.nan)
        if ok.any():
            features = np.concatenate([np.asarray(embedder(by_size[size][0]))[ok] for embedder, size in embedders],
                                      axis=1)
            scores[ok] = fake_scores(estimator, features)
        yield from ((float(s), "") if good else (None, reason) for good, s, reason in zip(ok, scores, reasons))
