"""Builders of the keras.applications backbones: VGG16, InceptionV3 and MobileNet v1 (0.25), without tops.

Each spec (`featurekit/backbones/catalog.py`) carries the preprocessing its ImageNet weights were trained with
(VGG16: "caffe", BGR with the ImageNet mean subtracted; InceptionV3 and MobileNet: "tf", scaled to [-1, 1]).
The original study fed VGG16 and InceptionV3 `x / 255`, which puts their inputs far outside what the weights
expect. Licences and labels of the weights themselves live in the records of `featurekit/backbones/weights.py`.
"""

from __future__ import annotations

import warnings

import keras

MOBILENET_ALPHA = 0.25


def build_vgg16(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    return keras.applications.VGG16(include_top=False, weights=weights, input_shape=input_shape)


def build_inceptionv3(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    return keras.applications.InceptionV3(include_top=False, weights=weights, input_shape=input_shape)


def mixed10_pooled_branch(model: keras.Model) -> keras.layers.Layer:
    """The pooling layer that opens the pooled branch of InceptionV3's last block (mixed10).

    Found by the graph, not by name: Keras names it `average_pooling2d_N` with N counted across the whole
    session. It is the one pooling layer whose input is mixed9's output.
    """
    mixed9 = model.get_layer("mixed9").output
    pools = [layer for layer in model.layers
             if isinstance(layer, (keras.layers.AveragePooling2D, keras.layers.MaxPooling2D))
             and layer.input is mixed9]
    if len(pools) != 1:
        raise RuntimeError(f"expected one pooling layer fed by mixed9 in {model.name}, found {len(pools)}: "
                           "keras.applications.InceptionV3 has changed")
    return pools[0]


def build_inceptionv3_tf_2015_12_05(input_shape: tuple[int, int, int], weights: None = None) -> keras.Model:
    """InceptionV3 as in Google's 2015-12-05 graph: Keras' network with mixed10's branch pool max-pooling.

    In the original graph (the network of the Inception Score and FID) the pooled branch of the last block
    uses a 3x3 max pool; Keras' builder averages there. Every other layer is Keras' own, with the same
    name and configuration, so weight files load into it exactly as into Keras' model.
    """
    standard = keras.applications.InceptionV3(include_top=False, weights=None, input_shape=input_shape)
    target = mixed10_pooled_branch(standard)

    def clone_layer(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer is target:
            return keras.layers.MaxPooling2D(pool_size=layer.pool_size, strides=layer.strides,
                                             padding=layer.padding, data_format=layer.data_format,
                                             name="mixed10_branch_pool_max")
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(standard, clone_function=clone_layer)


def build_mobilenet(input_shape: tuple[int, int, int], weights: str | None) -> keras.Model:
    with warnings.catch_warnings():
        # Keras warns that its ImageNet file was trained at 224 whenever another size is asked for; running
        # a frozen backbone at the images' own size is deliberate here (the size is recorded in the cache).
        warnings.filterwarnings("ignore", message=r"`input_shape` is undefined or non-square")
        return keras.applications.MobileNet(input_shape=input_shape, alpha=MOBILENET_ALPHA, include_top=False,
                                            weights=weights)
