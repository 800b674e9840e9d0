"""The probe registry: named classifiers on cached embeddings, as data.

`list_probes()` and `make_probe(name, **params)` are the ways in; `compare` is then one loop over
`{name: make_probe(name) for name in list_probes()}`. Every probe is a scikit-learn classifier with
`fit`, `predict` and `predict_proba` (column 1 = `classes_[1]`, the fake class for 0/1 labels).
For features larger than memory, `make_stream_probe(name)` returns an estimator with
`fit_stream(batches_factory, valid=...)` and `predict_proba_stream(batches_factory)`; probes that
need the whole matrix (knn, rbfsvm) refuse with a FeaturekitError. `save_probe` and `load_probe`
(featurekit.probes.persistence) store fitted probes in formats that cannot run code when loaded.

Importing this package imports no Keras backend; the head imports Keras when it trains or loads.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from featurekit.errors import FeaturekitError, given
from featurekit.probes.baselines import make_knn, make_linsvm, make_logreg, make_rbfsvm
from featurekit.probes.chunks import in_memory_only_error
from featurekit.probes.epochs import EpochProbe
from featurekit.probes.head import DenseHeadClassifier
from featurekit.probes.persistence import UnloadableProbeError, load_probe, save_probe, saved_probe_problem
from featurekit.probes.sgd import SGDLinearProbe

__all__ = [
    "ProbeSpec",
    "list_probes",
    "get_probe_spec",
    "make_probe",
    "make_stream_probe",
    "fake_scores",
    "save_probe",
    "load_probe",
    "saved_probe_problem",
    "UnloadableProbeError",
    "EpochProbe",
    "DenseHeadClassifier",
    "SGDLinearProbe",
]


@dataclass(frozen=True)
class ProbeSpec:
    """Everything featurekit knows about one probe.

    Attributes:
        name: Registry name (`--probes NAME,...`).
        factory: `factory(**params)` -> an unfitted estimator for in-memory arrays.
        description: One line for listings.
        optional: True for probes left out of the default list (slow on large splits).
        stream_factory: `stream_factory(**params)` -> an estimator with `fit_stream`, or None if
            the probe needs the whole training matrix in memory.
    """

    name: str
    factory: Callable[..., Any]
    description: str
    optional: bool = False
    stream_factory: Callable[..., Any] | None = None


def _sgd(loss: str) -> Callable[..., SGDLinearProbe]:
    def factory(**params: Any) -> SGDLinearProbe:
        return SGDLinearProbe(loss=loss, **params)

    factory.__signature__ = inspect.signature(SGDLinearProbe).replace(  # type: ignore[attr-defined]
        parameters=[p for n, p in inspect.signature(SGDLinearProbe).parameters.items() if n != "loss"]
    )
    return factory


_REGISTRY: dict[str, ProbeSpec] = {
    spec.name: spec
    for spec in (
        ProbeSpec(
            "head",
            DenseHeadClassifier,
            "Keras Dense(512, relu) -> Dropout(0.5) -> Dense(1, sigmoid), the original study's head",
            stream_factory=DenseHeadClassifier,
        ),
        ProbeSpec(
            "logreg",
            make_logreg,
            "StandardScaler + logistic regression",
            stream_factory=_sgd("log_loss"),
        ),
        ProbeSpec(
            "linsvm",
            make_linsvm,
            "StandardScaler + linear SVM, sigmoid-calibrated on out-of-fold training margins",
            stream_factory=_sgd("hinge"),
        ),
        ProbeSpec("knn", make_knn, "cosine k-nearest neighbours (k=15, distance-weighted)"),
        ProbeSpec(
            "rbfsvm",
            make_rbfsvm,
            "StandardScaler + RBF-kernel SVM, calibrated; fit time grows at least quadratically",
            optional=True,
        ),
    )
}


def list_probes(include_optional: bool = False) -> list[str]:
    """Registered probe names in registry order; opt-in probes (rbfsvm) only when asked."""
    return [n for n, s in _REGISTRY.items() if include_optional or not s.optional]


def get_probe_spec(name: str) -> ProbeSpec:
    """The spec of a probe; unknown names list the valid ones."""
    if name not in _REGISTRY:
        raise FeaturekitError(
            f"Unknown probe '{name}'.",
            received=name,
            fix=f"Choose from: {', '.join(list_probes(include_optional=True))}.",
        )
    return _REGISTRY[name]


def _call_factory(name: str, factory: Callable[..., Any], params: dict) -> Any:
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise FeaturekitError(
            f"Probe '{name}' has no parameter {', '.join(map(repr, unknown))}.",
            received=", ".join(given(k, params[k]) for k in unknown),
            fix=f"Valid parameters of '{name}': {', '.join(accepted)}.",
        )
    estimator = factory(**params)
    _validate_parameters(name, estimator, params)
    return estimator


def _validate_parameters(name: str, estimator: Any, params: dict) -> None:
    """Check every parameter against scikit-learn's constraints now, not minutes later inside `fit`.

    Covers the estimator and the estimators nested in it (a pipeline's steps); a bad value becomes a
    FeaturekitError instead of scikit-learn's InvalidParameterError traceback.
    """
    from sklearn.utils._param_validation import InvalidParameterError

    nested = [v for v in estimator.get_params(deep=True).values() if hasattr(v, "_validate_params")]
    try:
        for part in [estimator, *nested]:
            part._validate_params()
    except InvalidParameterError as error:
        raise FeaturekitError(
            f"Probe '{name}' got an invalid parameter value: {error}",
            received=", ".join(given(k, v) for k, v in params.items()) or "its defaults",
            fix="Pass a value within the range the message names.",
        ) from None


def make_probe(name: str, **params: Any) -> Any:
    """A new, unfitted probe for in-memory arrays.

    Args:
        name: A registry name, see `list_probes(include_optional=True)`.
        **params: Constructor parameters of that probe, e.g. `make_probe("logreg", C=0.1)`.

    Returns:
        A scikit-learn classifier.
    """
    spec = get_probe_spec(name)
    return _call_factory(name, spec.factory, params)


def make_stream_probe(name: str, **params: Any) -> Any:
    """A new, unfitted probe that trains from chunks (`fit_stream`) for larger-than-memory features.

    head is the same estimator as in memory; logreg and linsvm become `SGDLinearProbe` with loss
    "log_loss" and "hinge" (their parameters differ from the in-memory pipelines: alpha, epochs...).

    Raises:
        FeaturekitError: For probes that need the whole matrix in memory (knn, rbfsvm).
    """
    spec = get_probe_spec(name)
    if spec.stream_factory is None:
        raise in_memory_only_error(name)
    return _call_factory(name, spec.stream_factory, params)


def fake_scores(estimator: Any, X: np.ndarray) -> np.ndarray:
    """P(fake) for every row: the score that metrics rank, one definition for every probe.

    Requires the probe to be fitted on labels 0 (real) / 1 (fake), so column 1 is fake.
    """
    classes = np.asarray(estimator.classes_)
    if classes.tolist() != [0, 1]:
        raise FeaturekitError(
            "Scores are defined for probes trained on labels 0 (real) and 1 (fake).",
            received=f"classes_ {classes.tolist()}",
            fix="Train on the cache's integer labels, not on class names.",
        )
    return estimator.predict_proba(X)[:, 1]
