"""Probes: the registry, scikit-learn conformance, learning, streaming, collapse and saving."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from featurekit import metrics
from featurekit.errors import FeaturekitError
from featurekit.probes import (
    DenseHeadClassifier,
    SGDLinearProbe,
    fake_scores,
    list_probes,
    load_probe,
    make_probe,
    make_stream_probe,
    save_probe,
)

N_FEATURES = 24
# Small but real: the head learns the blobs below in a few hundred steps.
FAST_HEAD = dict(units=32, epochs=8, batch_size=32, learning_rate=1e-2)


def blobs(n: int, seed: int, shift: float = 1.0, n_features: int = N_FEATURES) -> tuple[np.ndarray, np.ndarray]:
    """Two Gaussian classes 0/1 with means -shift/2 and +shift/2 in every dimension.

    With shift 1 in 24 dimensions the means are 4.9 standard deviations apart (Bayes accuracy
    99.3 %); centring them on the origin keeps the classes apart in angle too, for the cosine kNN.
    """
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(int)
    X = rng.normal(0.0, 1.0, (n, n_features)) + shift * (y[:, None] - 0.5)
    return X.astype(np.float32), y


def chunk_factory(n_chunks: int, rows: int, seed: int, log: list | None = None, n_features: int = N_FEATURES):
    """A batches factory that generates each chunk on the fly: the full matrix never exists."""

    def factory(epoch: int):
        if log is not None:
            log.append(epoch)
        for i in range(n_chunks):
            yield blobs(rows, seed=seed * 100_000 + i, n_features=n_features)

    return factory


@pytest.fixture(scope="module")
def data():
    return {"train": blobs(400, seed=1), "valid": blobs(200, seed=2), "test": blobs(400, seed=3)}


@pytest.fixture(scope="module")
def fitted(data):
    """Every registered probe fitted once on the train split (the head early-stops on valid)."""
    probes = {}
    for name in list_probes(include_optional=True):
        if name == "head":
            probes[name] = make_probe(name, **FAST_HEAD).fit(*data["train"], X_val=data["valid"][0], y_val=data["valid"][1])
        else:
            probes[name] = make_probe(name).fit(*data["train"])
    probes["stream-linsvm"] = make_stream_probe("linsvm", epochs=2).fit(*data["train"])
    return probes


# -- registry -----------------------------------------------------------------------------------


def test_registry_lists_default_probes_and_hides_opt_in():
    assert list_probes() == ["head", "logreg", "linsvm", "knn"]
    assert list_probes(include_optional=True)[-1] == "rbfsvm"


def test_registry_refuses_unknown_names_and_parameters():
    with pytest.raises(FeaturekitError, match="Choose from: head, logreg"):
        make_probe("svm")
    with pytest.raises(FeaturekitError, match="no parameter 'gamma'.*Valid parameters of 'logreg': C"):
        make_probe("logreg", gamma=1)
    assert make_probe("logreg", C=0.1).named_steps["clf"].C == 0.1


@pytest.mark.parametrize("name", ["knn", "rbfsvm"])
def test_in_memory_probes_refuse_streaming(name):
    with pytest.raises(FeaturekitError, match=f"'{name}' needs the whole training matrix in memory"):
        make_stream_probe(name)


# -- scikit-learn conformance -----------------------------------------------------------------


@parametrize_with_checks([SGDLinearProbe(loss="log_loss"), SGDLinearProbe(loss="hinge")])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.mark.slow  # about 50 checks, each compiling and fitting a Keras model
@parametrize_with_checks([DenseHeadClassifier(units=16, epochs=5, batch_size=32, learning_rate=1e-2)])
def test_sklearn_estimator_checks_of_the_head(estimator, check):
    check(estimator)


# -- learning -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list_probes(include_optional=True) + ["stream-linsvm"])
def test_each_probe_learns_a_separable_problem(name, data, fitted):
    probe = fitted[name]
    X_test, y_test = data["test"]
    proba = probe.predict_proba(X_test)
    assert proba.shape == (len(X_test), 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.all((proba >= 0) & (proba <= 1))
    assert (probe.predict(X_test) == y_test).mean() > 0.9
    assert metrics.roc_auc(y_test, fake_scores(probe, X_test)) > 0.95


def test_head_scores_match_the_keras_model(data, fitted):
    head = fitted["head"]
    X_test = data["test"][0]
    keras_p = head.model_.predict(X_test, verbose=0)[:, 0]
    np.testing.assert_allclose(head.predict_proba(X_test)[:, 1], keras_p, atol=1e-5)
    assert head.history_["loss"][-1] < head.history_["loss"][0]


def test_head_early_stopping_restores_the_best_epoch():
    # 60 training rows and a wide head without dropout: valid loss falls, then rises as it overfits.
    X, y = blobs(60, seed=5, shift=0.6)
    X_valid, y_valid = blobs(200, seed=6, shift=0.6)
    head = DenseHeadClassifier(units=256, dropout=0.0, learning_rate=3e-3, epochs=60, batch_size=16, patience=3)
    head.fit(X, y, X_val=X_valid, y_val=y_valid)
    val_loss = head.history_["val_loss"]
    assert len(val_loss) < 60  # it stopped early
    assert head.best_epoch_ == int(np.argmin(val_loss)) < len(val_loss) - 1
    z = head.decision_function(X_valid)
    restored = float(np.mean(np.logaddexp(0, z) - y_valid * z))
    assert restored == pytest.approx(min(val_loss), rel=1e-6)  # best weights, not the last ones


def test_collapse_is_visible_for_a_constant_scorer(data):
    X, y = data["train"]
    imbalanced = np.r_[np.zeros(300, int), np.ones(30, int)]
    dummy = DummyClassifier(strategy="prior").fit(X[:330], imbalanced)
    X_test, y_test = data["test"]
    out = metrics.evaluate(y_test, fake_scores(dummy, X_test), threshold=0.5, n_boot=0)
    assert "one class" in out["collapsed"] and "constant" in out["collapsed"]


def test_fake_scores_need_0_1_labels(data):
    X, y = data["train"]
    probe = make_probe("logreg").fit(X, np.where(y == 1, "fake", "real"))
    with pytest.raises(FeaturekitError, match="labels 0 \\(real\\) and 1 \\(fake\\)"):
        fake_scores(probe, X)


# -- streaming ----------------------------------------------------------------------------------

STREAM_CHUNKS, STREAM_ROWS = 24, 100  # 2400 rows in 24 chunks; a batch holds 100 rows at most


@pytest.mark.parametrize(
    "name, params",
    [
        ("head", dict(FAST_HEAD, epochs=3)),
        ("logreg", dict(epochs=3)),
        ("linsvm", dict(epochs=3)),
    ],
)
def test_streaming_matches_in_memory(name, params, data):
    calls: list[int] = []
    factory = chunk_factory(STREAM_CHUNKS, STREAM_ROWS, seed=7, log=calls)
    # The head takes its valid split as a factory too (the cache's valid split may be large).
    valid = (lambda: iter([data["valid"]])) if name == "head" else data["valid"]
    streamed = make_stream_probe(name, **params).fit_stream(factory, valid=valid)
    assert len(streamed.history_["val_auc"]) == params["epochs"]
    # Called anew for every epoch (plus a peek or a statistics pass), never consumed once.
    assert sorted(set(calls)) == list(range(params["epochs"])) and len(calls) > params["epochs"]

    X_all = np.concatenate([X for X, _ in factory(0)])
    y_all = np.concatenate([y for _, y in factory(0)])
    in_memory = make_stream_probe(name, **params).fit(X_all, y_all)

    X_test, y_test = data["test"]
    acc_stream = (streamed.predict(X_test) == y_test).mean()
    acc_memory = (in_memory.predict(X_test) == y_test).mean()
    assert acc_stream > 0.9 and abs(acc_stream - acc_memory) < 0.05
    agreement = (streamed.predict(X_test) == in_memory.predict(X_test)).mean()
    assert agreement > 0.9

    test_chunks = lambda: ((X_test[i : i + 64], y_test[i : i + 64]) for i in range(0, len(X_test), 64))  # noqa: E731
    np.testing.assert_allclose(streamed.predict_proba_stream(test_chunks), streamed.predict_proba(X_test))


# The head (slow): Keras fits over 36 chunks.
@pytest.mark.parametrize("name", [pytest.param("head", marks=pytest.mark.slow), "linsvm"])
def test_streaming_memory_does_not_grow_with_the_data(name):
    # Chunks of 400 x 128 float32 = 200 kB; 4 chunks = 0.8 MB of features, 32 chunks = 6.5 MB.
    params = dict(FAST_HEAD, epochs=1, batch_size=200) if name == "head" else dict(epochs=1, calibration_rows=1000)
    probe = make_stream_probe(name, **params)
    peaks = {}
    for n_chunks in (4, 32):
        gc.collect()
        tracemalloc.start()
        try:
            probe.fit_stream(chunk_factory(n_chunks, 400, seed=9, n_features=128))
            peaks[n_chunks] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peaks[32] < 4_000_000  # a few chunks' worth of copies, not the 6.5 MB matrix
    assert peaks[32] - peaks[4] < 500_000  # 8x the data, (almost) the same peak
    X_test, y_test = blobs(200, seed=4, n_features=128)
    assert (probe.predict(X_test) == y_test).mean() > 0.9


def test_streaming_refuses_a_one_shot_generator():
    one_shot = chunk_factory(3, 50, seed=1)(0)
    with pytest.raises(FeaturekitError, match="NEW iterator"):
        make_stream_probe("logreg", epochs=2).fit_stream(lambda: one_shot)
    with pytest.raises(FeaturekitError, match="function that returns a new iterator"):
        make_stream_probe("logreg").fit_stream(one_shot)


# -- saving -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["head", "logreg", "linsvm", "knn", "stream-linsvm"])
def test_save_load_round_trips_to_identical_predictions(name, data, fitted, tmp_path):
    probe = fitted[name]
    save_probe(probe, tmp_path / name)
    loaded = load_probe(tmp_path / name)
    assert type(loaded) is type(probe)
    X_test = data["test"][0]
    np.testing.assert_array_equal(loaded.predict_proba(X_test), probe.predict_proba(X_test))
    np.testing.assert_array_equal(loaded.predict(X_test), probe.predict(X_test))
    if name == "head":
        assert (tmp_path / name / "model.keras").is_file()
        assert loaded.history_ == probe.history_ and loaded.best_epoch_ == probe.best_epoch_
        assert loaded.get_params() == probe.get_params()


def test_load_refuses_a_directory_without_a_probe(tmp_path):
    with pytest.raises(FeaturekitError, match="No saved probe"):
        load_probe(tmp_path)


def test_head_standardises_badly_scaled_features_and_folds_the_scaling_into_the_model():
    # Raw VGG activations are in the hundreds; the study's unscaled head stalls on such inputs.
    X, y = blobs(400, seed=11, shift=1.5)
    X_valid, y_valid = blobs(200, seed=12, shift=1.5)
    offset = np.linspace(200, 900, X.shape[1]).astype(np.float32)
    head = DenseHeadClassifier(epochs=20, batch_size=32).fit(X * 300 + offset, y, X_val=X_valid * 300 + offset,
                                                              y_val=y_valid)
    X_test, y_test = blobs(200, seed=13, shift=1.5)
    raw_test = X_test * 300 + offset
    assert (head.predict(raw_test) == y_test).mean() > 0.9
    np.testing.assert_allclose(head.predict_proba(raw_test)[:, 1], head.model_.predict(raw_test, verbose=0)[:, 0],
                               atol=1e-4)
    assert head.mean_.shape == (X.shape[1],) and np.all(head.scale_ > 100)


# -- one base: keyword-only validation, loss history, local randomness -------------------------------


@pytest.mark.parametrize("name", ["head", "logreg"])
def test_epoch_probes_take_validation_data_by_keyword_only(name, data):
    probe = make_stream_probe(name, **(dict(FAST_HEAD, epochs=2) if name == "head" else dict(epochs=2)))
    with pytest.raises(TypeError):
        probe.fit(*data["train"], *data["valid"])
    with pytest.raises(FeaturekitError, match="X_val and y_val"):
        probe.fit(*data["train"], X_val=data["valid"][0])
    probe.fit(*data["train"], X_val=data["valid"][0], y_val=data["valid"][1])
    assert set(probe.history_) == {"loss", "val_loss", "val_auc"}
    assert len(probe.history_["loss"]) == len(probe.history_["val_loss"]) == len(probe.history_["val_auc"])
    best = np.argmin(probe.history_["val_loss"]) if probe.monitor == "val_loss" else np.argmax(probe.history_["val_auc"])
    assert probe.best_epoch_ == best


@pytest.mark.parametrize("loss", ["log_loss", "hinge"])
def test_sgd_probe_records_a_falling_loss_and_keeps_the_best_epoch(loss, data):
    probe = SGDLinearProbe(loss=loss, epochs=6, patience=2, chunk_rows=50)
    probe.fit(*data["train"], X_val=data["valid"][0], y_val=data["valid"][1])
    history = probe.history_
    assert history["loss"][-1] < history["loss"][0]
    assert probe.best_epoch_ == int(np.argmax(history["val_auc"]))
    # The kept coefficients are the best epoch's: their valid AUC is the recorded maximum.
    auc = metrics.roc_auc(data["valid"][1], probe.decision_function(data["valid"][0]))
    assert auc == pytest.approx(max(history["val_auc"]), rel=1e-12)


# The head (slow): five Keras fits.
@pytest.mark.parametrize("name", [pytest.param("head", marks=pytest.mark.slow), "logreg", "linsvm"])
def test_fitting_leaves_global_random_state_alone_and_repeats_exactly(name, data):
    import random

    params = dict(FAST_HEAD, epochs=3) if name == "head" else dict(epochs=3)
    X, y = data["train"]
    make_stream_probe(name, **params).fit(X, y)  # imports (TensorFlow's touch NumPy's generator) happen here
    python_state, numpy_state = random.getstate(), np.random.get_state()
    first = make_stream_probe(name, **params).fit(X, y, X_val=data["valid"][0], y_val=data["valid"][1])
    streamed = make_stream_probe(name, **params).fit_stream(chunk_factory(4, 100, seed=2))
    assert random.getstate() == python_state
    after = np.random.get_state()
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1]) and after[2:] == numpy_state[2:]
    assert len(streamed.history_["loss"]) == 3
    second = make_stream_probe(name, **params).fit(X, y, X_val=data["valid"][0], y_val=data["valid"][1])
    X_test = data["test"][0]
    np.testing.assert_array_equal(first.predict_proba(X_test), second.predict_proba(X_test))
    assert first.history_ == second.history_
    other = make_stream_probe(name, **params, random_state=1).fit(X, y)
    assert not np.array_equal(other.predict_proba(X_test), first.predict_proba(X_test))


def test_head_batch_size_auto_keeps_small_sets_at_256_and_grows_with_the_data():
    from featurekit.probes.head import auto_batch_size

    assert [auto_batch_size(n) for n in (10, 5_000, 16_383, 40_000, 80_000, 140_000, 10**7)] == [
        256, 256, 256, 512, 1024, 2048, 4096]
    X, y = blobs(300, seed=21)
    head = DenseHeadClassifier(units=8, epochs=1).fit(X, y)
    assert head.batch_size == "auto" and head.batch_size_ == 256
    assert DenseHeadClassifier().get_params()["epochs"] == 30


@pytest.mark.slow  # a whole Python process under JAX
def test_head_trains_under_jax_without_importing_tensorflow(tmp_path):
    import json
    import os
    import subprocess
    import sys

    pytest.importorskip("jax", reason="jax is not installed (pip install -e '.[jax]'); CI's JAX leg installs it")

    script = f"""
