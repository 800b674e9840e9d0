"""Image folders -> samples: relative path, label, split and content hash of every image.

Two layouts are understood:

- ``DIR/<class>/...``: splits come from a hash of each file's relative path, so adding files never
  moves an existing file to another split;
- ``DIR/{train,valid,test}/<class>/...`` (the Kaggle "140k Real and Fake Faces" layout): splits are kept.

Decoding lives here too (Pillow: grayscale, RGBA, CMYK, palette and GIF frames all become RGB), so the
same rules serve extraction, training and prediction. No TensorFlow in this module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featurekit.errors import FeaturekitError
from featurekit.hashing import file_sha256

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}
DEFAULT_SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
# With classes real/fake the generated images are what a forensic tool detects: label 1.
POSITIVE_CLASS_NAMES = ("fake",)


@dataclass(frozen=True)
class Sample:
    """One image of a data folder."""

    path: str  # relative to the data folder, POSIX separators
    label: int
    split: str
    sha256: str


@dataclass
class ImageFolder:
    """Everything a scan of a data folder found."""

    root: Path
    layout: str  # "class-folders" or "split-folders"
    class_names: tuple[str, ...]
    samples: list[Sample]
    unsupported: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    def fingerprint(self) -> str:
        """sha256 over (path, label, split, sha256) of every sample: the identity of the image set."""
        digest = hashlib.sha256()
        for s in self.samples:
            digest.update(f"{s.path}\t{s.label}\t{s.split}\t{s.sha256}\n".encode())
        return digest.hexdigest()

    def split_counts(self) -> dict[str, dict[str, int]]:
        counts = {split: {name: 0 for name in self.class_names} for split in SPLITS}
        for s in self.samples:
            counts[s.split][self.class_names[s.label]] += 1
        return counts


def hash_split(relative_path: str, fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS) -> str:
    """Deterministic split of one file from a hash of its relative path.

    Each file's split depends on its own path alone, so adding or removing other files never moves it.
    """
    _check_fractions(fractions)
    value = int.from_bytes(hashlib.sha256(relative_path.encode("utf-8")).digest()[:8], "big") / 2**64
    if value < fractions[0]:
        return "train"
    if value < fractions[0] + fractions[1]:
        return "valid"
    return "test"


def _check_fractions(fractions: tuple[float, ...]) -> None:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise FeaturekitError(
            "Split fractions must be three non-negative numbers (train, valid, test) that sum to 1.",
            received=f"split fractions {tuple(fractions)}",
            fix="Use e.g. --split 0.7,0.15,0.15.",
        )


def order_class_names(names: list[str]) -> tuple[str, ...]:
    """Class names in label order: sorted, with a known positive class (`fake`) last, i.e. label 1."""
    ordered = sorted(names)
    for positive in POSITIVE_CLASS_NAMES:
        if positive in ordered and len(ordered) == 2:
            ordered.remove(positive)
            ordered.append(positive)
    return tuple(ordered)


def _visible_children(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if not p.name.startswith("."))


def _class_dirs(directory: Path) -> list[Path]:
    return [p for p in _visible_children(directory) if p.is_dir()]


def _files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts))


def scan_image_folder(
    root: str | Path,
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
) -> ImageFolder:
    """List the images of a data folder with labels, splits and content hashes.

    Args:
        root: The data folder, in either layout of this module's docstring.
        split_fractions: train/valid/test fractions for the class-folder layout.

    Returns:
        An ImageFolder whose samples are sorted by relative path. Files whose suffix is not an image
        suffix are listed in `unsupported`; files that do not decode are found later, at decode time.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise FeaturekitError(
            "The data folder does not exist.",
            received=f"--data {root}",
            fix="Pass a folder laid out as DIR/<class>/*.jpg or DIR/{train,valid,test}/<class>/*.jpg.",
        )
    if not root.is_dir():
        raise FeaturekitError("The data path is a file, not a folder.", received=f"--data {root}",
                              fix="Pass the folder that holds one subfolder per class.")
    _check_fractions(split_fractions)

    top = _class_dirs(root)
    split_dirs = {SPLIT_ALIASES[p.name.lower()]: p for p in top if p.name.lower() in SPLIT_ALIASES}
    if split_dirs and len(split_dirs) == len(top):
        layout = "split-folders"
        groups = [(split, class_dir) for split, split_dir in sorted(split_dirs.items()) for class_dir in _class_dirs(split_dir)]
    else:
        layout = "class-folders"
        groups = [(None, class_dir) for class_dir in top]

    class_names = order_class_names(sorted({class_dir.name for _, class_dir in groups}))
    if len(class_names) != 2:
        found = ", ".join(class_names) or "none"
        raise FeaturekitError(
            f"featurekit's probes are binary: the data folder needs exactly two class folders, found {len(class_names)} ({found}).",
            received=f"--data {root}",
            fix="Lay the images out as DIR/real/*.jpg and DIR/fake/*.jpg (or DIR/{train,valid,test}/{real,fake}/).",
        )

    samples: list[Sample] = []
    unsupported: list[tuple[str, str]] = []
    for split, class_dir in groups:
        label = class_names.index(class_dir.name)
        for file in _files_under(class_dir):
            relative = file.relative_to(root).as_posix()
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                unsupported.append((relative, f"unsupported file type {file.suffix or '(no suffix)'}"))
                continue
            assigned = split or hash_split(relative, split_fractions)
            samples.append(Sample(relative, label, assigned, file_sha256(file)))
    samples.sort(key=lambda s: s.path)
    if not samples:
        raise FeaturekitError(
            f"The data folder has no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders.",
            received=f"--data {root}",
            fix="Put the images in one subfolder per class, e.g. DIR/real/ and DIR/fake/.",
        )
    present = {s.label for s in samples}
    if len(present) < 2:
        only = class_names[present.pop()]
        raise FeaturekitError(
            f"Only one class has images: {only!r}.",
            received=f"--data {root}",
            fix="Both class folders need images.",
        )
    return ImageFolder(root, layout, class_names, samples, unsupported)


class ImageDecodeError(ValueError):
    """An image file that Pillow cannot decode (corrupt, truncated, empty, not an image)."""


def load_image(path: str | Path, image_size: int) -> np.ndarray:
    """Decode one file to RGB uint8 of shape (image_size, image_size, 3).

    Grayscale, RGBA, CMYK and palette images become RGB; animated GIFs give their first frame.
    Resizing is Pillow's bilinear filter, which antialiases when shrinking.

    Raises:
        ImageDecodeError: the file is empty, truncated, corrupt or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageDecodeError("empty file (0 bytes)")
        with Image.open(path) as image:
            image.seek(0)
            image.load()  # forces a full decode: truncated files fail here, not later
            rgb = image.convert("RGB")
        if rgb.size != (image_size, image_size):
            rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.asarray(rgb, dtype=np.uint8)
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as error:
        raise ImageDecodeError("not an image Pillow can identify") from error
    except (OSError, ValueError, SyntaxError) as error:  # Pillow signals truncation/corruption with these
        raise ImageDecodeError(f"corrupt or truncated image ({error})") from error
