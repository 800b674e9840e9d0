from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import BUNDLED_FACES, make_image_folder, write_image
from featurekit.data import ImageDecodeError, hash_split, load_image, order_class_names, scan_image_folder
from featurekit.errors import FeaturekitError
from featurekit.hashing import file_sha256


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
    assert "Received: data=" in str(error.value)


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


# --- Class names without regard to case ---------------------------------------------------------------------


@pytest.mark.parametrize("names,expected", [
    (["Real", "FAKE"], ("Real", "FAKE")), (["fake", "Real"], ("Real", "fake")), (["Fake", "real"], ("real", "Fake")),
    (["dog", "Cat"], ("Cat", "dog")), (["Banana", "apple"], ("apple", "Banana")), (["real", "ai"], ("real", "ai")),
])
def test_class_order_ignores_case(names, expected):
    assert order_class_names(names) == expected


def test_mixed_case_class_folders_label_fake_as_positive(tmp_path: Path):
    root = make_image_folder(tmp_path / "d", per_class=3, classes=("Real", "FAKE"))
    folder = scan_image_folder(root)
    assert folder.class_names == ("Real", "FAKE") and folder.positive_class == "FAKE"
    assert {s.path.split("/")[0]: s.label for s in folder.samples} == {"Real": 0, "FAKE": 1}


def test_class_folders_differing_only_in_case_across_splits_are_one_class(tmp_path: Path):
    for split, real, fake in (("train", "Real", "Fake"), ("valid", "real", "fake"), ("test", "REAL", "FAKE")):
        write_image(tmp_path / "k" / split / real / "a.png", seed=1)
        write_image(tmp_path / "k" / split / fake / "a.png", seed=2)
    folder = scan_image_folder(tmp_path / "k")
    assert len(folder.class_names) == 2 and folder.positive_class.casefold() == "fake"
    assert all(s.label == (s.path.split("/")[1].casefold() == "fake") for s in folder.samples)


# --- Decoding: 16-bit, EXIF orientation, pixel limit, unreadable files ---------------------------------------


def test_16_bit_png_gradient_spans_the_full_8_bit_range(tmp_path: Path):
    from PIL import Image

    gradient = np.tile(np.linspace(0, 65535, 256).round().astype(">u2"), (256, 1))
    Image.frombytes("I;16B", (256, 256), gradient.tobytes()).save(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode.startswith("I;16")
    image = load_image(tmp_path / "g.png", 256)
    row = image[10, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) >= 0)
    np.testing.assert_allclose(row, np.linspace(0, 255, 256), atol=1)
    assert np.array_equal(image[..., 0], image[..., 2])


