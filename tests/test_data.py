from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import BUNDLED_FACES, make_image_folder, write_image
from featurekit.data import ImageDecodeError, hash_split, load_image, order_class_names, scan_image_folder
from featurekit.errors import FeaturekitError


def test_class_folder_layout_labels_fake_as_positive(image_folder: Path):
    folder = scan_image_folder(image_folder)
    assert folder.layout == "class-folders"
    assert folder.class_names == ("real", "fake")
    fakes = [s for s in folder.samples if s.path.startswith("fake/")]
    assert fakes and all(s.label == 1 for s in fakes)
    assert [s.path for s in folder.samples] == sorted(s.path for s in folder.samples)
    assert all(len(s.sha256) == 64 for s in folder.samples)


def test_class_order_without_fake_is_alphabetical():
    assert order_class_names(["dog", "cat"]) == ("cat", "dog")
    assert order_class_names(["real", "fake"]) == ("real", "fake")


def test_hash_splits_are_stable_when_files_are_added(tmp_path: Path):
    root = make_image_folder(tmp_path / "d", per_class=30)
    before = {s.path: s.split for s in scan_image_folder(root).samples}
    make_image_folder(tmp_path / "extra", per_class=30)
    for i in range(30, 60):
        write_image(root / "real" / f"new_{i}.png", seed=i)
    after = {s.path: s.split for s in scan_image_folder(root).samples}
    assert len(after) == len(before) + 30
    assert all(after[p] == split for p, split in before.items())


def test_hash_split_fractions_are_respected():
    splits = [hash_split(f"real/{i}.jpg", (0.7, 0.15, 0.15)) for i in range(4000)]
    share = {s: splits.count(s) / len(splits) for s in ("train", "valid", "test")}
    assert abs(share["train"] - 0.70) < 0.03 and abs(share["valid"] - 0.15) < 0.03
    assert all(hash_split(f"x{i}", (1.0, 0.0, 0.0)) == "train" for i in range(50))


def test_split_folder_layout_keeps_kaggle_splits(tmp_path: Path):
    for split in ("train", "valid", "test"):
        for label in ("real", "fake"):
            write_image(tmp_path / "kaggle" / split / label / "a.jpg", seed=hash((split, label)) % 1000)
    folder = scan_image_folder(tmp_path / "kaggle")
    assert folder.layout == "split-folders"
    assert {(s.path.split("/")[0], s.split) for s in folder.samples} == {(x, x) for x in ("train", "valid", "test")}
    assert folder.class_names == ("real", "fake")


@pytest.mark.parametrize("mode,fmt,suffix", [("L", "PNG", ".png"), ("RGBA", "PNG", ".png"), ("CMYK", "JPEG", ".jpg"),
                                             ("P", "GIF", ".gif"), ("RGB", "BMP", ".bmp")])
def test_every_image_mode_decodes_to_rgb(tmp_path: Path, mode: str, fmt: str, suffix: str):
    path = write_image(tmp_path / f"img{suffix}", seed=1, size=30, mode=mode, fmt=fmt)
    image = load_image(path, 16)
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8


def test_animated_gif_gives_first_frame(tmp_path: Path):
    from PIL import Image

    frames = [Image.new("RGB", (20, 20), color) for color in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    image = load_image(tmp_path / "anim.gif", 20)
    assert image[10, 10, 0] > 200 and image[10, 10, 2] < 50


@pytest.mark.parametrize("content", [b"", b"not an image at all", "truncated"])
def test_bad_files_raise_decode_error(tmp_path: Path, content):
    path = tmp_path / "bad.jpg"
    if content == "truncated":
        good = write_image(tmp_path / "good.jpg", seed=3, size=64, fmt="JPEG")
        path.write_bytes(good.read_bytes()[:400])
    else:
        path.write_bytes(content)
    with pytest.raises(ImageDecodeError):
        load_image(path, 16)


def test_non_image_suffix_is_listed_not_loaded(image_folder: Path):
    (image_folder / "real" / "notes.txt").write_text("hello")
    folder = scan_image_folder(image_folder)
    assert folder.unsupported == [("real/notes.txt", "unsupported file type .txt")]


@pytest.mark.parametrize("case", ["missing", "empty", "one-class", "three-classes", "file"])
def test_bad_folders_are_refused_clearly(tmp_path: Path, case: str):
    root = tmp_path / "d"
    if case == "empty":
        (root / "real").mkdir(parents=True)
        (root / "fake").mkdir()
    elif case == "one-class":
        write_image(root / "real" / "a.png", seed=1)
        (root / "fake").mkdir()
    elif case == "three-classes":
        for name in ("a", "b", "c"):
            write_image(root / name / "x.png", seed=1)
    elif case == "file":
        root.parent.mkdir(exist_ok=True)
        root.write_text("x")
    with pytest.raises(FeaturekitError) as error:
        scan_image_folder(root)
    assert "Received: --data" in str(error.value)


def test_bundled_sample_is_balanced_and_small():
    folder = scan_image_folder(BUNDLED_FACES)
    labels = [s.label for s in folder.samples]
    assert labels.count(0) == 100 and labels.count(1) == 100
    assert sum(p.stat().st_size for p in BUNDLED_FACES.rglob("*")) < 3 * 2**20


def test_shared_faces_scan_matches_their_manifest(shared_faces: Path):
    import csv

    folder = scan_image_folder(shared_faces)
    manifest = {row["path"]: row for row in csv.DictReader(open(shared_faces / "manifest.csv"))}
    assert len(folder.samples) == len(manifest) == 1756
    assert folder.class_names == ("real", "fake")
    assert all(manifest[s.path]["sha256"] == s.sha256 for s in folder.samples)
    assert all(s.label == (manifest[s.path]["label"] == "fake") for s in folder.samples)
    counts = folder.split_counts()
    assert 0.6 < sum(counts["train"].values()) / 1756 < 0.8 and min(min(c.values()) for c in counts.values()) > 100
