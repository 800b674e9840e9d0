"""Robustness views: degraded copies of each image (JPEG, Gaussian blur, rescaling), seeded per image.

A view is written as steps joined by "+", applied in that order, with an optional "@SEED":

    jpeg:Q          JPEG re-compression at quality Q (1-100; Pillow, its default 4:2:0 chroma subsampling)
    jpeg:Q1-Q2      a quality drawn per image, uniformly from Q1..Q2 (whole numbers)
    blur:SIGMA      Gaussian blur of standard deviation SIGMA pixels (> 0; scipy.ndimage.gaussian_filter
                    per channel, edges reflected, as CNNDetection blurs)
    blur:S1-S2      a sigma drawn per image, uniformly from [S1, S2] (S1 may be 0: no blur)
    resize:F        rescale by F (0 < F <= 4, Pillow bilinear), after which the backbone's own resize
                    brings the image to its input size: resize:0.5 halves the resolution, then the
                    loader scales it back (CNNDetection-style "resize by F, then the network's resize")
    resize:F1-F2    a factor drawn per image from [F1, F2]
    none            the clean image (no view)

e.g. ``jpeg:50``, ``blur:1``, ``jpeg:50+blur:1`` (JPEG first, then blur), ``jpeg:30-100@7``.
CNNDetection's robustness protocol (Wang et al. 2020) is JPEG quality 30-100 and blur sigma 0-3.

Order of operations: the file is decoded at its stored size (upright 8-bit RGB, `featurekit.data.decode_rgb`),
the view's steps run on that image, and only then is it resized to the backbone's input size (Pillow
bilinear, skipped when the size already fits). A view therefore degrades the image as a platform would,
not the network's input.

Randomness: every image draws from its own generator, seeded from the view's canonical text (which carries
its seed) and the image's path relative to the data folder. The result never depends on which decode
thread ran first, on the batch size or on resuming; the same view and seed give the same cache. Fixed views
(`jpeg:50`, `blur:1`) use no randomness at all, and their canonical text has no seed.

The canonical text (`View.name`) is part of a cache's identity (attribute `view`) and its file-name form
(`View.slug`) of the default cache name (``...-view-jpeg50.h5``).
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from featurekit.parameters import MAX_PIXELS
from featurekit.data import ImageDecodeError, decode_rgb, resize_rgb
from featurekit.errors import FeaturekitError, given


@dataclass(frozen=True)
class Degradation:
    """One kind of view step, as data: its bounds, how a value is drawn, and how it degrades an image.

    Adding a kind of view is one entry in DEGRADATIONS below; parsing, naming, drawing and applying read it.
    """

    kind: str
    grammar: str  # how a step is written, for the grammar in messages: "jpeg:Q (quality 1-100)"
    meaning: str  # the bounds in words, for the grammar and for refusals
    within_bounds: Callable[[float, float, bool], bool]  # (low, high, is a range) -> allowed
    apply: Callable[[Any, float], Any]  # (RGB Pillow image, value) -> RGB Pillow image
    whole_numbers: bool = False  # values are whole numbers, and a range draws its two ends too
    scales_by: bool = False  # the value multiplies the image's width and height


def _jpeg(image: Any, quality: float) -> Any:
    from PIL import Image

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    with Image.open(buffer) as degraded:  # Image.open reads from the start; convert decodes it all
        return degraded.convert("RGB")


def _blur(image: Any, sigma: float) -> Any:
    from PIL import Image
    from scipy.ndimage import gaussian_filter

    pixels = np.asarray(image, dtype=np.float32)
    blurred = gaussian_filter(pixels, sigma=(sigma, sigma, 0), mode="reflect")
    return Image.fromarray(np.clip(np.rint(blurred), 0, 255).astype(np.uint8), mode="RGB")


def _resize(image: Any, factor: float) -> Any:
    from PIL import Image

    size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
    return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR)


DEGRADATIONS: dict[str, Degradation] = {entry.kind: entry for entry in (
    Degradation("jpeg", "jpeg:Q (quality 1-100)", "a JPEG quality, a whole number from 1 to 100",
                lambda low, high, ranged: 1 <= low and high <= 100, _jpeg, whole_numbers=True),
    Degradation("blur", "blur:SIGMA (> 0)", "a Gaussian sigma in pixels, above 0 and at most 64 (a range may "
                "start at 0)", lambda low, high, ranged: (low >= 0 if ranged else low > 0) and high <= 64, _blur),
    Degradation("resize", "resize:F (0 < F <= 4)", "a scale factor above 0 and at most 4",
                lambda low, high, ranged: low > 0 and high <= 4, _resize, scales_by=True),
)}
# A chain longer than this is a typo or an attack (`resize:4` five times asked for 1,024 times the pixels).
MAX_VIEW_STEPS = 8
# The resize steps of one view together may enlarge an image at most this much in width and height.
MAX_VIEW_ENLARGEMENT = 4.0
NO_VIEW = ("none", "clean")
VIEW_GRAMMAR = (f"{', '.join(entry.grammar for entry in DEGRADATIONS.values())}, each also as a range LOW-HIGH "
                "drawn per image (jpeg:30-100, blur:0-3), joined by + and applied in order (jpeg:50+blur:1), "
                f"at most {MAX_VIEW_STEPS} steps enlarging at most {MAX_VIEW_ENLARGEMENT:g}x in all, "
                "optionally @SEED for ranges (jpeg:30-100@7); or none for the clean images")
_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_STEP = re.compile(rf"(?P<kind>[a-z]+):(?P<low>{_NUMBER})(?:-(?P<high>{_NUMBER}))?")


@dataclass(frozen=True)
class ViewStep:
    """One degradation: its kind and a fixed value (low == high) or a range drawn per image."""

    kind: str
    low: float
    high: float

    @property
    def is_random(self) -> bool:
        return self.high != self.low

    def text(self, after_kind: str = ":", to: str = "-") -> str:
        """`jpeg:50`, `jpeg:30-100`; with other separators the file-name form (`jpeg30to100`)."""
        return f"{self.kind}{after_kind}{self.low:g}" + (f"{to}{self.high:g}" if self.is_random else "")

    def value(self, rng: np.random.Generator) -> float:
        """The fixed value, or one drawn for this image (whole-number kinds include both ends)."""
        if not self.is_random:
            return self.low
        if DEGRADATIONS[self.kind].whole_numbers:
            return float(rng.integers(int(self.low), int(self.high) + 1))
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class View:
    """A chain of degradations applied in order, with the seed of its ranges."""

    steps: tuple[ViewStep, ...]
    seed: int = 0

    @property
    def is_random(self) -> bool:
        return any(step.is_random for step in self.steps)

    @property
    def name(self) -> str:
        """Canonical text, recorded in the cache: `jpeg:50+blur:1`, or with its seed when it draws `jpeg:30-100@0`."""
        text = "+".join(step.text() for step in self.steps)
        return f"{text}@{self.seed}" if self.is_random else text

    @property
    def slug(self) -> str:
        """The name as a file-name part: `jpeg50-blur1`, `jpeg30to100-s0`, `blur0.5`."""
        return "-".join(step.text("", "to") for step in self.steps) + (f"-s{self.seed}" if self.is_random else "")

    def apply(self, image: Any, key: str, max_pixels: int | None = MAX_PIXELS) -> Any:
        """The degraded copy of an RGB Pillow image; `key` (its relative path) seeds the draws.

        Raises:
            ImageDecodeError: a resize step would make the image larger than `max_pixels` (the file is then
                skipped with that reason, like a file too large to decode).
        """
        # The image's own generator: a function of this view (with its seed) and the image's key only.
        rng = keyed_rng(f"{self.name}\0{key}")
        for step in self.steps:
            value = step.value(rng)
            entry = DEGRADATIONS[step.kind]
            if entry.scales_by and max_pixels is not None:
                pixels = round(image.width * value) * round(image.height * value)
                if pixels > max_pixels:
                    raise ImageDecodeError(f"the view {self.name} would enlarge the image to {pixels:,} pixels, more "
                                           f"than `max_pixels` {max_pixels:,}")
            image = entry.apply(image, value)
        return image

    def __str__(self) -> str:
        return self.name


def keyed_rng(key: str) -> np.random.Generator:
    """A generator that is a function of the text `key` alone (its sha256): the same draws in every process, run
    and thread, whatever else was drawn before (any file name, even one that is not UTF-8)."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def _refuse(text: Any, problem: str) -> FeaturekitError:
    return FeaturekitError(f"Cannot read the view {text!r}: {problem}.", received=given("view", text),
                           fix=f"Write a view as {VIEW_GRAMMAR}.")


