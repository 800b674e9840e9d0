"""Hand-made forensic features: SPAM against a direct transcription of its definition, known values,
separation of synthetic textures, the spectrum of a sinusoid, and the spec the registry will adopt."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from featurekit.errors import FeaturekitError
from featurekit.handmade import get_handmade, list_handmade
from featurekit.handmade.spam import spam_feature_dim, spam_features
from featurekit.handmade.spectrum import spectrum_feature_dim, spectrum_features

# The paper's 8 directions as (row step, column step), in its two groups.
STRAIGHT = [(0, 1), (0, -1), (1, 0), (-1, 0)]
DIAGONAL = [(1, 1), (-1, -1), (1, -1), (-1, 1)]


def spam_by_definition(image: np.ndarray, threshold: int, order: int, normalisation: str) -> np.ndarray:
    """SPAM written pixel by pixel from the definition: every direction walked on its own."""
    rgb = image.astype(int).transpose(2, 0, 1)
    planes = [rgb[0], rgb[1], rgb[2], rgb[0] - rgb[1], rgb[2] - rgb[1]]
    n = 2 * threshold + 1
    features = []
    for plane in planes:
        height, width = plane.shape
        for group in (STRAIGHT, DIAGONAL):
            average = np.zeros([n] * (order + 1))
            for dy, dx in group:
                counts = np.zeros([n] * (order + 1))
                for i in range(height):
                    for j in range(width):
                        points = [(i + k * dy, j + k * dx) for k in range(order + 2)]
                        if all(0 <= y < height and 0 <= x < width for y, x in points):
                            run = [plane[points[k]] - plane[points[k + 1]] for k in range(order + 1)]
                            counts[tuple(int(np.clip(d, -threshold, threshold)) + threshold for d in run)] += 1
                if normalisation == "joint":
                    counts /= counts.sum()
                else:
                    context = counts.sum(axis=-1, keepdims=True)
                    counts = np.divide(counts, context, out=np.zeros_like(counts), where=context > 0)
                average += counts / 4
            features.append(average.ravel())
    return np.concatenate(features)


@pytest.mark.parametrize("threshold,order", [(1, 1), (2, 2), (3, 2)])
@pytest.mark.parametrize("normalisation", ["joint", "transition"])
def test_spam_equals_its_definition_in_all_eight_directions(threshold, order, normalisation):
    rng = np.random.default_rng(threshold * 10 + order)
    image = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    image[..., 1] = image[..., 0] // 3 + 40  # small, correlated differences: most runs fall inside [-T, T]
    image[2:5, 1:6] = 90  # a flat patch: runs of zeros
    fast = spam_features(image[None], threshold, order, normalisation)[0]
    assert fast.shape == (spam_feature_dim(threshold, order),)
    np.testing.assert_allclose(fast, spam_by_definition(image, threshold, order, normalisation), atol=1e-6)


@pytest.mark.parametrize("normalisation", ["joint", "transition"])
def test_spam_of_a_constant_image_is_one_hot_at_the_zero_run(normalisation):
    constant = np.full((2, 16, 16, 3), 77, dtype=np.uint8)
    features = spam_features(constant, threshold=3, order=2, normalisation=normalisation)
    per_group = features.reshape(2, 5 * 2, 7 ** 3)  # 5 planes x 2 groups, 343 bins each
    zero_run = 3 * 49 + 3 * 7 + 3  # every difference 0 -> digit T in each position
    expected = np.zeros(343)
    expected[zero_run] = 1.0
    np.testing.assert_array_equal(per_group, np.broadcast_to(expected, per_group.shape))


def test_spam_feature_dim_formula():
    assert spam_feature_dim() == 5 * 2 * 7 ** 3 == 3430
    assert spam_feature_dim(threshold=4, order=1) == 5 * 2 * 9 ** 2
    image = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    assert spam_features(image, threshold=2, order=1).shape == (1, spam_feature_dim(2, 1)) == (1, 250)


def test_spam_joint_groups_sum_to_one():
    images = np.random.default_rng(1).integers(0, 256, (3, 20, 24, 3), dtype=np.uint8)
    groups = spam_features(images).reshape(3, 10, 343)
    np.testing.assert_allclose(groups.sum(axis=-1), 1.0, atol=1e-5)


def textures(kind: str, count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Two noise processes of equal brightness and pixel variance that differ only in correlation."""
    images = []
    for _ in range(count):
        noise = rng.normal(0, 6, (size + 1, size + 1, 3))
        if kind == "smooth":  # 2x2 box filter: neighbours correlate; scaled back to the same variance
            noise = (noise[:-1, :-1] + noise[1:, :-1] + noise[:-1, 1:] + noise[1:, 1:]) / 2
        else:
            noise = noise[:-1, :-1]
        images.append(np.clip(rng.uniform(60, 190) + noise, 0, 255).astype(np.uint8))
    return np.stack(images)


