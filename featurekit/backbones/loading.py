"""Weights requests -> a built, frozen backbone; and what to record about those weights.

A request is "default", "imagenet", "none" (seeded random init) or a path to a `.weights.h5` or `.keras`
file. Every way it can fail becomes a FeaturekitError that says what was wrong, what was received and
how to fix it: above all the offline `imagenet` download, which Keras reports as a bare `Exception`.
Files are recognised by content through the records in `weights.py`, which give each its label and the
architecture variant it was trained in.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import ssl
import urllib.error
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h5py
import keras

from featurekit.backbones.checks import check_image_size
from featurekit.backbones.registry import get_spec, list_backbones
from featurekit.backbones.weights import (SHARED_WEIGHTS_DIR, STANDARD_VARIANT, WeightsRecord, cached_file_sha256,
                                          display_path, keras_imagenet_record, keras_models_dir, offline_files,
                                          record_for_sha256, record_path, records_for)
from featurekit.errors import FeaturekitError, WeightsUnavailableError, given

# What urllib raises while a download is under way (keras.utils.get_file wraps only URLError/HTTPError):
# the connection dropped, timed out, was cut short or spoke broken HTTP. All are network faults; a local
# file that cannot be read or written raises other OSErrors (PermissionError, ENOSPC ...).
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError,
                   socket.gaierror, ssl.SSLError)


def resolve_weights(spec: Any, weights: str | os.PathLike) -> str:
    """The concrete request behind `weights`: "default" becomes the spec's own default, paths become str."""
    return spec.default_weights if str(weights) == "default" else str(weights)


def build_with_weights(spec: Any, weights: str | os.PathLike, image_size: int | None, seed: int) -> keras.Model:
    """Build `spec`'s network at `image_size` with the requested weights, frozen.

    Args:
        spec: The registered backbone.
        weights: "default" (spec.default_weights), "imagenet", "none" (random init seeded with `seed`: a
            random-features baseline), or a path to a `.weights.h5` file (same architecture; a file known by
            its sha256 builds the architecture variant its record names) or a `.keras` file (a saved model
            containing this backbone, possibly trained at another input size).
        image_size: Square input size in pixels, from spec.min_input_size to parameters.MAX_IMAGE_SIZE; None: native.
        seed: Seed of the random initialisation; the caller's random state is left as it was.

    Returns:
        The model, with `trainable = False`.

    Raises:
        WeightsUnavailableError: ImageNet weights could not be downloaded, or the file does not exist.
        FeaturekitError: Any other unusable request (no ImageNet weights for this backbone, unknown
            suffix, a file that does not fit the backbone, a .keras file with Lambda layers, an input size
            out of range, a local I/O error reading Keras' cached ImageNet file).
    """
    size = check_image_size(spec, image_size)
    request = resolve_weights(spec, weights)
    input_shape = (size, size, 3)
    # Seed every build: random init is then reproducible, and a file load starts from a known state.
    with initialisers_seeded(seed):
        if request == "imagenet":
            model = _build_imagenet(spec, input_shape)
        elif request == "none":
            model = spec.builder_for(STANDARD_VARIANT)(input_shape, None)
        else:
            model = _build_from_file(spec, request, input_shape)
    model.trainable = False
    return model


@contextmanager
def initialisers_seeded(seed: int) -> Iterator[None]:
    """Make the initial weights of the layers built inside the block a function of `seed` alone.

    Keras gives each initialiser built without a seed (as keras.applications builds them) a seed drawn from
    Python's `random` module (`keras.src.random.seed_generator.make_default_seed`); the weights are then drawn
    from that seed with stateless random ops, on every backend. Seeding `random` for the block and restoring
    its state afterwards makes the build reproducible and leaves the caller's random state (Python's, NumPy's
    and the backend's) as it was. The same seed gives the weights `keras.utils.set_random_seed(seed)` gave.
    """
    state = random.getstate()
    random.seed(int(seed))
    try:
        yield
    finally:
        random.setstate(state)