def parse_view(text: str | View | None) -> View | None:
    """A view from its text (None for the clean images: `none`, `clean` or None).

    Raises:
        FeaturekitError: naming what is wrong, with the grammar.
    """
    if text is None or isinstance(text, View):
        return text
    if not isinstance(text, str):
        raise _refuse(text, "a view is a string")
    body = text.strip().lower()
    if body in NO_VIEW:
        return None
    body, seeded, seed_text = body.partition("@")
    if seeded and (not seed_text.isdigit() or int(seed_text) >= 2**32):
        raise _refuse(text, f"the seed after @ must be a whole number below 2**32, not {seed_text!r}")
    seed = int(seed_text) if seeded else 0
    if not body:
        raise _refuse(text, "it names no degradation")
    parts = body.split("+")
    if len(parts) > MAX_VIEW_STEPS:
        raise _refuse(text, f"it chains {len(parts)} steps, more than {MAX_VIEW_STEPS}")
    view = View(tuple(_parse_step(text, part.strip()) for part in parts), seed)
    enlargement = float(np.prod([step.high for step in view.steps if DEGRADATIONS[step.kind].scales_by]))
    if enlargement > MAX_VIEW_ENLARGEMENT:
        raise _refuse(text, f"its resize steps enlarge images up to {enlargement:g}x, more than "
                      f"{MAX_VIEW_ENLARGEMENT:g}x in all")
    return view if view.is_random else View(view.steps)  # a fixed view draws nothing: its seed means nothing


