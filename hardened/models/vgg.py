"""VGG-16 / VGG-19 with BatchNorm for 32x32 inputs (CIFAR-10), seeds 000, 001, 003.

Blocks of 3x3 Conv-BN-ReLU (``block{b}_conv{c}``), each closed by 2x2
max-pooling (``block{b}_pool``) and an identity ``stage{b}_out`` that marks
the block output (for Defend++ encoders, see `stage_outputs`). After five
pools a 32x32 image is 1x1x512, flattened into the head.
"""

import keras

from hardened.layers.tta import FlipBatch, MeanOfHalves
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

# Convs per block (widths 64, 128, 256, 512, 512).
VGG_DEPTHS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
VGG_WIDTHS = (64, 128, 256, 512, 512)


def _vgg(arch, input_shape, num_classes, defense, hidden, width, dropout, mean, std, bn_momentum=0.99, bn_scale=True,
         tta=None):
    shape = check_input_shape(input_shape, arch, min_size=32)
    width = check_width(width, arch)
    spec = head_spec(defense, arch)
    if tta not in (None, "flip"):
        raise ValueError(f"{arch}: tta must be None or 'flip', got {tta!r}.")
    conv = ConvFactory(spec)
    inputs = keras.Input(shape, name="input")
    x = FlipBatch(name="tta_flip")(inputs) if tta else inputs
    x = preprocess(x, mean, std)
    for b, (depth, filters) in enumerate(zip(VGG_DEPTHS[arch], VGG_WIDTHS), start=1):
        for c in range(1, depth + 1):
            x = conv_bn_relu(conv, x, scaled(filters, width), 3, f"block{b}_conv{c}", bn_scale=bn_scale,
                             bn_momentum=bn_momentum)
        x = keras.layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
        x = keras.layers.Identity(name=f"stage{b}_out")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    hidden = tuple(scaled(h, width) for h in hidden)
    outputs = classifier_head(x, num_classes, hidden=hidden, defense=spec, dropout=dropout)
    if tta:
        outputs = MeanOfHalves(name="tta_mean")(outputs)
    return keras.Model(inputs, outputs, name=arch)


def vgg16(input_shape=(32, 32, 3), num_classes=10, defense=None, hidden=(512, 512), width=1.0, dropout=None,
          mean=None, std=None):
    """VGG-16 (13 conv + head) with BatchNorm, for 32x32 inputs.

    Args:
        input_shape: ``(H, W, C)``, at least 32x32 (five 2x2 pools).
        num_classes: Number of logits.
        defense: Defense spec (see `hardened.models.heads`).
        hidden: Hidden FC widths of the head (seed 001's VGG-16 has two).
        width: Multiplier of all conv and hidden FC widths (tests use tiny nets).
        dropout: Training-time dropout after each hidden FC layer.
        mean, std: Optional per-channel normalisation inside the model.

    Returns:
        A functional `keras.Model` named ``vgg16``.
    """
    return _vgg("vgg16", input_shape, num_classes, defense, hidden, width, dropout, mean, std)


def vgg19(input_shape=(32, 32, 3), num_classes=10, defense=None, hidden=(512, 512), width=1.0, dropout=None,
          mean=None, std=None, bn_momentum=0.99, bn_scale=True, tta=None):
    """VGG-19 (16 conv + head) with BatchNorm, for 32x32 inputs.

    Seed 000's hashed VGG-19 has an FC4096-FC4096 head: pass
    ``hidden=(4096, 4096)``.

    Args:
        input_shape: ``(H, W, C)``, at least 32x32 (five 2x2 pools).
        num_classes: Number of logits.
        defense: Defense spec.
        hidden: Hidden FC widths of the head.
        width: Multiplier of all conv and hidden FC widths.
        dropout: Training-time dropout after each hidden FC layer.
        mean, std: Optional per-channel normalisation inside the model.
        bn_momentum: Keras BatchNormalization momentum (airbench-style recipes: 0.4).
        bn_scale: ``False`` drops BatchNorm's gamma (frozen at 1).
        tta: ``"flip"``: logits averaged over the image and its mirror at
            inference (`hardened.layers.tta`); ``None``: none.

    Returns:
        A functional `keras.Model` named ``vgg19``.
    """
    return _vgg("vgg19", input_shape, num_classes, defense, hidden, width, dropout, mean, std, bn_momentum, bn_scale,
                tta)