import json, sys
import numpy as np
from featurekit.probes import DenseHeadClassifier, load_probe, save_probe
rng = np.random.default_rng(0)
y = np.arange(200) % 2
X = (rng.normal(size=(200, 8)) + y[:, None]).astype(np.float32)
head = DenseHeadClassifier(units=16, epochs=3, batch_size=50, learning_rate=1e-2)
head.fit(X, y, X_val=X[:100], y_val=y[:100])
save_probe(head, {str(tmp_path / "head")!r})
loaded = load_probe({str(tmp_path / "head")!r})
import keras
print(json.dumps({{"backend": keras.backend.backend(), "tensorflow": "tensorflow" in sys.modules,
                  "accuracy": float((loaded.predict(X) == y).mean()), "loss": head.history_["loss"],
                  "same": bool(np.array_equal(loaded.predict_proba(X), head.predict_proba(X)))}}))
"""
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    run = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["backend"] == "jax" and result["tensorflow"] is False
    assert result["same"] and result["accuracy"] > 0.8 and result["loss"][-1] < result["loss"][0]


@pytest.mark.parametrize("name, params, word", [
    ("head", {"batch_size": 0}, "batch_size"),
    ("head", {"monitor": "accuracy"}, "monitor"),
    ("logreg", {"C": -1.0}, "'C'"),
])
def test_bad_parameter_values_are_refused_when_the_probe_is_made(name, params, word):
    with pytest.raises(FeaturekitError, match=word) as error:
        make_probe(name, **params)
    assert f"{next(iter(params))}=" in error.value.received  # the parameter spelling, not a flag
    with pytest.raises(FeaturekitError, match="epochs"):
        make_stream_probe(name, epochs=0)


def test_feature_statistics_match_numpy_and_leave_the_input_alone(monkeypatch):
    from featurekit.probes import epochs

    monkeypatch.setattr(epochs, "STATISTICS_BLOCK_BYTES", 8 * 5 * 7)  # blocks of 7 rows of 5 features
    rng = np.random.default_rng(0)
    X = rng.normal(1e4, 3.0, size=(103, 5))  # a large mean and a small spread: the naive formula loses digits
    X[:, 2] = 7.0  # a constant feature keeps scale 1
    y = np.arange(len(X)) % 2
    original = X.copy()
    probe = SGDLinearProbe(epochs=1).fit_stream(lambda: ((X[s : s + 20], y[s : s + 20]) for s in range(0, len(X), 20)))
    np.testing.assert_array_equal(X, original)
    np.testing.assert_allclose(probe.mean_, X.mean(axis=0).astype(np.float32), rtol=1e-7)
    expected = X.std(axis=0)
    expected[2] = 1.0
    np.testing.assert_allclose(probe.scale_, expected.astype(np.float32), rtol=1e-6)