def test_spam_separates_two_noise_textures_with_a_linear_probe():
    rng = np.random.default_rng(0)
    size, n = 32, 30
    x_train = spam_features(np.concatenate([textures("white", n, size, rng), textures("smooth", n, size, rng)]))
    x_test = spam_features(np.concatenate([textures("white", n, size, rng), textures("smooth", n, size, rng)]))
    y = np.repeat([0, 1], n)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(x_train, y)
    assert roc_auc_score(y, probe.predict_proba(x_test)[:, 1]) > 0.9


# Frequencies whose rounding to uint8 repeats with the wave itself, so the rounding error lands on
# harmonics at larger rings (a wave of 10 cycles in 64 px spreads its error over small rings too).
@pytest.mark.parametrize("cycles_y,cycles_x", [(0, 8), (8, 8), (6, 8), (4, 16)])
def test_spectrum_of_a_sinusoid_peaks_at_its_frequency(cycles_y, cycles_x):
    size = 64
    y, x = np.indices((size, size))
    wave = 128 + 90 * np.cos(2 * np.pi * (cycles_y * y + cycles_x * x) / size)
    image = np.repeat(wave[..., None], 3, axis=2).round().astype(np.uint8)[None]
    profile = spectrum_features(image, normalisation="none")[0]
    assert profile.shape == (32,)
    expected_ring = int(np.floor(np.hypot(cycles_y, cycles_x)))
    assert int(np.argmax(profile[1:])) + 1 == expected_ring  # ring 0 is the mean brightness


def test_spectrum_minmax_profiles_span_zero_to_one():
    images = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    profiles = spectrum_features(images)
    np.testing.assert_allclose(profiles.min(axis=1), 0.0)
    np.testing.assert_allclose(profiles.max(axis=1), 1.0)


def test_spectrum_feature_dim_depends_on_image_size():
    assert spectrum_feature_dim(256) == 128
    assert spectrum_feature_dim(256, include_corners=True) == 182  # floor(hypot(128, 128)) + 1
    assert spectrum_feature_dim((40, 64)) == 20
    images = np.zeros((2, 40, 64, 3), dtype=np.uint8)
    assert spectrum_features(images, include_corners=True).shape == (2, spectrum_feature_dim((40, 64), True))


@pytest.mark.parametrize("bad", [
    np.zeros((2, 16, 16, 3), dtype=np.float32),  # a float batch, e.g. already scaled to [0, 1]
    np.zeros((16, 16, 3), dtype=np.uint8),        # one image, no batch axis
    np.zeros((2, 16, 16), dtype=np.uint8),        # grayscale without a channel axis
    np.zeros((2, 2, 2, 3), dtype=np.uint8),       # too small for runs of three differences
])
def test_features_refuse_anything_but_uint8_rgb_batches(bad):
    with pytest.raises(FeaturekitError, match="images"):
        spam_features(bad)


def test_bad_parameters_are_refused_with_the_parameter_named():
    with pytest.raises(FeaturekitError, match="threshold=0"):
        spam_feature_dim(threshold=0)
    with pytest.raises(FeaturekitError, match="order=3"):
        spam_features(np.zeros((1, 8, 8, 3), np.uint8), order=3)
    with pytest.raises(FeaturekitError, match="normalisation='l2'"):
        spectrum_features(np.zeros((1, 8, 8, 3), np.uint8), normalisation="l2")


def test_registry_specs_extract_what_they_declare():
    assert list_handmade() == ["spam", "spectrum"]
    images = np.random.default_rng(3).integers(0, 256, (2, 24, 24, 3), dtype=np.uint8)
    for name in list_handmade():
        spec = get_handmade(name)
        assert spec.input_size == 256 and spec.resamples is False
        features = spec.extract(images)
        assert features.dtype == np.float32 and features.shape == (2, spec.feature_dim(24))
    assert get_handmade("spam").feature_dim() == 3430
    assert get_handmade("spectrum").feature_dim() == 128


def test_spec_parameters_are_overridable_validated_and_recorded():
    spam = get_handmade("spam")
    first_order = spam.with_parameters(order=1, threshold=4)
    assert first_order.feature_dim() == 810 and spam.feature_dim() == 3430  # the registered spec is unchanged
    described = first_order.describe()
    assert described["parameters"] == {"threshold": 4, "order": 1, "normalisation": "joint"}
    assert described["feature_dim"] == 810 and described["version"] and described["kind"] == "handmade"
    with pytest.raises(FeaturekitError, match="radius"):
        spam.with_parameters(radius=2)
    with pytest.raises(FeaturekitError, match="threshold=11"):
        spam.with_parameters(threshold=11)
    with pytest.raises(TypeError):
        spam.parameters["threshold"] = 2  # read-only: a spec is data
    assert spam.with_parameters(threshold=3) == spam and hash(spam.with_parameters(threshold=3)) == hash(spam)
    with pytest.raises(FeaturekitError, match="spam, spectrum"):
        get_handmade("lbp")
