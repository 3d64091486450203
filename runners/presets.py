"""Named split points ("presets") from the feature-compression literature.

Each preset maps a short name to a torchvision module path; the cut is the *output* of that
module (for a container such as ``layer1`` the output of its last node). Shapes at 224×224 are
listed in docs/splits.md and checked by tests/test_split.py.
"""

from __future__ import annotations

from vcfc.picture import INPUT_LAYER

_VGG16 = {
    # Hu et al. / Chen et al.: "convN" = output of conv block N (last conv+ReLU before the
    # pool), "poolN" = output of the max-pool that closes block N.
    "conv1": "features.3", "pool1": "features.4",
    "conv2": "features.8", "pool2": "features.9",
    "conv3": "features.15", "pool3": "features.16",
    "conv4": "features.22", "pool4": "features.23",
    "conv5": "features.29", "pool5": "features.30",
}
_RESNET = {
    "conv1": "relu",        # conv1 + bn1 + relu (stem output, before the max-pool)
    "pool1": "maxpool",
    "layer1": "layer1",     # ≈ "pool2"/"res2" in papers
    "layer2": "layer2",
    "layer3": "layer3",
    "layer4": "layer4",
}
_SQUEEZENET1_1 = {
    # names follow the SqueezeNet paper (conv1, maxpool1, fire2..fire9); v1.1 pools after
    # fire3 and fire5
    "conv1": "features.1", "pool1": "features.2",
    "fire2": "features.3", "fire3": "features.4", "pool3": "features.5",
    "fire4": "features.6", "fire5": "features.7", "pool5": "features.8",
    "fire6": "features.9", "fire7": "features.10", "fire8": "features.11", "fire9": "features.12",
}
_MOBILENET_V2 = {
    "conv1": "features.0",  # first 3×3 conv + BN + ReLU6
    **{f"block{i}": f"features.{i}" for i in range(1, 18)},   # inverted-residual blocks
    "conv_last": "features.18",
}
_SEG_RESNET = {
    "conv1": "backbone.relu", "pool1": "backbone.maxpool",
    "layer1": "backbone.layer1", "layer2": "backbone.layer2",
    "layer3": "backbone.layer3", "layer4": "backbone.layer4",
}
_RCNN_FPN = {"fpn": "backbone"}   # after the FPN: p2..p6

PRESETS: dict[str, dict[str, str]] = {
    "vgg16": _VGG16,
    "resnet50": _RESNET,
    "squeezenet1_1": _SQUEEZENET1_1,
    "mobilenet_v2": _MOBILENET_V2,
    "fcn_resnet50": _SEG_RESNET,
    "fasterrcnn_resnet50_fpn": _RCNN_FPN,
    "maskrcnn_resnet50_fpn": _RCNN_FPN,
    "keypointrcnn_resnet50_fpn": _RCNN_FPN,
}

# The cut before the network, which every model has: features = the uint8 network input (the image
# as the network sees it), coded as a picture: the remote-inference anchor.
INPUT = INPUT_LAYER

# torchvision keys of the FPN levels -> the names used in papers and in .vcfc files
FPN_NAMES: dict[str, str] = {"0": "p2", "1": "p3", "2": "p4", "3": "p5", "pool": "p6"}


def presets_of(model_name: str) -> dict[str, str]:
    """Preset name -> module path for a model (empty when it has none)."""
    return dict(PRESETS.get(model_name, {}))
