"""Fitted probes on disk in formats that cannot run code when they are loaded.

scikit-learn probes (the logreg/linsvm/knn/rbfsvm pipelines and SGDLinearProbe) are written with
`skops.io` and read back only if every type in the file is on `TRUSTED_TYPES`, an explicit list of
what our probes contain; anything else is refused before a single object is built. The Keras head is
a `.keras` file (its config checked against the layers the head has; only its weights are read, into
a head built here, so Keras deserialises nothing) plus `estimator.json`. Pickle-based files (joblib, the
format before this one) are never opened: a folder holding one is refused with the command that refits it.

Every refusal is an `UnloadableProbeError` (a FeaturekitError): what was wrong, the file, and a fix.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from featurekit.errors import FeaturekitError
from featurekit.fsutil import atomic_write_bytes, atomic_write_json, commit_file, temporary_sibling
from featurekit.probes.head import DenseHeadClassifier, build_inference_model

FORMAT_VERSION = 2
SKLEARN_META = "probe.json"
SKLEARN_FILE = "estimator.skops"
HEAD_META = "estimator.json"
HEAD_MODEL = "model.keras"
# Files of the pickle-based format before FORMAT_VERSION 2: never loaded, only recognised.
PICKLE_FILES = ("estimator.joblib", "estimator.pkl", "estimator.pickle")
GENERIC_REFIT = ("Refit the probe on its cache (the `fit` command with its `cache` and `probe`, or `compare` with "
                 "`refit`).")

# Every type a saved probe may hold beyond skops' own defaults (Python primitives and containers,
# NumPy arrays and dtypes, scikit-learn's public estimators). Found with `skops.io.get_untrusted_types`
# on each fitted probe; tests/test_persistence.py checks that nothing else appears.
TRUSTED_TYPES = (
    "featurekit.probes.sgd.SGDLinearProbe",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
)
# Layers and objects a head's model.keras may name (checked in its config.json before Keras reads it).
HEAD_CLASS_NAMES = frozenset({
    "Sequential", "InputLayer", "Dense", "Dropout", "Activation", "Zeros", "GlorotUniform", "DTypePolicy",
    "FloatDTypePolicy",
})


class UnloadableProbeError(FeaturekitError):
    """A saved probe that featurekit will not load (old pickle format, untrusted types, damaged files)."""


def save_probe(estimator: Any, path_dir: str | Path) -> Path:
    """Write a fitted probe into a folder: the head as `model.keras` + JSON, scikit-learn probes with skops.

    Files are written under temporary names and renamed into place.

    Returns:
        The folder written.
    """
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(estimator)
    path = Path(path_dir)
    path.mkdir(parents=True, exist_ok=True)
    (_save_head if isinstance(estimator, DenseHeadClassifier) else _save_sklearn)(estimator, path)
    return path


def load_probe(path_dir: str | Path) -> Any:
    """Read a probe written by `save_probe`, refusing anything that could run code or is not ours.

    Raises:
        UnloadableProbeError: For a folder in the old pickle format, an unknown or damaged file, or
            a file that holds types other than `TRUSTED_TYPES`.
    """
    path = Path(path_dir)
    problem, meta = _inspected(path)
    if problem:
        fix = "Pass the folder that `save_probe` (or fitting) wrote." if "No saved probe" in problem else GENERIC_REFIT
        raise UnloadableProbeError(problem, received=str(path), fix=fix)
    *_, load = FORMATS[meta["kind"]]
    return load(path, meta)


def _inspected(path: Path) -> tuple[str, dict[str, Any]]:
    """(Why the folder holds no probe this version can load, "" when it does; the content of its JSON file or {}
    where it has none that reads), from its file names and JSON only: nothing is deserialised."""
    if any(os.path.lexists(path / name) for name in PICKLE_FILES):
        return ("The saved probe is in the old pickle (joblib) format, which can run arbitrary code when loaded; "
                "featurekit no longer opens it."), {}
    files = next((files for files in FORMATS.values() if (path / files[0]).is_file()), None)  # the head's first
    if files is None:
        return "No saved probe found in this folder.", {}
    meta_name, model_name, _ = files
    try:
        meta = json.loads((path / meta_name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return f"The saved probe's {meta_name} cannot be read ({type(error).__name__}: {error})", {}
    if not isinstance(meta, dict):
        return f"The saved probe's {meta_name} is not a JSON object", {}
    kind = meta.get("kind")
    if kind not in FORMATS:
        return f"The saved probe's {meta_name} names an unknown kind of probe ({kind!r}).", meta
    if kind == "sklearn" and meta.get("format") != "skops":
        return "The saved probe is in the old pickle (joblib) format; featurekit no longer opens it.", meta
    if not (path / model_name).is_file():
        return f"The saved probe has no regular file {model_name}.", meta
    return "", meta


def _refuse(problem: str, file: Path, error: BaseException | None = None) -> UnloadableProbeError:
    first_line = str(error).partition("\n")[0]  # of the error behind it: Keras' run on with whole arrays
    detail = f" ({type(error).__name__}: {first_line})" if error is not None else ""
    return UnloadableProbeError(problem + detail, received=str(file), fix=GENERIC_REFIT)


# -- scikit-learn probes: skops with an explicit list of trusted types ------------------------------


def _save_sklearn(estimator: Any, path: Path) -> None:
    import sklearn
    import skops
    import skops.io

    atomic_write_bytes(path / SKLEARN_FILE, skops.io.dumps(estimator))
    atomic_write_json(path / SKLEARN_META, {
        "kind": "sklearn", "format": "skops", "format_version": FORMAT_VERSION, "class": type(estimator).__name__,
        "versions": {"sklearn": sklearn.__version__, "skops": skops.__version__},
    })


def _load_sklearn(path: Path, meta: dict[str, Any]) -> Any:
    import skops.io
    from sklearn.base import BaseEstimator

    file = path / SKLEARN_FILE
    try:  # nothing is built unless every type in the file is trusted
        data = file.read_bytes()
        untrusted = [t for t in skops.io.get_untrusted_types(data=data) if t not in TRUSTED_TYPES]
        estimator = None if untrusted else skops.io.loads(data, trusted=list(TRUSTED_TYPES))
    except Exception as error:  # a damaged zip or schema surfaces as any of several exception types
        raise _refuse("The saved probe's estimator.skops is damaged or not a skops file", file, error) from None
    if untrusted:
        raise _refuse(f"The saved probe holds types featurekit does not trust: {', '.join(untrusted[:5])}", file)
    if not isinstance(estimator, BaseEstimator) or not hasattr(estimator, "predict_proba"):
        raise _refuse(f"The saved probe is not a classifier (it is a {type(estimator).__name__})", file)
    return estimator


# -- the Keras head: model.keras (weights only) + estimator.json -------------------------------------


def _save_head(head: DenseHeadClassifier, path: Path) -> None:
    import keras

    save_keras(head.model_, path / HEAD_MODEL)
    params = head.get_params()
    if not isinstance(params["random_state"], (int, type(None))):  # a RandomState object is not data
        params["random_state"] = None
    names = getattr(head, "feature_names_in_", None)
    atomic_write_json(path / HEAD_META, {
        "kind": "keras_head", "format_version": FORMAT_VERSION, "class": type(head).__name__,
        "keras_version": keras.__version__, "params": params,
        "classes_": head.classes_.tolist(),
        "classes_dtype": head.classes_.dtype.str if head.classes_.dtype != object else "object",
        "n_features_in_": int(head.n_features_in_),
        "feature_names_in_": None if names is None else [str(n) for n in names],
        "history_": head.history_, "best_epoch_": int(head.best_epoch_), "batch_size_": int(head.batch_size_),
    })


def save_keras(model: Any, path: Path) -> Path:
    """`model.save` atomically: into a fresh temporary sibling (Keras insists on the .keras suffix), then
    fsynced and renamed into place, so a file at `path` is always complete."""
    from featurekit.backend import tensorflow_kept_out

    temporary = Path(f"{temporary_sibling(path)}.keras")
    try:
        with tensorflow_kept_out():  # Keras' serialisation would import TensorFlow under JAX or PyTorch
            model.save(temporary)
        return commit_file(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # gone once committed; what a failed save left otherwise


def _load_head(path: Path, meta: dict[str, Any]) -> DenseHeadClassifier:
    meta_file, model_file = path / HEAD_META, path / HEAD_MODEL
    try:
        head = DenseHeadClassifier(**meta["params"])
        head._validate_params()
        head.classes_ = np.asarray(meta["classes_"], dtype=np.dtype(meta["classes_dtype"]))
        for name in ("n_features_in_", "best_epoch_", "batch_size_"):
            setattr(head, name, int(meta[name]))
        if meta["feature_names_in_"] is not None:
            head.feature_names_in_ = np.asarray([str(n) for n in meta["feature_names_in_"]], dtype=object)
        head.history_ = {str(k): [float(v) for v in values] for k, values in dict(meta["history_"]).items()}
        if head.classes_.shape != (2,):
            raise ValueError(f"classes_ must hold two labels, not {meta['classes_']!r}")
    except Exception as error:  # missing keys, wrong types, bad values: all one refusal
        raise _refuse("The saved head's estimator.json is incomplete or damaged", meta_file, error) from None
    _check_head_config(model_file)
    try:  # the weights only (Keras reads no config), into a model we build: what predicts is always the head
        head.model_ = build_inference_model(head.n_features_in_, int(head.units), float(head.dropout))
        head.model_.load_weights(model_file)
    except Exception as error:
        raise _refuse("The saved head's model.keras could not be loaded or does not match its estimator.json",
                      model_file, error) from None
    return head


def _check_head_config(model_file: Path) -> None:
    """Refuse a model.keras whose config names anything a head does not have, before Keras reads it."""
    named: dict[str, set[str]] = {"class_name": set(), "module": set()}  # every such string, at any depth

    def note(node: dict) -> dict:
        for key, values in named.items():
            if isinstance(node.get(key), str):
                values.add(node[key])
        return node

    try:
        with zipfile.ZipFile(model_file) as archive:
            json.loads(archive.read("config.json"), object_hook=note)
    except Exception as error:
        raise _refuse("The saved head's model.keras is damaged or not a Keras file", model_file, error) from None
    unexpected = sorted(named["class_name"] - HEAD_CLASS_NAMES)
    modules = sorted(m for m in named["module"] if not (m == "keras" or m.startswith("keras.")))
    if unexpected or modules:
        raise _refuse(f"The saved head's model.keras names objects a head does not have: "
                      f"{', '.join(unexpected + modules)[:200]}", model_file)


# By the `kind` their JSON file records: how a fitted probe lies in its folder (its JSON file, its model file) and
# how to read it.
FORMATS = {
    "keras_head": (HEAD_META, HEAD_MODEL, _load_head),
    "sklearn": (SKLEARN_META, SKLEARN_FILE, _load_sklearn),
}
