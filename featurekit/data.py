"""Image folders -> samples: relative path, label, split and content hash of every image.

Two layouts are understood:

- ``DIR/<class>/...``: splits come from a hash of each file's relative path, so adding files never
  moves an existing file to another split;
- ``DIR/{train,valid,test}/<class>/...`` (the Kaggle "140k Real and Fake Faces" layout): splits are kept.

Class folders are matched without regard to case (``Real/`` in one split and ``real/`` in another are one
class). With ``real`` and ``fake`` (any case), ``fake`` is the positive class (label 1); with any other pair,
the second in case-insensitive alphabetical order is, and it is recorded as ``positive_class``.

The scan reads through symbolic links wherever they point (splits made of links to a big folder, as DVC
and git-annex lay data out): links to regular files are images like any other, links to folders are entered,
and a folder reached twice (a link loop, or two links to one folder) is entered once. It never reads anything
but regular files. Whatever it does not take (dangling or looping links, FIFOs, unreadable files or folders,
names that are not valid UTF-8, other suffixes) is listed in ``ImageFolder.unsupported`` with the reason,
never dropped silently and never a crash; a folder that yields no images says what was skipped, by reason.

Decoding lives here too (Pillow: grayscale, 16-bit, RGBA, CMYK, palette and GIF frames all become 8-bit RGB,
EXIF orientation applied), so the same rules serve extraction, training and prediction. No TensorFlow here.
"""

from __future__ import annotations

import bisect
import errno
import hashlib
import os
import re
import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from featurekit.errors import FeaturekitError, given
from featurekit.hashing import file_sha256
from featurekit.parameters import MAX_PIXELS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
SPLITS = ("train", "valid", "test")
SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}
DEFAULT_SPLIT_FRACTIONS = (0.70, 0.15, 0.15)
# Largest image decoded, in pixels. 64 megapixels holds every camera photo in common use (50-61 MP sensors)
# and is 1,000 times a 256x256 face; its RGB decode takes 192 MB, so a few decoder threads stay within a
# laptop's memory. A file declaring more (a "decompression bomb": a 20000x20000 PNG is a few kilobytes that
# decode to 1.2 GB) is skipped before a byte of it is decoded. Pillow's own global limit is left alone.


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
    class_names: tuple[str, ...]  # in label order: class_names[1] is the positive class
    samples: list[Sample]
    # (relative path, reason) of everything the scan did not take; paths shown with backslash escapes where
    # the name is not valid UTF-8.
    unsupported: list[tuple[str, str]] = field(default_factory=list)

    @property
    def positive_class(self) -> str:
        """The class that is label 1: what P(positive) and every "p_fake" column are the probability of."""
        return self.class_names[1]

    def fingerprint(self) -> str:
        """sha256 over (path, label, split, sha256) of every sample: the identity of the image set."""
        lines = "".join(f"{s.path}\t{s.label}\t{s.split}\t{s.sha256}\n" for s in self.samples)
        return hashlib.sha256(lines.encode()).hexdigest()

    def split_counts(self) -> dict[str, dict[str, int]]:
        found = Counter((s.split, s.label) for s in self.samples)
        return {split: {name: found[split, label] for label, name in enumerate(self.class_names)} for split in SPLITS}


def hash_split(relative_path: str, fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS) -> str:
    """Deterministic split of one file from a hash of its relative path.

    Each file's split depends on its own path alone, so adding or removing other files never moves it.
    `fractions` are checked by `scan_image_folder`.
    """
    value = int.from_bytes(hashlib.sha256(relative_path.encode("utf-8")).digest()[:8], "big") / 2**64
    return SPLITS[bisect.bisect_right((fractions[0], fractions[0] + fractions[1]), value)]


def _check_fractions(fractions: tuple[float, ...]) -> None:
    if len(fractions) != 3 or not all(f >= 0 for f in fractions) or not abs(sum(fractions) - 1.0) <= 1e-6:
        raise FeaturekitError(
            "Split fractions must be three non-negative numbers (train, valid, test) that sum to 1.",
            received=f"split fractions {tuple(fractions)}",
            fix=f"Use e.g. {given('split_fractions', DEFAULT_SPLIT_FRACTIONS)}.",
        )


