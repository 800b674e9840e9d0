"""Weights requests -> a built, frozen backbone; and what to record about those weights.

A request is "default", "imagenet", "none" (seeded random init) or a path to a `.weights.h5` or `.keras`
file. Every way it can fail becomes a FeaturekitError that says what was wrong, what was received and
how to fix it: above all the offline `imagenet` download, which Keras reports as a bare `Exception`.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path
from typing import Any

import h5py
import keras

from featurekit.backbones import KNOWN_WEIGHT_FILES, BackboneSpec, get_spec, list_backbones
from featurekit.backend import set_random_seed
from featurekit.errors import FeaturekitError, WeightsUnavailableError
from featurekit.hashing import file_sha256

WEIGHTS_KEYWORDS = ("default", "imagenet", "none")
# Where ../shared/weights/README.md puts the near-ImageNet substitutes, relative to the repository root.
SHARED_WEIGHTS_DIR = "../shared/weights"


def resolve_weights(spec: BackboneSpec, weights: str | os.PathLike) -> str:
    """The concrete request behind `weights`: "default" becomes the spec's own default, paths become str."""
    request = str(weights)
    return spec.default_weights if request == "default" else request


def build_with_weights(spec: BackboneSpec, weights: str | os.PathLike, image_size: int, seed: int) -> keras.Model:
    """Build `spec`'s network at `image_size` with the requested weights, frozen.

    Args:
        spec: The registered backbone.
        weights: "default" (spec.default_weights), "imagenet", "none" (random init seeded with `seed`: a
            random-features baseline), or a path to a `.weights.h5` file (same architecture) or a `.keras`
            file (a saved model containing this backbone, possibly trained at another input size).
        image_size: Square input size in pixels, at least spec.min_input_size.
        seed: Seed for `keras.utils.set_random_seed` before building (sets Python, NumPy and TF seeds).

    Returns:
        The model, with `trainable = False`.

    Raises:
        WeightsUnavailableError: ImageNet weights could not be downloaded, or the file does not exist.
        FeaturekitError: Any other unusable request (no ImageNet weights for this backbone, unknown
            suffix, a file that does not fit the backbone, an input size below the minimum).
    """
    if image_size < spec.min_input_size:
        raise FeaturekitError(
            f"Backbone {spec.name!r} needs inputs of at least {spec.min_input_size}x{spec.min_input_size} pixels.",
            received=f"--image-size {image_size}",
            fix=f"Use --image-size {spec.min_input_size} or more (native: {spec.input_size}).",
        )
    request = resolve_weights(spec, weights)
    input_shape = (image_size, image_size, 3)
    # Seed every build: random init is then reproducible, and a file load starts from a known state.
    set_random_seed(seed)  # featurekit's: Keras' own imports TensorFlow under every backend
    if request == "imagenet":
        model = _build_imagenet(spec, input_shape, seed)
    elif request == "none":
        model = spec.builder(input_shape, None, seed)
    else:
        model = _build_from_file(spec, request, input_shape, seed)
    model.trainable = False
    return model


def weights_provenance(spec: BackboneSpec, weights: str | os.PathLike, seed: int) -> dict[str, Any]:
    """What to record about a weights request in caches and reports.

    Args:
        spec: The registered backbone.
        weights: The request, as given to build_with_weights.
        seed: The random-init seed.

    Returns:
        JSON-able dict with `weights` (the resolved request), `weights_label` ("imagenet",
        "random-init (seed N)", the KNOWN_WEIGHT_FILES label of a known file, else "file NAME"),
        `weights_sha256` ("" for random init, and for imagenet when Keras' cached file is not found)
        and `random_features` (True for random init).
    """
    request = resolve_weights(spec, weights)
    if request == "none":
        return {"weights": request, "weights_label": f"random-init (seed {seed})", "weights_sha256": "",
                "random_features": True}
    if request == "imagenet":
        cached = _keras_models_dir() / spec.notes.get("imagenet_file", "")
        sha = file_sha256(cached) if cached.is_file() else ""
        return {"weights": request, "weights_label": "imagenet", "weights_sha256": sha, "random_features": False}
    path = Path(request).expanduser()
    sha = file_sha256(path)
    label = KNOWN_WEIGHT_FILES.get(sha, f"file {path.name}")
    return {"weights": request, "weights_label": label, "weights_sha256": sha, "random_features": False}


def _keras_models_dir() -> Path:
    """Where keras.utils.get_file caches application weights ($KERAS_HOME or ~/.keras, then models/)."""
    try:
        from keras.src.backend.config import keras_home  # private, but it is what get_file uses

        home = keras_home()
    except ImportError:
        home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    return Path(home) / "models"


def _weights_choices(spec: BackboneSpec) -> str:
    names = [f'"{w}"' for w in spec.pretrained] + ['"none" (random features)']
    return ", ".join(names) + ", or a path to a .weights.h5 / .keras file"


def _is_download_failure(exc: BaseException) -> bool:
    # keras.utils.get_file re-raises URL errors as a bare Exception("URL fetch failure on ...") and a bad
    # hash as ValueError("Incomplete or corrupted file detected ..."); socket errors are OSErrors.
    text = str(exc)
    return (
        isinstance(exc, (urllib.error.URLError, OSError))
        or "URL fetch failure" in text
        or "corrupted file" in text
    )


