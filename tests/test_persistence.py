"""Saved probes cannot run code: planted pickles, untrusted skops types and damaged files are refused.

Every planted payload would create a file if it were ever executed; each test asserts that the file is
absent afterwards (and one test shows the payload really does create it when unpickled on purpose).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shlex
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import skops.io

from conftest import separable_cache
from featurekit.errors import FeaturekitError
from featurekit.evaluation.fitting import fit_probe, load_fitted, read_fitted_meta
from featurekit.probes import (
    SGDLinearProbe,
    UnloadableProbeError,
    load_probe,
    make_probe,
    make_stream_probe,
    save_probe,
)
from featurekit.probes.persistence import HEAD_MODEL, SKLEARN_FILE, SKLEARN_META, TRUSTED_TYPES

N_FEATURES = 6


class Payload:
    """Unpickling this runs `touch PATH`: the classic pickle attack."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _data(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return (rng.normal(size=(n, N_FEATURES)) + y[:, None]).astype(np.float32), y


def _fitted_sklearn_probes() -> dict[str, object]:
    X, y = _data()
    probes = {name: make_probe(name).fit(X, y) for name in ("logreg", "linsvm", "knn", "rbfsvm")}
    probes["sgd-logreg"] = make_stream_probe("logreg", epochs=2).fit(X, y, X_val=X[:50], y_val=y[:50])
    probes["sgd-linsvm"] = make_stream_probe("linsvm", epochs=2).fit(X, y)
    return probes


@pytest.fixture(scope="module")
def sklearn_probes():
    return _fitted_sklearn_probes()


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "PWNED"


def test_the_payload_is_live(marker: Path):
    # The premise of every test below: unpickling the payload DOES create the marker file.
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


# -- the trusted-type list -------------------------------------------------------------------------


def test_trusted_types_are_exactly_what_our_probes_hold(sklearn_probes, tmp_path: Path):
    needed = set()
    for name, probe in sklearn_probes.items():
        save_probe(probe, tmp_path / name)
        untrusted = skops.io.get_untrusted_types(file=tmp_path / name / SKLEARN_FILE)
        assert set(untrusted) <= set(TRUSTED_TYPES), name
        needed |= set(untrusted)
    assert needed == set(TRUSTED_TYPES)  # minimal: every listed type is needed by some probe


@pytest.mark.parametrize("name", ["logreg", "linsvm", "knn", "rbfsvm", "sgd-logreg", "sgd-linsvm"])
def test_sklearn_probes_round_trip(name, sklearn_probes, tmp_path: Path):
    probe = sklearn_probes[name]
    save_probe(probe, tmp_path / name)
    assert not list((tmp_path / name).glob("*.joblib"))
    loaded = load_probe(tmp_path / name)
    assert type(loaded) is type(probe)
    X, _ = _data(50, seed=9)
    np.testing.assert_array_equal(loaded.predict_proba(X), probe.predict_proba(X))
    if isinstance(probe, SGDLinearProbe):
        assert loaded.history_ == probe.history_ and loaded.get_params() == probe.get_params()


# -- refusals ---------------------------------------------------------------------------------------


def test_a_planted_joblib_file_is_refused_unopened(tmp_path: Path, marker: Path):
    folder = tmp_path / "model"
    folder.mkdir()
    joblib.dump(Payload(marker), folder / "estimator.joblib")
    (folder / SKLEARN_META).write_text(json.dumps({"kind": "sklearn", "class": "Pipeline"}))
    with pytest.raises(UnloadableProbeError, match="old pickle") as error:
        load_probe(folder)
    assert "Refit" in error.value.fix
    assert not marker.exists()
    # Even beside a valid skops file, the pickle's presence is refused: the folder is not ours.
    X, y = _data()
    save_probe(make_probe("logreg").fit(X, y), folder)
    with pytest.raises(UnloadableProbeError, match="old pickle"):
        load_probe(folder)
    assert not marker.exists()


def test_a_pickle_under_the_skops_name_is_refused(sklearn_probes, tmp_path: Path, marker: Path):
    folder = save_probe(sklearn_probes["logreg"], tmp_path / "model")
    (folder / SKLEARN_FILE).write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(UnloadableProbeError, match="damaged or not a skops file"):
        load_probe(folder)
    assert not marker.exists()


