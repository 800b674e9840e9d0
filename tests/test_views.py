"""Robustness views: the grammar, the degradations and their order, per-image seeding, views in the cache identity."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import QUIET, make_image_folder, write_image
from featurekit.cache import cache_fingerprint, open_cache
from featurekit.data import decode_rgb, load_image, resize_rgb
from featurekit.errors import FeaturekitError
from featurekit.extraction.extract import extract, extract_from_options
from featurekit.pipeline import image_batches
from featurekit.views import VIEW_GRAMMAR, ViewDecoder, parse_view, parse_views


# --- the grammar -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, name, slug", [
    ("jpeg:50", "jpeg:50", "jpeg50"),
    ("JPEG:75", "jpeg:75", "jpeg75"),
    ("blur:1", "blur:1", "blur1"),
    ("blur:0.5", "blur:0.5", "blur0.5"),
    ("resize:0.5", "resize:0.5", "resize0.5"),
    ("jpeg:50+blur:1", "jpeg:50+blur:1", "jpeg50-blur1"),
    ("jpeg:30-100", "jpeg:30-100@0", "jpeg30to100-s0"),
    ("jpeg:30-100@7", "jpeg:30-100@7", "jpeg30to100-s7"),
    ("blur:0-3", "blur:0-3@0", "blur0to3-s0"),
    ("blur:2@9", "blur:2", "blur2"),  # a fixed view draws nothing: its seed is dropped
])
def test_views_parse_to_one_canonical_name(text, name, slug):
    view = parse_view(text)
    assert (view.name, view.slug) == (name, slug)
    assert parse_view(view.name) == view


@pytest.mark.parametrize("text, problem", [
    ("jpeg:0", "jpeg takes a JPEG quality, a whole number from 1 to 100"),
    ("jpeg:101", "whole number from 1 to 100"),
    ("jpeg:50.5", "whole number from 1 to 100"),
    ("blur:0", "blur takes a Gaussian sigma in pixels, above 0"),
    ("blur:-1", "'blur:-1' is not KIND:VALUE or KIND:LOW-HIGH"),
    ("resize:0", "resize takes a scale factor above 0 and at most 4"),
    ("resize:4.5", "at most 4"),
    ("gamma:2", "unknown degradation 'gamma' (known: jpeg, blur, resize)"),
    ("jpeg", "'jpeg' is not KIND:VALUE"),
    ("jpeg:90-30", "the range 90-30 of jpeg must rise"),
    ("jpeg:50+", "'' is not KIND:VALUE"),
    ("jpeg:30-100@x", "the seed after @ must be a whole number"),
    ("", "it names no degradation"),
])
def test_bad_views_are_refused_with_the_grammar(text, problem):
    with pytest.raises(FeaturekitError) as info:
        parse_view(text)
    message = str(info.value)
    assert problem in message and f"Received: view={text!r}." in message and VIEW_GRAMMAR in message


def test_none_is_the_clean_images_and_duplicates_go():
    assert parse_view("none") is None and parse_view("clean") is None
    views = parse_views(["jpeg:50", "JPEG:50", "none", "blur:1"])
    assert [v.name if v else "" for v in views] == ["jpeg:50", "", "blur:1"]


# --- the degradations --------------------------------------------------------------------------------------


def _photo(tmp_path: Path, size: int = 40) -> Path:
    return write_image(tmp_path / "x.png", seed=3, size=size)


def test_jpeg_view_is_pillow_jpeg_at_that_quality(tmp_path: Path):
    path = _photo(tmp_path)
    clean = load_image(path, 40)
    degraded = ViewDecoder(parse_view("jpeg:50"))(path, 40)
    buffer = io.BytesIO()
    Image.fromarray(clean).save(buffer, format="JPEG", quality=50)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    np.testing.assert_array_equal(degraded, expected)
    assert np.abs(degraded.astype(int) - clean).mean() > 5  # random noise does not survive JPEG 50


def test_blur_view_is_a_gaussian_filter_per_channel(tmp_path: Path):
    from scipy.ndimage import gaussian_filter

    path = _photo(tmp_path)
    clean = load_image(path, 40).astype(np.float32)
    blurred = ViewDecoder(parse_view("blur:1"))(path, 40)
    expected = np.clip(np.rint(np.stack([gaussian_filter(clean[..., c], 1.0) for c in range(3)], -1)), 0, 255)
    np.testing.assert_array_equal(blurred, expected.astype(np.uint8))
    assert blurred.std() < clean.std() / 2


def test_views_apply_in_order_before_the_backbones_resize(tmp_path: Path):
    path = _photo(tmp_path, size=40)
    view = parse_view("resize:0.5+jpeg:60")
    got = ViewDecoder(view)(path, 32)
    stored = decode_rgb(path)
    half = stored.resize((20, 20), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    half.save(buffer, format="JPEG", quality=60)
    expected = resize_rgb(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"), 32)
    np.testing.assert_array_equal(got, expected)
    # The other order (JPEG of the resized input) is another image: the view degrades the stored file.
    other = ViewDecoder(parse_view("jpeg:60"))(path, 32)
    assert not np.array_equal(got, other)


def test_random_ranges_are_seeded_per_image_whatever_the_threads(tmp_path: Path):
    folder = make_image_folder(tmp_path / "faces", per_class=6, size=24)
    paths = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png"))
    decoder = ViewDecoder(parse_view("jpeg:5-95+blur:0-2"), str(folder))

    def decoded(workers: int, batch_size: int) -> np.ndarray:
        return np.concatenate([images for images, _, _ in image_batches(folder, paths, 24, batch_size, workers=workers,
                                                                         decode=decoder)])

    one = decoded(1, 12)
    np.testing.assert_array_equal(one, decoded(4, 5))
    reseeded = np.concatenate([i for i, _, _ in image_batches(
        folder, paths, 24, 12, decode=ViewDecoder(parse_view("jpeg:5-95+blur:0-2@1"), str(folder)))])
    assert not np.array_equal(one, reseeded)
    # Each image draws its own quality: the images do not all share one degradation.
    fixed = [np.abs(one[i].astype(int) - ViewDecoder(parse_view("jpeg:50"))(folder / p, 24)).mean()
             for i, p in enumerate(paths)]
    assert len({round(f, 3) for f in fixed}) > 1


def test_each_image_draws_from_its_own_key_even_with_the_same_content(tmp_path: Path):
    # The same pixels under eight names: a view drawing once for every image would degrade them all alike.
    source = write_image(tmp_path / "faces" / "real" / "a.png", seed=3, size=32)
    paths = [source] + [source.with_name(f"copy{i}.png") for i in range(7)]
    for copy in paths[1:]:
        copy.write_bytes(source.read_bytes())
    decoder = ViewDecoder(parse_view("jpeg:5-95"), str(tmp_path / "faces"))
    degraded = [decoder(path, 32) for path in paths]
    assert len({image.tobytes() for image in degraded}) > 1
    # ... and one name always gets the same draw.
    np.testing.assert_array_equal(decoder(paths[3], 32), degraded[3])


def test_view_chains_and_their_enlargement_are_bounded():
    with pytest.raises(FeaturekitError, match="chains 9 steps, more than 8"):
        parse_view("+".join(["blur:1"] * 9))
    with pytest.raises(FeaturekitError, match="enlarge images up to 1024x"):
        parse_view("+".join(["resize:4"] * 5))
    assert parse_view("resize:2+resize:2").name == "resize:2+resize:2"


def test_a_view_never_enlarges_an_image_past_the_pixel_limit(tmp_path: Path):
    from featurekit.data import ImageDecodeError

    path = write_image(tmp_path / "big.png", seed=1, size=200)
    with pytest.raises(ImageDecodeError, match="would enlarge the image to 640,000 pixels"):
        ViewDecoder(parse_view("resize:4"))(path, 32, max_pixels=100_000)
    assert ViewDecoder(parse_view("resize:4"))(path, 32, max_pixels=640_000).shape == (32, 32, 3)


# --- views in extraction and in the identity ----------------------------------------------------------------


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("views") / "faces", per_class=10, size=40)


def _extract(data: Path, **options):
    return extract(data, "test_tiny", pooling="avg", batch_size=8, **QUIET, **options)


@pytest.mark.parametrize("view", ["jpeg:20", "blur:1.5"])
def test_a_view_changes_the_features_and_is_recorded(faces: Path, tmp_path: Path, view: str):
    clean = _extract(faces, cache_dir=tmp_path)
    degraded = _extract(faces, cache_dir=tmp_path, view=view)
    slug = parse_view(view).slug
    assert degraded.cache_path.name == clean.cache_path.name.replace(".h5", f"-view-{slug}.h5")
    with open_cache(clean.cache_path) as a, open_cache(degraded.cache_path) as b:
        assert a.paths == b.paths and a.attrs["view"] == "" and b.attrs["view"] == parse_view(view).name
        assert a.fingerprint != b.fingerprint
        difference = np.abs(a.load()[0] - b.load()[0]).mean()
        assert difference > 1e-3 * np.abs(a.load()[0]).mean()
        # The view cache holds the features of the degraded images, computed as the decoder gives them.
        from featurekit.backbones.embedder import build_embedder

        decoder = ViewDecoder(parse_view(view), str(faces))
        images = np.stack([decoder(faces / p, 32) for p in b.paths[:4]])
        np.testing.assert_allclose(b.load()[0][:4], build_embedder("test_tiny", weights="none", pooling="avg",
                                                                  precision=b.attrs["precision"])(images),
                                   rtol=1e-5, atol=1e-6)


def test_the_same_view_and_seed_give_the_same_cache(faces: Path, tmp_path: Path):
    first = _extract(faces, cache=tmp_path / "a.h5", view="jpeg:30-90@3")
    second = _extract(faces, cache=tmp_path / "b.h5", view="jpeg:30-90@3")
    with open_cache(first.cache_path) as a, open_cache(second.cache_path) as b:
        np.testing.assert_array_equal(a.load()[0], b.load()[0])
        assert a.fingerprint == b.fingerprint


def test_a_clean_request_is_never_answered_by_a_view_cache(faces: Path, tmp_path: Path):
    _extract(faces, cache=tmp_path / "c.h5", view="jpeg:50")
    with pytest.raises(FeaturekitError) as info:
        _extract(faces, cache=tmp_path / "c.h5")
    assert "view is 'jpeg:50' in the cache but '' was asked for" in str(info.value)
    with pytest.raises(FeaturekitError) as info:
        _extract(faces, cache=tmp_path / "c.h5", view="jpeg:60")
    assert "view is 'jpeg:50' in the cache but 'jpeg:60' was asked for" in str(info.value)
    assert _extract(faces, cache=tmp_path / "c.h5", view="JPEG:50").status == "up-to-date"


def test_views_split_extracts_the_test_split_only(faces: Path, tmp_path: Path):
    results = extract_from_options({"data": faces, "backbone": "test_tiny", "pooling": "avg", "batch_size": 8,
                                    "cache_dir": tmp_path, "view": ["none", "blur:1"], "views_split": "test"},
                                   log=lambda m: None, progress=False)
    clean, blurred = (r.cache_path for r in results)
    assert blurred.name.endswith("-view-blur1-only-test.h5") and "view" not in clean.name
    with open_cache(clean) as a, open_cache(blurred) as b:
        test = a.split_indices("test")
        assert b.n_rows == len(test) and set(b.splits) == {"test"} and b.attrs["subset"] == "test"
        assert b.paths == [a.paths[i] for i in test]
        assert b.attrs["data_fingerprint"] == a.attrs["data_fingerprint"]  # the same images, one split of them
        assert a.attrs["subset"] == ""
    from featurekit.cache.describe import describe_cache

    described = describe_cache(blurred)["attributes"]
    assert described["view"] == "blur:1" and described["subset"] == "test"


def test_one_cache_path_for_several_views_is_refused(faces: Path, tmp_path: Path):
    with pytest.raises(FeaturekitError) as info:
        extract_from_options({"data": faces, "backbone": "test_tiny", "cache": tmp_path / "x.h5",
                              "view": ["jpeg:50", "blur:1"]}, log=lambda m: None, progress=False)
    assert "several views" in str(info.value)
    assert not (tmp_path / "x.h5").exists()


def test_a_bad_view_is_refused_before_any_work(faces: Path, tmp_path: Path):
    with pytest.raises(FeaturekitError) as info:
        _extract(faces, cache_dir=tmp_path, view="jpeg:500")
    assert "jpeg takes a JPEG quality" in str(info.value)
    assert not list(tmp_path.glob("*.h5*"))


def test_fingerprints_of_clean_caches_did_not_change_with_the_view_key():
    attrs = {"backbone": "vgg16", "layer": "block5_pool", "pooling": "flatten", "image_size": 224, "dtype": "float32",
             "data_fingerprint": "abc"}
    assert cache_fingerprint(attrs, 10, 4) == cache_fingerprint({**attrs, "view": "", "subset": ""}, 10, 4)
    assert cache_fingerprint(attrs, 10, 4) != cache_fingerprint({**attrs, "view": "jpeg:50"}, 10, 4)
    # The value the code gave before `view` and `subset` joined the identity (so fitted probes stay valid):
    assert cache_fingerprint(attrs, 10, 4) == "96c8188c083b779d"
