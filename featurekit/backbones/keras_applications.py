"""Backbones from keras.applications: VGG16 and InceptionV3, without their classification tops.

Each spec carries the preprocessing its ImageNet weights were trained with (VGG16: "caffe", BGR with the
ImageNet mean subtracted; InceptionV3: "tf", scaled to [-1, 1]). The original study fed both `x / 255`,
which puts their inputs far outside what the weights expect.
"""

from __future__ import annotations

import keras

from featurekit.backbones import BackboneSpec, register_backbone

# Licences of the files Keras downloads, as stated by keras-team/keras-applications (README, "Licensing").
# Both were trained on ImageNet, whose images carry their own (non-commercial research) terms of access.
VGG16_IMAGENET_LICENCE = "CC BY 4.0 (VGG16 weights released by Oxford VGG, ported by Keras; trained on ImageNet)"
INCEPTIONV3_IMAGENET_LICENCE = "MIT (InceptionV3 weights trained and released by the Keras team on ImageNet)"


def _build_vgg16(input_shape: tuple[int, int, int], weights: str | None, seed: int) -> keras.Model:
    # Seeding for weights=None happens in the loader, before this call.
    return keras.applications.VGG16(include_top=False, weights=weights, input_shape=input_shape)


def _build_inceptionv3(input_shape: tuple[int, int, int], weights: str | None, seed: int) -> keras.Model:
    return keras.applications.InceptionV3(include_top=False, weights=weights, input_shape=input_shape)


register_backbone(
    BackboneSpec(
        name="vgg16",
        builder=_build_vgg16,
        input_size=224,
        preprocessing="caffe",
        pretrained=("imagenet",),
        weights_licence=VGG16_IMAGENET_LICENCE,
        description="VGG16 (Simonyan & Zisserman 2014), 14.7M params, 7x7x512 at 224 (block5_pool)",
        min_input_size=32,
        # imagenet_file: what Keras downloads for weights="imagenet", looking in ~/.keras/models first.
        notes={
            "imagenet_file": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            # The offline substitute in ../shared/weights (see its README), named in download errors.
            "near_imagenet_file": "vgg16_near_imagenet_notop.weights.h5",
        },
    )
)

register_backbone(
    BackboneSpec(
        name="inceptionv3",
        builder=_build_inceptionv3,
        input_size=299,
        preprocessing="tf",
        pretrained=("imagenet",),
        weights_licence=INCEPTIONV3_IMAGENET_LICENCE,
        description="InceptionV3 (Szegedy et al. 2016), 21.8M params, 8x8x2048 at 299 (mixed10)",
        min_input_size=75,
        notes={
            "imagenet_file": "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "near_imagenet_file": "inception_v3_near_imagenet_notop.weights.h5",
        },
    )
)
