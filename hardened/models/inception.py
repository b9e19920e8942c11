"""Inception-V3 (Szegedy et al., 2016) for seed 000's ImageNet-50 experiments.

The layout of `keras.applications.InceptionV3` (no auxiliary classifier):
Conv-BN-ReLU units (``conv{k}`` in the stem, ``mixed{m}_<branch>`` in the
modules), modules ``mixed0 .. mixed10`` (concatenations of that name), global
average pooling and a single-FC head (``logits``; seed 000 adds a hashed
FC-512 via ``defense["extra_fc"]``). Identities mark the stage outputs:
``stem_out`` (35x35 at 299x299 input), ``stage1_out`` (after mixed2, 35x35),
``stage2_out`` (after mixed7, 17x17), ``stage3_out`` (after mixed10, 8x8).
Stem and grid reductions use "valid" padding, so inputs must be at least
75x75.
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

MIN_SIZE = 75


def inception_v3(input_shape=(299, 299, 3), num_classes=50, defense=None, width=1.0, dropout=None,
                 mean=None, std=None):
    """Inception-V3 from Conv-BN-ReLU units.

    Args:
        input_shape: ``(H, W, C)``, at least 75x75 (299x299 in the paper).
        num_classes: Number of logits (seed 000 uses the first 50 ImageNet classes).
        defense: Defense spec (see `hardened.models.heads`). ``hashed`` and
            ``stochastic`` need ``extra_fc`` (seed 000: 512).
        width: Multiplier of all conv widths (tests use tiny nets).
        dropout: Training-time dropout after the extra FC layer, if any.
        mean, std: Optional per-channel normalisation inside the model (the
            Keras ImageNet weights expect ``mean=0.5, std=0.5``, i.e. [-1, 1]).

    Returns:
        A functional `keras.Model` named ``inception_v3``.
    """
    shape = check_input_shape(input_shape, "inception_v3", min_size=MIN_SIZE)
    width = check_width(width, "inception_v3")
    spec = head_spec(defense, "inception_v3", single_fc=True)
    conv = ConvFactory(spec)

    def cbr(x, filters, kernel, name, strides=1, padding="same"):
        return conv_bn_relu(conv, x, scaled(filters, width), kernel, name, strides=strides, padding=padding,
                            bn_scale=False)

    def avg_branch(x, filters, name):
        y = keras.layers.AveragePooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
        return cbr(y, filters, 1, f"{name}_conv")

    def concat(parts, name):
        return keras.layers.Concatenate(axis=-1, name=name)(parts)

    inputs = keras.Input(shape, name="input")
    x = preprocess(inputs, mean, std)

    # Stem: 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35.
    x = cbr(x, 32, 3, "conv1", strides=2, padding="valid")
    x = cbr(x, 32, 3, "conv2", padding="valid")
    x = cbr(x, 64, 3, "conv3")
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = cbr(x, 80, 1, "conv4", padding="valid")
    x = cbr(x, 192, 3, "conv5", padding="valid")
    x = keras.layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = keras.layers.Identity(name="stem_out")(x)

    # mixed0-2 (35x35): 1x1, 5x5, double 3x3 and pool branches.
    for m, pool_filters in enumerate((32, 64, 64)):
        n = f"mixed{m}"
        b1 = cbr(x, 64, 1, f"{n}_1x1")
        b5 = cbr(cbr(x, 48, 1, f"{n}_5x5_1"), 64, 5, f"{n}_5x5_2")
        b3 = cbr(cbr(cbr(x, 64, 1, f"{n}_3x3dbl_1"), 96, 3, f"{n}_3x3dbl_2"), 96, 3, f"{n}_3x3dbl_3")
        x = concat([b1, b5, b3, avg_branch(x, pool_filters, f"{n}_avg")], n)
    x = keras.layers.Identity(name="stage1_out")(x)

    # mixed3: grid reduction 35 -> 17.
    b3 = cbr(x, 384, 3, "mixed3_3x3", strides=2, padding="valid")
    bd = cbr(cbr(x, 64, 1, "mixed3_3x3dbl_1"), 96, 3, "mixed3_3x3dbl_2")
    bd = cbr(bd, 96, 3, "mixed3_3x3dbl_3", strides=2, padding="valid")
    bp = keras.layers.MaxPooling2D(3, strides=2, name="mixed3_pool")(x)
    x = concat([b3, bd, bp], "mixed3")

    # mixed4-7 (17x17): factorised 7x7 convolutions.
    for m, c in zip((4, 5, 6, 7), (128, 160, 160, 192)):
        n = f"mixed{m}"
        b1 = cbr(x, 192, 1, f"{n}_1x1")
        b7 = cbr(x, c, 1, f"{n}_7x7_1")
        b7 = cbr(b7, c, (1, 7), f"{n}_7x7_2")
        b7 = cbr(b7, 192, (7, 1), f"{n}_7x7_3")
        bd = cbr(x, c, 1, f"{n}_7x7dbl_1")
        bd = cbr(bd, c, (7, 1), f"{n}_7x7dbl_2")
        bd = cbr(bd, c, (1, 7), f"{n}_7x7dbl_3")
        bd = cbr(bd, c, (7, 1), f"{n}_7x7dbl_4")
        bd = cbr(bd, 192, (1, 7), f"{n}_7x7dbl_5")
        x = concat([b1, b7, bd, avg_branch(x, 192, f"{n}_avg")], n)
    x = keras.layers.Identity(name="stage2_out")(x)

    # mixed8: grid reduction 17 -> 8.
    b3 = cbr(cbr(x, 192, 1, "mixed8_3x3_1"), 320, 3, "mixed8_3x3_2", strides=2, padding="valid")
    b7 = cbr(x, 192, 1, "mixed8_7x7x3_1")
    b7 = cbr(b7, 192, (1, 7), "mixed8_7x7x3_2")
    b7 = cbr(b7, 192, (7, 1), "mixed8_7x7x3_3")
    b7 = cbr(b7, 192, 3, "mixed8_7x7x3_4", strides=2, padding="valid")
    bp = keras.layers.MaxPooling2D(3, strides=2, name="mixed8_pool")(x)
    x = concat([b3, b7, bp], "mixed8")

    # mixed9-10 (8x8): expanded filter banks.
    for m in (9, 10):
        n = f"mixed{m}"
        b1 = cbr(x, 320, 1, f"{n}_1x1")
        b3 = cbr(x, 384, 1, f"{n}_3x3_1")
        b3 = concat([cbr(b3, 384, (1, 3), f"{n}_3x3_2a"), cbr(b3, 384, (3, 1), f"{n}_3x3_2b")], f"{n}_3x3")
        bd = cbr(cbr(x, 448, 1, f"{n}_3x3dbl_1"), 384, 3, f"{n}_3x3dbl_2")
        bd = concat([cbr(bd, 384, (1, 3), f"{n}_3x3dbl_3a"), cbr(bd, 384, (3, 1), f"{n}_3x3dbl_3b")],
                    f"{n}_3x3dbl")
        x = concat([b1, b3, bd, avg_branch(x, 192, f"{n}_avg")], n)
    x = keras.layers.Identity(name="stage3_out")(x)

    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = classifier_head(x, num_classes, hidden=(), defense=spec, dropout=dropout)
    return keras.Model(inputs, outputs, name="inception_v3")