def _parse_step(text: str, part: str) -> ViewStep:
    """One `KIND:VALUE` or `KIND:LOW-HIGH` step of the view `text`, checked against its registry entry."""
    match = _STEP.fullmatch(part)
    kind = match["kind"] if match else part.split(":", 1)[0].strip()
    if kind and kind not in DEGRADATIONS:
        raise _refuse(text, f"unknown degradation {kind!r} (known: {', '.join(DEGRADATIONS)})")
    if not match:
        raise _refuse(text, f"{part!r} is not KIND:VALUE or KIND:LOW-HIGH")
    entry = DEGRADATIONS[kind]
    low = float(match["low"])
    ranged = match["high"] is not None
    high = float(match["high"]) if ranged else low
    whole = not entry.whole_numbers or (low.is_integer() and high.is_integer())
    if not (whole and entry.within_bounds(low, high, ranged)):
        raise _refuse(text, f"{kind} takes {entry.meaning}")
    if ranged and high <= low:
        raise _refuse(text, f"the range {match['low']}-{match['high']} of {kind} must rise (LOW-HIGH, LOW < HIGH)")
    return ViewStep(kind, low, high)


def parse_views(texts: str | list[str] | tuple[str, ...] | None) -> list[View | None]:
    """Views from a list of texts (or one), duplicates removed in order; None in the list is the clean images.

    An empty list means no view was asked for: `[]`.
    """
    if texts is None:
        return []
    views: dict[str, View | None] = {}
    for view in map(parse_view, [texts] if isinstance(texts, (str, View)) else texts):
        views.setdefault(view_name(view), view)
    return list(views.values())


def view_name(view: View | None) -> str:
    """What a cache records as its `view`: the canonical text, "" for the clean images."""
    return view.name if view is not None else ""


@dataclass(frozen=True)
class ViewDecoder:
    """A per-image decoder for `featurekit.pipeline.image_batches`: decode, degrade, then resize.

    It has the signature of `featurekit.data.load_image` (`decoder(path, image_size, max_pixels=...)`), keeps
    nothing but plain data (so an engine may ship it to other processes) and is safe to call from many threads.

    Attributes:
        view: The view to apply, or None for the clean image.
        root: The data folder; an image's path relative to it seeds its draws.
        stored_size: When set, images must be stored at this square size (hand-made features that must not
            see resampled pixels); another size is refused, naming the `image_size` option that allows it.
        feature: Name of the feature that asks for `stored_size`, for the message.
    """

    view: View | None = None
    root: str = ""
    stored_size: int | None = None
    feature: str = ""

    def key(self, path: str | Path) -> str:
        """The image's path relative to the data folder (absolute when it lies elsewhere), POSIX separators."""
        path = Path(path)
        return (path.relative_to(self.root) if self.root and path.is_relative_to(self.root) else path).as_posix()

    def size_error(self, key: str, size: tuple[int, int]) -> FeaturekitError:
        """The refusal of an image not stored at `stored_size`."""
        width, height = size
        return FeaturekitError(
            f"{self.feature or 'This feature'} is computed on the pixels as stored, at {self.stored_size}x"
            f"{self.stored_size}, without resampling (resampling smooths away the pixel noise it measures), "
            f"but {key} is {width}x{height}.",
            received=f"image {key}",
            fix=f"Pass `image_size` {width} if every image is {width}x{width}, or "
            f"`image_size` {self.stored_size} to resample every image to that size (recorded in the "
            "cache).")

    def __call__(self, path: str | Path, image_size: int, *, max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
        image = decode_rgb(path, max_pixels=max_pixels)
        if self.stored_size is not None and image.size != (self.stored_size, self.stored_size):
            raise self.size_error(self.key(path), image.size)
        if self.view is not None:
            image = self.view.apply(image, self.key(path), max_pixels)
        return resize_rgb(image, image_size)