def weights_provenance(spec: Any, weights: str | os.PathLike, seed: int) -> dict[str, Any]:
    """What to record about a weights request in caches and reports.

    Args:
        spec: The registered backbone.
        weights: The request, as given to build_with_weights.
        seed: The random-init seed.

    Returns:
        JSON-able dict with `weights` (the resolved request), `weights_label` ("random-init (seed N)",
        the record's label for Keras' ImageNet download and for a file known by its sha256, else
        "file NAME"), `weights_sha256` ("" for random init, and for imagenet when Keras' cached file is not
        found), `random_features` (True for random init) and `architecture_variant` (the variant the
        weights were built into, "standard" unless a record names another). Weights with another label,
        sha256 or variant are other features: caches record all of them.
    """
    request = resolve_weights(spec, weights)
    label, sha, variant = f"random-init (seed {seed})", "", STANDARD_VARIANT
    if request == "imagenet":
        record = keras_imagenet_record(spec.name)
        sha = cached_file_sha256(record_path(record)) if record and record_path(record).is_file() else ""
        label = record.label if record else "imagenet"
    elif request != "none":
        path = Path(request).expanduser()
        sha = cached_file_sha256(path)
        record = record_for_sha256(sha)
        label = record.label if record else f"file {path.name}"
        variant = record.variant if record and path.name.endswith(".weights.h5") else STANDARD_VARIANT
    return {"weights": request, "weights_label": label, "weights_sha256": sha, "random_features": request == "none",
            "architecture_variant": variant}


def _weights_choices(spec: Any) -> str:
    names = [f'"{w}"' for w in spec.pretrained] + ['"none" (random features)']
    return ", ".join(names) + ", or a path to a .weights.h5 / .keras file"


def _is_download_failure(exc: BaseException) -> bool:
    """True for what keras.utils.get_file raises when a download fails, and for nothing else.

    get_file wraps urllib's URLError/HTTPError in a bare `Exception("URL fetch failure on URL: ...")` and
    reports a download whose hash does not match as `ValueError("Incomplete or corrupted file detected.
    ...")` (Keras 3.15, keras/src/utils/file_utils.py). Errors while the bytes stream in are not wrapped:
    see _NETWORK_ERRORS. A local I/O fault (a cached file that cannot be read, a full disk) is not a failed
    download: it must not quietly turn into random features.
    """
    text = str(exc)
    return (isinstance(exc, _NETWORK_ERRORS) or (type(exc) is Exception and text.startswith("URL fetch failure on "))
            or (isinstance(exc, ValueError) and text.startswith("Incomplete or corrupted file detected.")))


def _build_imagenet(spec: Any, input_shape: tuple[int, int, int]) -> keras.Model:
    received = f"{given('backbone', spec.name)}, {given('weights', 'imagenet')}"
    if "imagenet" not in spec.pretrained:
        with_imagenet = [n for n in list_backbones(include_test=True)
                         if n != spec.name and "imagenet" in getattr(get_spec(n), "pretrained", ())]
        raise FeaturekitError(
            f"Backbone {spec.name!r} has no ImageNet weights.",
            received=received,
            fix=f"Use `weights` {_weights_choices(spec)}; backbones with ImageNet weights: "
            f"{', '.join(with_imagenet) or 'none'}.",
        )
    record = keras_imagenet_record(spec.name)
    file_name = record.file_name if record else "the weights file"
    try:
        return spec.builder_for(STANDARD_VARIANT)(input_shape, "imagenet")
    except Exception as exc:
        if _is_download_failure(exc):
            raise WeightsUnavailableError(
                f"ImageNet weights for backbone {spec.name!r} could not be downloaded ({exc}).",
                received=received,
                fix=f"Keras looks for {file_name} in {keras_models_dir()} first: copy the genuine file there "
                f"for offline use. {_offline_alternatives(spec)} Or pass {given('weights', 'none')} for a "
                "random-features baseline.",
            ) from exc
        if isinstance(exc, OSError):
            # A local fault, not a failed download: it must stop the job, never turn into random features.
            raise FeaturekitError(
                f"Keras' ImageNet weights for backbone {spec.name!r} could not be read or written: a local file "
                f"error, not a failed download ({type(exc).__name__}: {exc}).",
                received=received,
                fix=f"Check that {keras_models_dir() / file_name} and its folder are readable and writable and "
                "that the disk has space; delete a damaged file there so Keras downloads it again.",
            ) from exc
        raise