def order_class_names(names: list[str]) -> tuple[str, ...]:
    """Class names in label order, the positive class (label 1) last.

    Case does not matter: `fake`/`Fake`/`FAKE` is the positive class and `real`/`Real`/... the negative one;
    any other pair is in case-insensitive alphabetical order, so the second is positive.
    """
    ordered = sorted(names, key=lambda name: (name.casefold(), name))
    # generated images are what a forensic tool detects
    if len(ordered) == 2 and (ordered[0].casefold() == "fake" or ordered[1].casefold() == "real"):
        ordered.reverse()
    return tuple(ordered)


def printable_path(path: str | os.PathLike) -> str:
    """A path as text that can always be shown and stored: bytes that are not UTF-8 become `\\xe9` escapes,
    control characters (a newline in a name) their escapes too."""
    text = os.fsencode(path).decode("utf-8", errors="backslashreplace")
    return _CONTROL.sub(lambda match: repr(match.group())[1:-1], text)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_utf8_name(path: str | os.PathLike) -> bool:
    """Whether a file name is valid UTF-8 (on Linux a name is bytes; Python holds the others as surrogates)."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_READ_PROBLEMS = {PermissionError: "cannot read the file: permission denied",
                  IsADirectoryError: "a folder, not an image file", FileNotFoundError: "the file disappeared"}


def read_problem(error: OSError) -> str:
    """Why a file could not be read, in the words the scan and the decoder both use (so they agree)."""
    known = (text for kind, text in _READ_PROBLEMS.items() if isinstance(error, kind))
    return next(known, f"cannot read the file: {error.strerror or error}")


@dataclass
class _Scan:
    """What one scan of a data folder has seen: the folders entered (by device and inode, so a folder reached
    twice through links, or a link loop, is entered once) and what it did not take, with the reason."""

    root: Path
    entered: set[tuple[int, int]] = field(default_factory=set)
    ignored: list[tuple[str, str]] = field(default_factory=list)

    def relative(self, path: Path) -> str:
        return printable_path(path.relative_to(self.root).as_posix())

    def ignore(self, path: Path, reason: str, folder: bool = False) -> None:
        self.ignored.append((self.relative(path) + ("/" if folder else ""), reason))

    def enter(self, directory: Path) -> list[os.DirEntry] | None:
        """The entries of a folder in sorted order; None when it was entered before or cannot be listed."""
        try:
            info = os.stat(directory)
            key = (info.st_dev, info.st_ino)
            if key in self.entered:
                self.ignore(directory, "folder reached a second time through a symbolic link: entered once",
                            folder=True)
                return None
            self.entered.add(key)
            return _sorted_entries(directory)
        except OSError as error:
            self.ignore(directory, f"cannot list the folder: {error.strerror or error}", folder=True)
            return None

    def files(self, directory: Path) -> Iterator[Path]:
        """Regular files below `directory` in sorted order, through symbolic links to files and folders
        wherever they point (reading through a link is harmless); whatever is not taken goes to `ignored`."""
        for entry in self.enter(directory) or []:
            path, (kind, problem) = Path(entry.path), _classify(entry)
            if not is_utf8_name(entry.name):
                kind = "folder" if entry.is_dir(follow_symlinks=False) else "file"
                self.ignore(path, f"{kind} name is not valid UTF-8 (rename the {kind})")
            elif problem:
                self.ignore(path, problem)
            elif kind == "folder":
                yield from self.files(path)
            else:
                yield path


def _sorted_entries(directory: Path) -> list[os.DirEntry]:
    """The entries of a folder that are not hidden (a dot name), sorted by the bytes of their names."""
    return sorted((entry for entry in os.scandir(directory) if not entry.name.startswith(".")),
                  key=lambda entry: os.fsencode(entry.name))


def _classify(entry: os.DirEntry) -> tuple[str, str | None]:
    """What an entry is, following a symbolic link ("file", "folder", "broken", "other"), and why it is not
    taken (None for a regular file or a folder, wherever a link to it points); an entry that cannot even be
    inspected is "broken", with the reason the decoder would give."""
    link = False
    try:
        link = entry.is_symlink()
        mode = os.stat(entry.path).st_mode if link else entry.stat(follow_symlinks=False).st_mode
    except OSError as error:
        if not link:
            return "broken", read_problem(error)
        if isinstance(error, FileNotFoundError):
            return "broken", f"dangling symbolic link (to {printable_path(os.readlink(entry.path))})"
        return "broken", "symbolic link loop" if error.errno == errno.ELOOP else \
            f"symbolic link that cannot be followed ({error.strerror or error})"
    if stat.S_ISDIR(mode):
        return "folder", None
    if stat.S_ISREG(mode):
        return "file", None
    kind = "symbolic link to something that is not a regular file" if link else "not a regular file"
    return "other", f"{kind} (a FIFO, socket or device): not read"


def _folders(directory: Path, scan: _Scan) -> list[Path]:
    """The subfolders of a data folder (or of a split folder), through symbolic links to folders too."""
    try:
        entries = _sorted_entries(directory)
    except OSError as error:
        raise FeaturekitError(f"The data folder cannot be listed ({error.strerror or error}).",
                              received=given("data", printable_path(directory)),
                              fix="Make the folder readable for this user.") from None
    found = []
    for entry in entries:
        kind, problem = _classify(entry)
        if kind == "folder" and is_utf8_name(entry.name):
            found.append(Path(entry.path))
        elif kind in ("folder", "broken"):  # files beside the class folders are not images of a class
            scan.ignore(Path(entry.path), problem or "folder name is not valid UTF-8 (rename the folder)")
    return found


def _class_groups(root: Path, scan: _Scan) -> tuple[str, list[tuple[str | None, Path]]]:
    """The layout and its (split or None, class folder) pairs."""
    top = _folders(root, scan)
    split_dirs = {SPLIT_ALIASES[p.name.lower()]: p for p in top if p.name.lower() in SPLIT_ALIASES}
    if split_dirs and len(split_dirs) == len(top):
        return "split-folders", [(split, class_dir) for split, split_dir in sorted(split_dirs.items())
                                 for class_dir in _folders(split_dir, scan)]
    return "class-folders", [(None, class_dir) for class_dir in top]


def _class_names(groups: list[tuple[str | None, Path]], root: Path, scan: _Scan) -> tuple[str, ...]:
    """The two class names in label order (case-insensitive: the first spelling in sorted order is shown)."""
    by_name = sorted(groups, key=lambda group: group[1].name, reverse=True)  # the first spelling is written last
    spellings = {class_dir.name.casefold(): class_dir.name for _, class_dir in by_name}
    class_names = order_class_names(list(spellings.values()))
    if len(class_names) != 2:
        raise FeaturekitError(
            f"featurekit's probes are binary: the data folder needs exactly two class folders, found "
            f"{len(class_names)} ({', '.join(class_names) or 'none'}){_skipped_summary(scan.ignored, ' Not taken: ')}.",
            received=given("data", printable_path(root)),
            fix="Lay the images out as DIR/real/*.jpg and DIR/fake/*.jpg (or DIR/{train,valid,test}/{real,fake}/).",
        )
    return class_names


def _skipped_summary(ignored: list[tuple[str, str]], lead: str, examples: int = 3) -> str:
    """`lead` and the entries not taken, counted by reason with the first few of each; "" when none."""
    by_reason: dict[str, list[str]] = {}
    for path, reason in ignored:
        by_reason.setdefault(reason.split(" (to ")[0], []).append(path)
    parts = [f"{len(paths)} {reason} (e.g. {', '.join(paths[:examples])}{', ...' if len(paths) > examples else ''})"
             for reason, paths in sorted(by_reason.items(), key=lambda item: -len(item[1]))]
    return lead + "; ".join(parts) if parts else ""


def _samples(groups, class_names, split_fractions, scan: _Scan) -> list[Sample]:
    """Every image of the class folders with its label, split and content hash, sorted by relative path."""
    label_of = {name.casefold(): label for label, name in enumerate(class_names)}
    samples: list[Sample] = []
    for split, class_dir in groups:
        label = label_of[class_dir.name.casefold()]
        for file in scan.files(class_dir):
            relative = file.relative_to(scan.root).as_posix()
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                scan.ignore(file, f"unsupported file type {printable_path(file.suffix) or '(no suffix)'}")
                continue
            try:
                digest = file_sha256(file)
            except OSError as error:  # unreadable: ignored here, and `load_image` gives predict the same reason
                scan.ignore(file, read_problem(error))
                continue
            samples.append(Sample(relative, label, split or hash_split(relative, split_fractions), digest))
    return sorted(samples, key=lambda s: s.path)


def _check_root(root: Path) -> None:
    if not root.exists():
        raise FeaturekitError(
            "The data folder does not exist.",
            received=given("data", printable_path(root)),
            fix="Pass a folder laid out as DIR/<class>/*.jpg or DIR/{train,valid,test}/<class>/*.jpg.",
        )
    if not root.is_dir():
        raise FeaturekitError("The data path is a file, not a folder.", received=given("data", printable_path(root)),
                              fix="Pass the folder that holds one subfolder per class.")


def _check_both_classes(samples: list[Sample], groups, class_names, root: Path, scan: _Scan) -> None:
    if not samples:
        raise FeaturekitError(
            f"The data folder has no images ({', '.join(IMAGE_SUFFIXES)}) in its class folders."
            f"{_skipped_summary(scan.ignored, ' Skipped: ')}",
            received=given("data", printable_path(root)),
            fix="Put the images in one subfolder per class, e.g. DIR/real/ and DIR/fake/.",
        )
    present = {s.label for s in samples}
    if len(present) < 2:
        missing = class_names[1 - present.pop()]
        folders = [scan.relative(d) + "/" for _, d in groups if d.name.casefold() == missing.casefold()]
        not_taken = [(path, reason) for path, reason in scan.ignored if (path + "/").startswith(tuple(folders))]
        raise FeaturekitError(
            f"Only one class has images: the class folder {', '.join(folders)} ({missing!r}) has none"
            f"{_skipped_summary(not_taken, '. Not taken there: ')}.",
            received=given("data", printable_path(root)),
            fix="Both class folders need images (readable by this user).",
        )


def scan_image_folder(
    root: str | Path,
    split_fractions: tuple[float, float, float] = DEFAULT_SPLIT_FRACTIONS,
) -> ImageFolder:
    """List the images of a data folder with labels, splits and content hashes.

    Args:
        root: The data folder, in either layout of this module's docstring.
        split_fractions: train/valid/test fractions for the class-folder layout.

    Returns:
        An ImageFolder whose samples are sorted by relative path. What the scan did not take (other suffixes,
        dangling links, unreadable files, names that are not UTF-8) is listed in `unsupported` with the
        reason; files that do not decode are found later, at decode time.
    """
    root = Path(root).expanduser()
    _check_root(root)
    _check_fractions(split_fractions)
    scan = _Scan(root)
    layout, groups = _class_groups(root, scan)
    class_names = _class_names(groups, root, scan)
    samples = _samples(groups, class_names, split_fractions, scan)
    _check_both_classes(samples, groups, class_names, root, scan)
    return ImageFolder(root, layout, class_names, samples, sorted(scan.ignored))


class ImageDecodeError(ValueError):
    """An image file that cannot be decoded (corrupt, truncated, empty, unreadable, too large, not an image)."""


def load_image(path: str | Path, image_size: int, *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """Decode one file to RGB uint8 of shape (image_size, image_size, 3).

    Grayscale, 16-bit, RGBA, CMYK and palette images become 8-bit RGB (16-bit values are scaled, 65535 ->
    255); animated GIFs give their first frame; the EXIF orientation is applied, so a photo is seen upright
    as a viewer shows it. Resizing is Pillow's bilinear filter, which antialiases when shrinking.

    Args:
        path: The image file.
        image_size: Square output size.
        max_pixels: Largest width x height decoded (checked from the header, before decoding); None for no
            limit of ours (Pillow's own decompression-bomb limit still holds).

    Raises:
        ImageDecodeError: the file is empty, truncated, corrupt, unreadable, too large or not an image, or
            its file name is not valid UTF-8 (the scan ignores such files too, so extract and predict agree).
    """
    return resize_rgb(decode_rgb(path, max_pixels=max_pixels), image_size)


def decode_rgb(path: str | Path, *, max_pixels: int | None = MAX_PIXELS):
    """Decode one file to an upright 8-bit RGB Pillow image at its stored size (`load_image` without the resize).

    Robustness views (`featurekit.views`) degrade this image before the backbone's resize, as CNNDetection
    degrades the stored image before its own preprocessing; the rules and errors are `load_image`'s.

    Raises:
        ImageDecodeError: as `load_image`.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    _check_max_pixels(max_pixels)
    if not is_utf8_name(os.path.basename(path)):  # the scan ignores such files; their folders may be anything
        raise ImageDecodeError("file name is not valid UTF-8 (rename the file)")
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ImageDecodeError(_READ_PROBLEMS[IsADirectoryError] if stat.S_ISDIR(info.st_mode) else
                                   "not a regular file (a FIFO, socket or device): not read")
        if info.st_size == 0:
            raise ImageDecodeError("empty file (0 bytes)")
        with open(path, "rb") as handle, Image.open(handle) as image:
            width, height = image.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageDecodeError(_too_large(width * height, max_pixels))
            image.seek(0)
            image.load()  # forces a full decode: truncated files fail here, not later
            ImageOps.exif_transpose(image, in_place=True)  # upright as a viewer shows it (photos stored sideways)
            return _to_rgb(image)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as error:
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        raise ImageDecodeError(_too_large(int(pixels.group(1)) if pixels else None, max_pixels)) from error
    except UnidentifiedImageError as error:
        raise ImageDecodeError("not an image Pillow can identify") from error
    except Image.DecompressionBombWarning as error:  # only raised when warnings are turned into errors
        raise ImageDecodeError(f"image too large to decode safely ({error})") from error
    except (OSError, ValueError, SyntaxError, EOFError) as error:  # how Pillow signals corruption
        refused = getattr(error, "errno", None) is not None  # the system refused: permissions, a folder, gone
        raise ImageDecodeError(read_problem(error) if refused else f"corrupt or truncated image ({error})") from error
    except MemoryError as error:
        raise ImageDecodeError("not enough memory to decode this image") from error


def resize_rgb(image, image_size: int) -> np.ndarray:
    """An RGB Pillow image as uint8 (image_size, image_size, 3): Pillow's bilinear filter, untouched when the
    size already fits (so 256 px faces reach a 256 px backbone or a hand-made feature exactly as stored)."""
    from PIL import Image

    if image.size != (image_size, image_size):
        try:
            image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
        except MemoryError as error:
            raise ImageDecodeError("not enough memory to decode this image") from error
    return np.asarray(image, dtype=np.uint8)


def _check_max_pixels(max_pixels: int | None) -> None:
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1):
        raise FeaturekitError("The pixel limit must be a positive whole number of pixels (or None for no limit).",
                              received=given("max_pixels", max_pixels),
                              fix=f"Use e.g. `max_pixels` {MAX_PIXELS}.")


def _too_large(pixels: int | None, max_pixels: int | None) -> str:
    size = f"{pixels:,} pixels" if pixels else "too many pixels"
    if max_pixels is not None and (pixels is None or pixels > max_pixels):
        return (f"image too large to decode safely: {size}, more than `max_pixels` {max_pixels:,} "
                "(raise it to read this file)")
    return f"image too large to decode safely: {size}, more than Pillow's limit (PIL.Image.MAX_IMAGE_PIXELS)"


def _to_rgb(image):
    """8-bit RGB. 16-bit (and 32-bit integer) grayscale is scaled to 0-255; Pillow's convert would clip it."""
    from PIL import Image

    if image.mode.startswith("I"):  # I;16, I;16B, I;16L, I (Pillow's 16-bit PNG modes)
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        image = Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), mode="L")
    return image.convert("RGB")
