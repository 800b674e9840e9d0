"""Hand-made forensic features that play the part of backbones: no weights, no Keras, no GPU.

Each feature is a frozen `HandmadeSpec`, data like a `BackboneSpec`, so the backbone registry can adopt
them and `extract` can store them in the same cache as CNN embeddings. The interface the extraction
loop uses is one call per batch::

    spec = get_handmade("spam")                   # or get_handmade("spam").with_parameters(threshold=2)
    features = spec.extract(uint8_batch)          # (B, H, W, 3) uint8 RGB -> (B, spec.feature_dim(H)) float32
    cache_attrs["handmade"] = spec.describe(H)    # provenance: name, parameters, code version, dimension

Unlike CNN backbones these features must see the pixels as stored: resampling smooths away the
pixel-level noise SPAM measures and reshapes the high frequencies the spectrum measures. So
`input_size` is the data's own size (256 for the 140k faces) and `resamples` is False: extraction
should decode at the images' own size and refuse (not resize) images of another size unless the user
asks for an explicit image size. There is no preprocessing: the functions take uint8 RGB.

Imports run one way: `features` -> `spec` (the registry entry: variants, request checks, building) ->
`embedder` (the numpy taps, which know nothing of the spec), and `spec`, `spam`, `spectrum` -> `_input` (the
checks of an image batch and of parameter values against each feature's declared table). The
computations themselves are in `featurekit.handmade.spam` and `featurekit.handmade.spectrum`.
"""

from featurekit.handmade.features import HANDMADE_FEATURES, get_handmade, list_handmade
from featurekit.handmade.spec import HandmadeSpec

__all__ = ["HANDMADE_FEATURES", "HandmadeSpec", "get_handmade", "list_handmade"]