def _offline_alternatives(spec: Any) -> str:
    """A sentence naming the local files for this backbone (shipped, or in ../shared/weights) to use instead.

    Paths are shown relative to the working directory, as a user would type them.
    """
    present = offline_files(spec.name)
    if present:
        shipped = "; shipped with featurekit, what 'default' uses"
        described = [f"{display_path(path)} ({record.label}{shipped if record.location == 'shipped' else ''})"
                     for record, path in present]
        return (f"Or pass `weights` with a local file: {', '.join(described)}; every result "
                "carries its label.")
    expected = [r.file_name for r in records_for(spec.name) if r.location == "shared"]
    if expected:
        return (f"Or pass `weights` with a local .weights.h5 file: the known offline files for "
                f"{spec.name!r} ({', '.join(expected)}) belong in {SHARED_WEIGHTS_DIR} beside the checkout, "
                "which does not hold them.")
    return f"Or pass `weights` with a local .weights.h5 file of this architecture."


def _build_from_file(spec: Any, request: str, input_shape: tuple[int, int, int]) -> keras.Model:
    path = Path(request).expanduser()
    is_weights_h5 = path.name.endswith(".weights.h5")
    if not is_weights_h5 and path.suffix != ".keras":
        hint = (
            " A legacy Keras 2 .h5 file: load it into the same architecture and save it again with "
            "model.save_weights('NAME.weights.h5'); the genuine Keras ImageNet .h5 files instead go in "
            f"{keras_models_dir()} and are used with {given('weights', 'imagenet')}."
        ) if path.suffix == ".h5" else ""
        raise FeaturekitError(
            f"Weights {request!r} are neither a known name nor a .weights.h5 / .keras file.",
            received=given("weights", request),
            fix=f"For backbone {spec.name!r} use {_weights_choices(spec)}.{hint}",
        )
    if not path.is_file():
        raise WeightsUnavailableError(
            f"Weights file {str(path)!r} does not exist.",
            received=given("weights", request),
            fix=f"Check the path, or use {_weights_choices(spec)}.",
        )
    record = _record_of_file(spec, path)
    # A .weights.h5 file builds the variant its record names; a .keras file holds its own architecture.
    model = spec.builder_for(record.variant if record and is_weights_h5 else STANDARD_VARIANT)(input_shape, None)
    (_load_weights_h5 if is_weights_h5 else _copy_weights_from_keras_file)(spec, model, path)
    return model


def _record_of_file(spec: Any, path: Path) -> WeightsRecord | None:
    """The record of a weights file, by content; a known file of another backbone is refused here."""
    try:
        record = record_for_sha256(cached_file_sha256(path))
    except OSError as exc:
        raise FeaturekitError(
            f"Weights file {path.name!r} could not be read ({type(exc).__name__}: {exc}).",
            received=given("weights", str(path)),
            fix="Check the file's permissions, or pass another file.",
        ) from exc
    if record is not None and record.backbone != spec.name:
        raise _does_not_fit(spec, path, f"it holds the {record.label} weights of backbone {record.backbone!r}.")
    return record


def _does_not_fit(spec: Any, path: Path, detail: str) -> FeaturekitError:
    return FeaturekitError(
        f"Weights file {path.name!r} does not fit backbone {spec.name!r}: {detail}",
        received=f"{given('backbone', spec.name)}, {given('weights', str(path))}",
        fix=f"Pass the `backbone` the file was saved from, or a file saved from this backbone "
        "(model.save_weights('NAME.weights.h5') or model.save('NAME.keras')).",
    )