@pytest.mark.parametrize("planted", ["object", "function"])
def test_a_skops_file_with_an_untrusted_type_is_refused(planted, sklearn_probes, tmp_path: Path, marker: Path):
    folder = save_probe(sklearn_probes["logreg"], tmp_path / "model")
    content = {"x": Payload(marker)} if planted == "object" else {"f": os.system, "args": f"touch {marker}"}
    (folder / SKLEARN_FILE).write_bytes(skops.io.dumps(content))
    with pytest.raises(UnloadableProbeError, match="types featurekit does not trust") as error:
        load_probe(folder)
    assert ("Payload" if planted == "object" else "system") in error.value.problem
    assert not marker.exists()


def test_a_trusted_but_wrong_object_is_refused(tmp_path: Path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / SKLEARN_FILE).write_bytes(skops.io.dumps({"not": "a probe"}))
    (folder / SKLEARN_META).write_text(json.dumps({"kind": "sklearn", "format": "skops"}))
    with pytest.raises(UnloadableProbeError, match="not a classifier"):
        load_probe(folder)


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_a_damaged_skops_file_is_refused(damage, sklearn_probes, tmp_path: Path):
    folder = save_probe(sklearn_probes["linsvm"], tmp_path / "model")
    data = (folder / SKLEARN_FILE).read_bytes()
    damaged = {"truncated": data[: len(data) // 2], "empty": b"", "garbage": os.urandom(2000)}[damage]
    (folder / SKLEARN_FILE).write_bytes(damaged)
    with pytest.raises(UnloadableProbeError, match="estimator.skops"):
        load_probe(folder)


@pytest.mark.parametrize("damage", ["truncated-json", "not-an-object"])
def test_damaged_probe_json_is_refused(damage, sklearn_probes, tmp_path: Path):
    folder = save_probe(sklearn_probes["logreg"], tmp_path / "model")
    text = (folder / SKLEARN_META).read_text()
    (folder / SKLEARN_META).write_text(text[: len(text) // 2] if damage == "truncated-json" else "[1, 2]")
    with pytest.raises(UnloadableProbeError, match="probe.json"):
        load_probe(folder)


@pytest.fixture(scope="module")
def saved_head(tmp_path_factory) -> Path:
    X, y = _data()
    head = make_probe("head", units=8, epochs=2, batch_size=64)
    return save_probe(head.fit(X, y), tmp_path_factory.mktemp("head") / "model")


def _copy(folder: Path, to: Path) -> Path:
    to.mkdir()
    for file in folder.iterdir():
        (to / file.name).write_bytes(file.read_bytes())
    return to


@pytest.mark.parametrize("damage", ["truncated", "garbage", "lambda-layer", "other-module"])
def test_a_damaged_or_foreign_keras_file_is_refused(damage, saved_head: Path, tmp_path: Path):
    folder = _copy(saved_head, tmp_path / "model")
    data = (folder / HEAD_MODEL).read_bytes()
    if damage in ("truncated", "garbage"):
        (folder / HEAD_MODEL).write_bytes(data[: len(data) // 2] if damage == "truncated" else os.urandom(3000))
        match = "model.keras"
    else:
        # Rewrite config.json: a Lambda layer (code in the file) or a class from outside Keras.
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files = {name: archive.read(name) for name in archive.namelist()}
        config = json.loads(files["config.json"])
        layer = config["config"]["layers"][1]
        if damage == "lambda-layer":
            layer["class_name"] = "Lambda"
        else:
            layer["module"] = "os"
        files["config.json"] = json.dumps(config).encode()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content in files.items():
                archive.writestr(name, content)
        (folder / HEAD_MODEL).write_bytes(buffer.getvalue())
        match = "names objects a head does not have"
    with pytest.raises(UnloadableProbeError, match=match):
        load_probe(folder)


@pytest.mark.parametrize("damage", ["truncated", "missing-key", "bad-params"])
def test_a_damaged_head_json_is_refused(damage, saved_head: Path, tmp_path: Path):
    folder = _copy(saved_head, tmp_path / "model")
    meta_file = folder / "estimator.json"
    text = meta_file.read_text()
    meta = json.loads(text)
    if damage == "truncated":
        meta_file.write_text(text[: len(text) // 3])
    elif damage == "missing-key":
        del meta["classes_"]
        meta_file.write_text(json.dumps(meta))
    else:
        meta["params"]["units"] = "many"
        meta_file.write_text(json.dumps(meta))
    with pytest.raises(UnloadableProbeError, match="estimator.json"):
        load_probe(folder)


def test_load_probe_refuses_an_empty_folder_and_an_old_pickle_from_names_only(tmp_path: Path, marker: Path):
    with pytest.raises(UnloadableProbeError, match="No saved probe"):
        load_probe(tmp_path)
    old = tmp_path / "old"
    old.mkdir()
    joblib.dump(Payload(marker), old / "estimator.joblib")
    with pytest.raises(UnloadableProbeError, match="old pickle"):
        load_probe(old)
    assert not marker.exists()


# -- fitted folders: fitted.json, load_fitted and compare ---------------------------------------------


def _plant_old_format(model_dir: Path, marker: Path) -> None:
    for file in model_dir.iterdir():
        file.unlink()
    joblib.dump(Payload(marker), model_dir / "estimator.joblib")
    (model_dir / SKLEARN_META).write_text(json.dumps({"kind": "sklearn", "class": "Pipeline",
                                                      "sklearn_version": "1.5.0"}))


def test_load_fitted_refuses_an_old_pickle_with_the_refit_command(tmp_path: Path, marker: Path):
    cache = separable_cache(tmp_path / "sep.h5")
    fitted = fit_probe(cache, "logreg", runs_dir=tmp_path / "runs", log=lambda m: None)
    _plant_old_format(fitted.directory / "model", marker)
    with pytest.raises(FeaturekitError, match="old pickle") as error:
        load_fitted(fitted.directory)
    assert f"python cli.py fit --cache {cache} --probe logreg" in error.value.fix
    assert not marker.exists()


def test_compare_refits_an_old_pickle_folder_without_opening_it(tmp_path: Path, marker: Path):
    from featurekit.evaluation.compare import compare

    cache = separable_cache(tmp_path / "sep.h5")
    runs = tmp_path / "runs"
    first = compare([cache], ["logreg"], runs_dir=runs, n_boot=0, log=lambda m: None)
    _plant_old_format(Path(first[0]["model_dir"]) / "model", marker)
    messages: list[str] = []
    again = compare([cache], ["logreg"], runs_dir=runs, n_boot=0, log=messages.append)
    assert not marker.exists()
    assert not again[0]["reused"] and again[0]["accuracy"] == first[0]["accuracy"]
    assert any("old pickle" in m and "Refitting" in m for m in messages)
    assert hasattr(load_probe(Path(again[0]["model_dir"]) / "model"), "predict_proba")  # replaced by a safe fit


@pytest.mark.parametrize("damage", ["truncated", "empty", "list", "no-threshold"])
def test_a_truncated_fitted_json_is_a_clear_error(damage, tmp_path: Path):
    from featurekit.evaluation.compare import compare

    cache = separable_cache(tmp_path / "sep.h5")
    fitted = fit_probe(cache, "logreg", runs_dir=tmp_path / "runs", log=lambda m: None)
    file = fitted.directory / "fitted.json"
    text = file.read_text()
    meta = json.loads(text)
    meta.pop("threshold")
    file.write_text({"truncated": text[: len(text) // 2], "empty": "", "list": "[]",
                     "no-threshold": json.dumps(meta)}[damage])
    with pytest.raises(FeaturekitError, match="fitted.json"):
        read_fitted_meta(fitted.directory)
    with pytest.raises(FeaturekitError, match="fitted.json"):
        load_fitted(fitted.directory)
    rows = compare([cache], ["logreg"], runs_dir=tmp_path / "runs", n_boot=0, log=lambda m: None)
    assert not rows[0]["reused"]  # compare refits it rather than failing


def test_cli_predict_with_a_planted_pickle_exits_2_without_running_it(tmp_path: Path, marker: Path):
    from typer.testing import CliRunner

    from featurekit.cli import app

    cache = separable_cache(tmp_path / "sep.h5")
    fitted = fit_probe(cache, "logreg", runs_dir=tmp_path / "runs", log=lambda m: None)
    _plant_old_format(fitted.directory / "model", marker)
    image = tmp_path / "face.png"
    image.write_bytes(b"not even an image")
    result = CliRunner().invoke(app, ["predict", "--model", str(fitted.directory), str(image)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "old pickle" in result.output
    assert not marker.exists()