def test_exif_orientation_is_applied(tmp_path: Path):
    from PIL import Image

    stored = np.zeros((20, 40, 3), np.uint8)  # 40 wide, 20 high: top half red, bottom half blue
    stored[:10, :, 0] = 255
    stored[10:, :, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(stored).save(tmp_path / "photo.jpg", quality=95, exif=exif)
    image = load_image(tmp_path / "photo.jpg", 40)
    # Upright, the stored top (red) is on the right and the stored bottom (blue) on the left.
    assert image[20, 35, 0] > 200 and image[20, 35, 2] < 60
    assert image[20, 4, 2] > 200 and image[20, 4, 0] < 60


def _png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares width x height: what a decompression bomb looks like before decoding."""
    import io
    import struct
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("width,height", [(20000, 20000), (9000, 8000)])
def test_oversized_images_are_refused_before_decoding(tmp_path: Path, width: int, height: int):
    from PIL import Image

    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageDecodeError, match=rf"image too large to decode safely: {width * height:,} pixels, "
                                               r"more than `max_pixels` 64,000,000"):
        load_image(_png_declaring(tmp_path / "bomb.png", width, height), 32)
    assert Image.MAX_IMAGE_PIXELS == limit_before  # Pillow's global limit is left alone


def test_pixel_limit_is_a_parameter(tmp_path: Path):
    path = write_image(tmp_path / "a.png", seed=1, size=20)
    with pytest.raises(ImageDecodeError, match="400 pixels, more than `max_pixels` 399"):
        load_image(path, 8, max_pixels=399)
    assert load_image(path, 8, max_pixels=400).shape == (8, 8, 3)
    assert load_image(path, 8, max_pixels=None).shape == (8, 8, 3)
    for bad in (0, -5, 2.5, "64M", True):
        with pytest.raises(FeaturekitError, match="max_pixels="):
            load_image(path, 8, max_pixels=bad)


def test_unreadable_files_folders_and_fifos_raise_decode_errors(tmp_path: Path, monkeypatch):
    import errno
    import os

    import featurekit.data as data

    good = write_image(tmp_path / "good.png", seed=1)

    def refuse(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    with monkeypatch.context() as patch:
        patch.setattr(data, "open", lambda path, *a: refuse(path), raising=False)  # the decoder's `open` only
        with pytest.raises(ImageDecodeError, match="^cannot read the file: permission denied$"):
            load_image(good, 8)
    (tmp_path / "folder.jpg").mkdir()
    with pytest.raises(ImageDecodeError, match="a folder, not an image file"):
        load_image(tmp_path / "folder.jpg", 8)
    os.mkfifo(tmp_path / "pipe.jpg")
    with pytest.raises(ImageDecodeError, match="not a regular file"):
        load_image(tmp_path / "pipe.jpg", 8)  # never opened: reading a FIFO would block forever
    with pytest.raises(ImageDecodeError, match="file name is not valid UTF-8"):
        load_image(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.png"), 8)


@pytest.mark.skipif(__import__("os").geteuid() == 0, reason="runs as root, which ignores file permissions; "
                    "test_unreadable_files_folders_and_fifos_raise_decode_errors simulates the PermissionError")
def test_unreadable_file_by_permissions(tmp_path: Path):
    path = write_image(tmp_path / "a.png", seed=1)
    path.chmod(0)
    with pytest.raises(ImageDecodeError, match="permission denied"):
        load_image(path, 8)


# --- The scan lists what it does not take ----------------------------------------------------------------------


def test_links_are_followed_wherever_they_point(tmp_path: Path):
    import os

    root = make_image_folder(tmp_path / "d", per_class=2)
    outside = write_image(tmp_path / "outside.png", seed=7)
    elsewhere = make_image_folder(tmp_path / "elsewhere", per_class=1)
    (root / "real" / "inside_link.png").symlink_to(root / "real" / "img_00.png")
    (root / "real" / "outside_link.png").symlink_to(outside)
    (root / "real" / "folder_link").symlink_to(elsewhere / "real")
    (root / "real" / "dangling.png").symlink_to(tmp_path / "gone.png")
    (root / "fake" / "loop_a").symlink_to(root / "fake" / "loop_b")
    (root / "fake" / "loop_b").symlink_to(root / "fake" / "loop_a")
    os.mkfifo(root / "fake" / "pipe.png")
    (root / "fake" / "pipe_link.png").symlink_to(root / "fake" / "pipe.png")
    folder = scan_image_folder(root)
    paths = [s.path for s in folder.samples]
    assert {"real/inside_link.png", "real/outside_link.png", "real/folder_link/img_00.png"} <= set(paths)
    by_path = {s.path: s for s in folder.samples}
    assert by_path["real/outside_link.png"].sha256 == file_sha256(outside)  # the content, read through the link
    assert dict(folder.unsupported) == {
        "fake/loop_a": "symbolic link loop",
        "fake/loop_b": "symbolic link loop",
        "fake/pipe.png": "not a regular file (a FIFO, socket or device): not read",
        "fake/pipe_link.png": "symbolic link to something that is not a regular file (a FIFO, socket or device): "
                              "not read",
        "real/dangling.png": f"dangling symbolic link (to {tmp_path / 'gone.png'})",
    }


def test_a_folder_reached_twice_through_links_is_entered_once(tmp_path: Path):
    root = make_image_folder(tmp_path / "d", per_class=2)
    (root / "real" / "up").symlink_to(root / "real")  # a loop through a link to an ancestor
    (root / "fake" / "again").symlink_to(tmp_path / "shared_fakes")
    (root / "fake" / "and_again").symlink_to(tmp_path / "shared_fakes")
    write_image(tmp_path / "shared_fakes" / "x.png", seed=5)
    folder = scan_image_folder(root)
    assert [s.path for s in folder.samples if "x.png" in s.path] == ["fake/again/x.png"]
    assert dict(folder.unsupported) == {
        "fake/and_again/": "folder reached a second time through a symbolic link: entered once",
        "real/up/": "folder reached a second time through a symbolic link: entered once",
    }


def test_a_split_made_of_links_to_files_outside_the_folder_is_scanned(tmp_path: Path):
    big = make_image_folder(tmp_path / "big", per_class=4)
    for split in ("train", "valid", "test"):
        for name in ("real", "fake"):
            (tmp_path / "mine" / split / name).mkdir(parents=True)
    for i, source in enumerate(sorted(big.rglob("*.png"))):
        split = ("train", "train", "valid", "test")[i % 4]
        (tmp_path / "mine" / split / source.parent.name / source.name).symlink_to(source)
    folder = scan_image_folder(tmp_path / "mine")
    assert folder.layout == "split-folders" and len(folder.samples) == 8 and not folder.unsupported
    assert {s.split for s in folder.samples} == {"train", "valid", "test"}


def test_a_folder_of_dangling_links_says_what_was_skipped_by_reason(tmp_path: Path):
    for name in ("real", "fake"):
        for i in range(5):
            (tmp_path / "d" / name).mkdir(parents=True, exist_ok=True)
            (tmp_path / "d" / name / f"{i}.png").symlink_to(tmp_path / "moved" / f"{name}{i}.png")
    (tmp_path / "d" / "real" / "notes.txt").write_text("not an image")
    with pytest.raises(FeaturekitError) as refused:
        scan_image_folder(tmp_path / "d")
    message = str(refused.value)
    assert "has no images" in message and "Skipped: 10 dangling symbolic link (e.g. fake/0.png, fake/1.png" in message
    assert "1 unsupported file type .txt (e.g. real/notes.txt)" in message


def test_a_linked_class_folder_is_a_class_folder(tmp_path: Path):
    make_image_folder(tmp_path / "src", per_class=1)
    write_image(tmp_path / "d" / "real" / "a.png", seed=1)
    (tmp_path / "d" / "fake").symlink_to(tmp_path / "src" / "fake")
    folder = scan_image_folder(tmp_path / "d")
    assert [s.path for s in folder.samples] == ["fake/img_00.png", "real/a.png"]


def test_an_unreadable_class_folder_is_named(tmp_path: Path, monkeypatch):
    import os

    root = make_image_folder(tmp_path / "d", per_class=2)
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("fake"):
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(FeaturekitError, match=r"the class folder fake/ \('fake'\) has none. Not taken there: 1 cannot "
                                              r"list the folder: Permission denied \(e.g. fake/\)"):
        scan_image_folder(root)


def test_names_that_are_not_utf8_are_listed_escaped(tmp_path: Path):
    import os

    root = make_image_folder(tmp_path / "d", per_class=2)
    source = (root / "real" / "img_00.png").read_bytes()
    with open(os.fsencode(root / "real") + b"/caf\xe9.png", "wb") as handle:
        handle.write(source)
    os.mkdir(os.fsencode(root / "fake") + b"/dossier\xff")
    folder = scan_image_folder(root)
    assert len(folder.samples) == 4
    assert folder.unsupported == [("fake/dossier\\xff", "folder name is not valid UTF-8 (rename the folder)"),
                                  ("real/caf\\xe9.png", "file name is not valid UTF-8 (rename the file)")]
    folder.fingerprint()  # every stored path encodes


def test_unreadable_files_are_listed_with_the_reason_the_decoder_gives(tmp_path: Path, monkeypatch):
    import errno

    import featurekit.data as data

    root = make_image_folder(tmp_path / "d", per_class=2)
    real_hash = data.file_sha256

    def sha256(path, *args):
        if Path(path).name == "img_01.png" and "fake" in str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_hash(path, *args)

    monkeypatch.setattr(data, "file_sha256", sha256)
    folder = scan_image_folder(root)
    assert "fake/img_01.png" not in [s.path for s in folder.samples] and len(folder.samples) == 3
    assert folder.unsupported == [("fake/img_01.png", "cannot read the file: permission denied")]


def test_printable_path_escapes_undecodable_bytes_and_control_characters():
    import os

    from featurekit.data import printable_path

    assert printable_path(os.fsdecode(b"real/caf\xe9.jpg")) == "real/caf\\xe9.jpg"
    assert printable_path("real/a\nb.jpg") == "real/a\\nb.jpg"
    assert printable_path("real/café.jpg") == "real/café.jpg"


@pytest.mark.parametrize("fractions", [(float("nan"),) * 3, (0.7, float("nan"), 0.3), (0.7, 0.15, float("inf"))])
def test_split_fractions_that_are_not_finite_are_refused(tmp_path: Path, fractions):
    make_image_folder(tmp_path / "d", per_class=2)
    with pytest.raises(FeaturekitError, match="three non-negative numbers"):
        scan_image_folder(tmp_path / "d", split_fractions=fractions)