def _build_imagenet(spec: BackboneSpec, input_shape: tuple[int, int, int], seed: int) -> keras.Model:
    if "imagenet" not in spec.pretrained:
        with_imagenet = [n for n in list_backbones(include_test=True) if n != spec.name and _has_imagenet(n)]
        raise FeaturekitError(
            f"Backbone {spec.name!r} has no ImageNet weights.",
            received=f"--backbone {spec.name} --weights imagenet",
            fix=f"Use --weights {_weights_choices(spec)}; backbones with ImageNet weights: "
            f"{', '.join(with_imagenet) or 'none'}.",
        )
    try:
        return spec.builder(input_shape, "imagenet", seed)
    except Exception as exc:
        if not _is_download_failure(exc):
            raise
        file_name = spec.notes.get("imagenet_file", "the weights file")
        near = spec.notes.get("near_imagenet_file")
        example = f"{SHARED_WEIGHTS_DIR}/{near}" if near else f"a file in {SHARED_WEIGHTS_DIR}"
        raise WeightsUnavailableError(
            f"ImageNet weights for backbone {spec.name!r} could not be downloaded ({exc}).",
            received=f"--backbone {spec.name} --weights imagenet",
            fix=f"Keras looks for {file_name} in {_keras_models_dir()} first: copy the genuine file there "
            f"for offline use. Or pass --weights PATH with a local .weights.h5 file, e.g. {example} "
            "(near-ImageNet weights, labelled as such in every result), or --weights none for a "
            "random-features baseline.",
        ) from exc


def _has_imagenet(name: str) -> bool:
    return "imagenet" in get_spec(name).pretrained


def _build_from_file(spec: BackboneSpec, request: str, input_shape: tuple[int, int, int], seed: int) -> keras.Model:
    path = Path(request).expanduser()
    is_weights_h5 = path.name.endswith(".weights.h5")
    if not is_weights_h5 and path.suffix != ".keras":
        hint = ""
        if path.suffix == ".h5":
            hint = (
                " A legacy Keras 2 .h5 file: load it into the same architecture and save it again with "
                "model.save_weights('NAME.weights.h5'); the genuine Keras ImageNet .h5 files instead go in "
                f"{_keras_models_dir()} and are used with --weights imagenet."
            )
        raise FeaturekitError(
            f"Weights {request!r} are neither a known name nor a .weights.h5 / .keras file.",
            received=f"--weights {request}",
            fix=f"For backbone {spec.name!r} use {_weights_choices(spec)}.{hint}",
        )
    if not path.is_file():
        raise WeightsUnavailableError(
            f"Weights file {str(path)!r} does not exist.",
            received=f"--weights {request}",
            fix=f"Check the path, or use {_weights_choices(spec)}.",
        )
    model = spec.builder(input_shape, None, seed)
    if is_weights_h5:
        _load_weights_h5(spec, model, path)
    else:
        _copy_weights_from_keras_file(spec, model, path)
    return model


def _h5_array_count(path: Path) -> int:
    arrays: list[str] = []
    with h5py.File(path, "r") as handle:
        handle.visititems(lambda key, item: arrays.append(key) if isinstance(item, h5py.Dataset) else None)
    return len(arrays)


def _does_not_fit(spec: BackboneSpec, path: Path, detail: str) -> FeaturekitError:
    return FeaturekitError(
        f"Weights file {path.name!r} does not fit backbone {spec.name!r}: {detail}",
        received=f"--backbone {spec.name} --weights {path}",
        fix="Pass the --backbone the file was saved from, or a file saved from this backbone "
        "(model.save_weights('NAME.weights.h5') or model.save('NAME.keras')).",
    )


def _load_weights_h5(spec: BackboneSpec, model: keras.Model, path: Path) -> None:
    # Keras matches .weights.h5 entries to layers by position and silently ignores entries left over when
    # the file holds more layers than the model, so a file from a deeper network would half-load without
    # a word. Counting the arrays first turns that into a refusal.
    try:
        n_arrays = _h5_array_count(path)
    except OSError as exc:
        raise FeaturekitError(
            f"Weights file {path.name!r} is not a readable HDF5 file ({exc}).",
            received=f"--weights {path}",
            fix="Re-save it with model.save_weights('NAME.weights.h5').",
        ) from exc
    if n_arrays != len(model.weights):
        raise _does_not_fit(spec, path, f"the file holds {n_arrays} weight arrays, the network {len(model.weights)}.")
    try:
        model.load_weights(path)
    except ValueError as exc:
        first_line = str(exc).strip().splitlines()[0]
        raise _does_not_fit(spec, path, first_line) from exc


def _weighted_leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Layers holding weights, in model order, looking inside nested models (a backbone inside a classifier)."""
    leaves: list[keras.layers.Layer] = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            leaves.extend(_weighted_leaf_layers(layer))
        elif layer.weights:
            leaves.append(layer)
    return leaves


def _copy_weights_from_keras_file(spec: BackboneSpec, model: keras.Model, path: Path) -> None:
    # The file's model was built at the size it was trained at; convolutional weights do not depend on
    # the input size, so they are copied into the fresh model built at the requested size.
    try:
        source = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # Keras raises ValueError, TypeError, OSError or zipfile errors here
        raise FeaturekitError(
            f"File {path.name!r} could not be loaded as a Keras model ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}).",
            received=f"--weights {path}",
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
        src_weights, dst_weights = src.get_weights(), dst.get_weights()
        src_shapes = [w.shape for w in src_weights]
        dst_shapes = [w.shape for w in dst_weights]
        if src_shapes != dst_shapes:
            raise _does_not_fit(
                spec, path, f"layer {src.name!r} in the file has weight shapes {src_shapes}, "
                f"layer {dst.name!r} of the backbone needs {dst_shapes}."
            )
        dst.set_weights(src_weights)
