"""Our own GoogLeNet-style network (Szegedy et al. 2015, "Going deeper with convolutions"), as a Keras model class.

The network is the GoogLeNet feature extractor: stem, inception modules 3a-5b, no auxiliary heads, no
pooling and no classifier, so extraction can tap any block and pool it as it likes. Two
departures from the paper, both because the original study's copy of this network collapsed in training:
batch normalisation after every convolution (`batch_norm=True`, the default; Ioffe & Szegedy 2015) and He
initialisation, which keeps activations at a sane scale through 57 ReLU layers.

Parameter count (batch_norm=True, width=1.0, any input size): 5,995,392 in all, of which 5,980,832 are
trainable and 14,560 are batch-norm moving statistics. Without batch norm (convolutions with biases) it is
5,973,552. The paper's "about 6.8M" includes its 1000-class classifier (1024 x 1000 + 1000 = 1,025,000);
its convolutional part is this 6.0M. We keep the paper's channel widths rather than inflating them to a
round 6.5M, so features stay comparable with GoogLeNet results; `width` scales every layer's channel
count for experiments (params grow about as width^2), but only width=1.0 is registered.

The class uses Keras' functional-constructor pattern (as KerasHub backbones do): `__init__` wires the
graph from `keras.Input` to the last block and hands it to `keras.Model.__init__`, so every layer is
reachable with `get_layer("inception_4e")`, and `get_config` returns only the constructor arguments,
so `.keras` files round-trip with `safe_mode=True`.
"""

from __future__ import annotations

from typing import Any

import keras

# GoogLeNet Table 1: per module, the filters of the 1x1 branch, the 3x3 reduce and 3x3, the 5x5 reduce and
# 5x5, and the 1x1 projection after the 3x3 max pool. Output channels = 1x1 + 3x3 + 5x5 + pool_proj.
INCEPTION_MODULES: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),  # 256 channels, 28x28 at 224 input
    "3b": (128, 128, 192, 32, 96, 64),  # 480
    "4a": (192, 96, 208, 16, 48, 64),  # 512, 14x14
    "4b": (160, 112, 224, 24, 64, 64),  # 512
    "4c": (128, 128, 256, 24, 64, 64),  # 512
    "4d": (112, 144, 288, 32, 64, 64),  # 528
    "4e": (256, 160, 320, 32, 128, 128),  # 832
    "5a": (256, 160, 320, 32, 128, 128),  # 832, 7x7
    "5b": (384, 192, 384, 48, 128, 128),  # 1024
}
# A stride-2 max pool precedes these modules (the stem already ends with one before 3a).
_POOL_BEFORE = {"4a": "pool3", "5a": "pool4"}


def _conv_unit(x, filters: int, kernel_size: int, name: str, batch_norm: bool, strides: int = 1):
    """Conv -> (batch norm) -> ReLU, with layers named `name`, `name_bn`, `name_relu`."""
    # The bias is redundant before batch norm, whose beta plays its role.
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=not batch_norm,
                            kernel_initializer="he_normal", name=name)(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def _inception_module(x, name: str, filters: tuple[int, ...], batch_norm: bool):
    """Four parallel branches (1x1 / 1x1->3x3 / 1x1->5x5 / maxpool->1x1) concatenated as layer `name`."""
    f1, f3r, f3, f5r, f5, fp = filters
    b1 = _conv_unit(x, f1, 1, f"{name}_1x1", batch_norm)
    b3 = _conv_unit(x, f3r, 1, f"{name}_3x3_reduce", batch_norm)
    b3 = _conv_unit(b3, f3, 3, f"{name}_3x3", batch_norm)
    b5 = _conv_unit(x, f5r, 1, f"{name}_5x5_reduce", batch_norm)
    b5 = _conv_unit(b5, f5, 5, f"{name}_5x5", batch_norm)
    bp = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    bp = _conv_unit(bp, fp, 1, f"{name}_pool_proj", batch_norm)
    return keras.layers.Concatenate(axis=-1, name=name)([b1, b3, b5, bp])


@keras.saving.register_keras_serializable(package="featurekit")
class InceptionV1(keras.Model):
    """GoogLeNet feature extractor: stem and inception modules 3a-5b, no pooling and no top.

    The output is the feature map of `inception_5b`: (input_size / 32)^2 positions x 1024 channels
    (7 x 7 x 1024 at 224). Taps for intermediate features: `stem_pool2`, `inception_3a` ... `inception_5b`,
    `pool3`, `pool4`, and every convolution (`inception_4c_3x3`, ...).

    Args:
        input_size: Square input size in pixels; the input is preprocessed RGB ("tf" mode, [-1, 1]).
        batch_norm: Batch normalisation after each convolution. False gives the paper's (and the original
            study's) plain ReLU network, which trains poorly from scratch at this depth.
        width: Multiplier on every layer's channel count (1.0 = GoogLeNet).
        name: Model name.
        **kwargs: Passed to keras.Model (e.g. `trainable`, `dtype`).
    """

    def __init__(self, input_size: int = 224, batch_norm: bool = True, width: float = 1.0, name: str = "inception_v1",
                 **kwargs: Any):
        def ch(filters: int) -> int:
            return max(1, int(round(filters * width)))

        inputs = keras.Input(shape=(input_size, input_size, 3), name="image")
        # Stem: 7x7/2 conv, 3x3/2 max pool, 1x1 conv, 3x3 conv, 3x3/2 max pool (224 -> 28).
        x = _conv_unit(inputs, ch(64), 7, "stem_conv1", batch_norm, strides=2)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool1")(x)
        x = _conv_unit(x, ch(64), 1, "stem_conv2_reduce", batch_norm)
        x = _conv_unit(x, ch(192), 3, "stem_conv2", batch_norm)
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool2")(x)
        for module, filters in INCEPTION_MODULES.items():
            if module in _POOL_BEFORE:
                x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=_POOL_BEFORE[module])(x)
            x = _inception_module(x, f"inception_{module}", tuple(ch(f) for f in filters), batch_norm)
        super().__init__(inputs=inputs, outputs=x, name=name, **kwargs)
        # Stored after the functional init (Keras tracks attributes only once the Model is set up).
        self.input_size = input_size
        self.batch_norm = batch_norm
        self.width = width

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments: enough to rebuild the architecture (weights are saved separately); Keras'
        own `from_config` passes them back to the constructor."""
        return {"input_size": self.input_size, "batch_norm": self.batch_norm, "width": self.width, "name": self.name,
                "trainable": self.trainable}


def build_inceptionv1(input_shape: tuple[int, int, int], weights: None = None) -> keras.Model:
    # No downloadable weights exist ("imagenet" is refused before we get here); the loader loads files.
    return InceptionV1(input_size=input_shape[0], batch_norm=True)