def _load_weights_h5(spec: Any, model: keras.Model, path: Path) -> None:
    # Keras matches .weights.h5 entries to layers by position and silently ignores entries left over when
    # the file holds more layers than the model, so a file from a deeper network would half-load without
    # a word. Counting the arrays first turns that into a refusal.
    arrays: list[str] = []
    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(lambda key, item: arrays.append(key) if isinstance(item, h5py.Dataset) else None)
    except OSError as exc:
        raise FeaturekitError(
            f"Weights file {path.name!r} is not a readable HDF5 file ({exc}).",
            received=given("weights", str(path)),
            fix="Re-save it with model.save_weights('NAME.weights.h5').",
        ) from exc
    if len(arrays) != len(model.weights):
        raise _does_not_fit(spec, path, f"the file holds {len(arrays)} weight arrays, the network "
                                        f"{len(model.weights)}.")
    try:
        model.load_weights(path)
    except ValueError as exc:
        raise _does_not_fit(spec, path, next(iter(str(exc).strip().splitlines()), type(exc).__name__)) from exc


def _weighted_leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers holding weights, in model order, looking inside nested models (a backbone inside a classifier)."""
    leaves: list[keras.layers.Layer] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            leaves.extend(_weighted_leaf_layers(layer))
        elif layer.weights:
            leaves.append(layer)
    return leaves


def _lambda_layer_names(path: Path) -> list[str]:
    """Names of the Lambda layers in a .keras archive's config, read as JSON without building anything.

    Returns [] when the archive or its config cannot be read: loading then reports that itself.
    """
    names: list[str] = []

    def collect(item: dict[str, Any]) -> dict[str, Any]:  # json calls it on every object, inner ones first
        if item.get("class_name") == "Lambda":
            inner = item.get("config")
            names.append(str(inner.get("name", "?")) if isinstance(inner, dict) else "?")
        return item

    try:
        with zipfile.ZipFile(path) as archive:
            json.loads(archive.read("config.json"), object_hook=collect)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return []
    return sorted(names)


def _copy_weights_from_keras_file(spec: Any, model: keras.Model, path: Path) -> None:
    # The file's model was built at the size it was trained at; convolutional weights do not depend on
    # the input size, so they are copied into the fresh model built at the requested size.
    lambdas = _lambda_layer_names(path)
    if lambdas:
        # Keras' safe mode refuses these (a Lambda's function is Python code stored in the file, or a name
        # it cannot resolve); its own message suggests safe_mode=False, which featurekit never offers.
        raise FeaturekitError(
            f"File {path.name!r} holds Lambda layers ({', '.join(lambdas)}), and featurekit loads model files "
            "in Keras' safe mode, which refuses them: a Lambda layer is Python code, and code from a model "
            "file is never run.",
            received=given("weights", str(path)),
            fix="Save the model without Lambda layers (built-in layers, or a layer class registered with "
            "keras.saving.register_keras_serializable), or save its weights with "
            "model.save_weights('NAME.weights.h5') and pass that file.",
        )
    try:
        source = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError or zipfile errors here
        raise FeaturekitError(
            f"File {path.name!r} could not be loaded as a Keras model ({type(exc).__name__}: "
            f"{next(iter(str(exc).strip().splitlines()), '')}).",
            received=given("weights", str(path)),
            fix="Pass a .keras file saved with model.save() from a registered architecture (safe mode refuses "
            "Lambda layers), or a .weights.h5 file.",
        ) from exc
    targets = _weighted_leaf_layers(model)
    sources = _weighted_leaf_layers(source)
    by_name = {layer.name: layer for layer in sources}
    if all(layer.name in by_name for layer in targets):
        pairs = [(by_name[layer.name], layer) for layer in targets]
    elif len(sources) >= len(targets):
        # Auto-generated names (conv2d_94 ...) differ between sessions: match by order instead. A classifier
        # around the backbone puts its head after the backbone's layers, so the backbone is the prefix.
        pairs = list(zip(sources[: len(targets)], targets))
    else:
        raise _does_not_fit(
            spec, path, f"layers with weights: {len(sources)} in the file's model, {len(targets)} in the backbone."
        )
    for src, dst in pairs:
        src_shapes, dst_shapes = ([tuple(w.shape) for w in layer.weights] for layer in (src, dst))
        if src_shapes != dst_shapes:
            raise _does_not_fit(
                spec, path, f"layer {src.name!r} in the file has weight shapes {src_shapes}, "
                f"layer {dst.name!r} of the backbone needs {dst_shapes}."
            )
        dst.set_weights(src.get_weights())
