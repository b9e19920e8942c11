"""CIFAR-style ResNets (He et al., 2016) for 32x32 inputs: seeds 000 and 003.

3x3 stride-1 stem (``stem_conv``, no max-pool), four stages of widths 64, 128,
256, 512 (stride 1, 2, 2, 2), basic blocks for ResNet-18/34 and bottlenecks
(expansion 4) for ResNet-50/101, global average pooling, then a single-FC
head (``logits``; seed 000 adds a hashed FC-512 via ``defense["extra_fc"]``).

Names: ``stage{s}_block{b}_conv{k}`` (+ ``_bn``, ``_relu``),
``stage{s}_block{b}_shortcut`` (projection), ``..._add``, ``..._out``; the
identities ``stem_out`` and ``stage{s}_out`` mark the encoder outputs that
Defend++ taps (see `stage_outputs`).
"""

import keras

from hardened.models._common import (
    ConvFactory,
    check_input_shape,
    check_width,
    conv_bn_relu,
    head_spec,
    preprocess,
    scaled,
)
from hardened.models.heads import classifier_head

RESNET_BLOCKS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)


def _conv_bn(conv, x, filters, kernel_size, name, strides=1):
    x = conv(x, filters, kernel_size, name, strides=strides, padding="same", use_bias=False)
    return keras.layers.BatchNormalization(name=f"{name}_bn")(x)


def _block(conv, x, kind, filters, strides, name):
    """One residual block; ``filters`` is the block's inner width."""
    out_filters = filters * (4 if kind == "bottleneck" else 1)
    if kind == "basic":
        y = conv_bn_relu(conv, x, filters, 3, f"{name}_conv1", strides=strides)
        y = _conv_bn(conv, y, filters, 3, f"{name}_conv2")
    else:
        y = conv_bn_relu(conv, x, filters, 1, f"{name}_conv1")
        # Stride on the 3x3 conv (ResNet v1.5), as in torchvision and most CIFAR code.
        y = conv_bn_relu(conv, y, filters, 3, f"{name}_conv2", strides=strides)
        y = _conv_bn(conv, y, out_filters, 1, f"{name}_conv3")
    shortcut = x
    if strides != 1 or x.shape[-1] != out_filters:
        shortcut = _conv_bn(conv, x, out_filters, 1, f"{name}_shortcut", strides=strides)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def _resnet(arch, input_shape, num_classes, defense, width, dropout, mean, std):
    shape = check_input_shape(input_shape, arch, min_size=8)
    width = check_width(width, arch)
    spec = head_spec(defense, arch, single_fc=True)
    kind, blocks = RESNET_BLOCKS[arch]
    conv = ConvFactory(spec)
    inputs = keras.Input(shape, name="input")
    x = preprocess(inputs, mean, std)
    x = conv_bn_relu(conv, x, scaled(64, width), 3, "stem_conv")
    x = keras.layers.Identity(name="stem_out")(x)
    for s, (n_blocks, filters) in enumerate(zip(blocks, STAGE_WIDTHS), start=1):
        for b in range(1, n_blocks + 1):
            strides = 2 if (s > 1 and b == 1) else 1
            x = _block(conv, x, kind, scaled(filters, width), strides, f"stage{s}_block{b}")
        x = keras.layers.Identity(name=f"stage{s}_out")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier_head(x, num_classes, hidden=(), defense=spec, dropout=dropout)
    return keras.Model(inputs, outputs, name=arch)


_DOC = """{title} for 32x32 inputs (CIFAR-style stem, no initial max-pool).

    Args:
        input_shape: ``(H, W, C)``, at least 8x8 (three stride-2 stages).
        num_classes: Number of logits.
        defense: Defense spec (see `hardened.models.heads`). ``hashed`` and
            ``stochastic`` need ``extra_fc`` (e.g. 512): the head has no
            hidden layer otherwise.
        width: Multiplier of all conv widths (tests use tiny nets).
        dropout: Training-time dropout after the extra FC layer, if any.
        mean, std: Optional per-channel normalisation inside the model.

    Returns:
        A functional `keras.Model` named ``{name}``.
    """


def resnet18(input_shape=(32, 32, 3), num_classes=10, defense=None, width=1.0, dropout=None, mean=None, std=None):
    return _resnet("resnet18", input_shape, num_classes, defense, width, dropout, mean, std)


def resnet34(input_shape=(32, 32, 3), num_classes=10, defense=None, width=1.0, dropout=None, mean=None, std=None):
    return _resnet("resnet34", input_shape, num_classes, defense, width, dropout, mean, std)


def resnet50(input_shape=(32, 32, 3), num_classes=10, defense=None, width=1.0, dropout=None, mean=None, std=None):
    return _resnet("resnet50", input_shape, num_classes, defense, width, dropout, mean, std)


def resnet101(input_shape=(32, 32, 3), num_classes=10, defense=None, width=1.0, dropout=None, mean=None, std=None):
    return _resnet("resnet101", input_shape, num_classes, defense, width, dropout, mean, std)


for _fn, _title in ((resnet18, "ResNet-18 (basic blocks 2-2-2-2)"), (resnet34, "ResNet-34 (basic blocks 3-4-6-3)"),
                    (resnet50, "ResNet-50 (bottlenecks 3-4-6-3)"), (resnet101, "ResNet-101 (bottlenecks 3-4-23-3)")):
    _fn.__doc__ = _DOC.format(title=_title, name=_fn.__name__)
del _fn, _title
