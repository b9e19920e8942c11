"""A fast CIFAR-10 network in the style of airbench (Jordan 2024, arXiv 2404.00498).

airbench reaches 94 % on CIFAR-10 with ~0.36 PFLOP of training by using a
small, wide conv net (three conv groups 64/256/256, each conv -> max-pool ->
BN -> GELU -> conv -> BN -> GELU) trained with a short, high learning-rate
schedule. ``fastcnn`` keeps that body (with a 3x3 stem instead of the
whitening-initialised 2x2 patch conv) and replaces airbench's single linear
layer by the defended head of `hardened.models.heads`: two hidden FC layers
and ``logits``, so that seed 000's hash classifier (last two FC layers) and
GI (last three kernel layers) touch only the head, as in its 7-layer net.

About 0.3 GFLOP per 32x32 image forward (cnn7: 0.08, ResNet-18: 1.1).
"""

import keras

from hardened.layers.tta import FlipBatch, MeanOfHalves
from hardened.models._common import ConvFactory, check_input_shape, check_width, head_spec, preprocess, scaled
from hardened.models.heads import classifier_head


def _bn_act(x, name, activation, momentum, scale):
    x = keras.layers.BatchNormalization(momentum=momentum, epsilon=1e-5, scale=scale, name=f"{name}_bn")(x)
    return keras.layers.Activation(activation, name=f"{name}_act")(x)


def fastcnn(input_shape=(32, 32, 3), num_classes=10, defense=None, widths=(64, 256, 256), stem=32, width=1.0,
            hidden=(256, 256), dropout=None, activation="gelu", mean=None, std=None, bn_momentum=0.9, bn_scale=True,
            tta=None):
    """airbench-style conv body + defended FC head.

    Layers: ``stem`` (3x3 conv, BN, act), then per group ``g`` in 1..3:
    ``group{g}_conv1`` -> ``group{g}_pool`` (2x2 max) -> BN -> act ->
    ``group{g}_conv2`` -> BN -> act; then a global max-pool, ``fc1 .. fcK``
    and ``logits``.

    Args:
        input_shape: ``(H, W, C)``, at least 8x8.
        num_classes: Number of logits.
        defense: Defense spec (see `hardened.models.heads`).
        widths: Channels of the three conv groups.
        stem: Channels of the stem conv.
        width: Multiplier applied to ``stem`` and ``widths`` (tests use 0.0625).
        hidden: Widths of the hidden FC layers.
        dropout: Training-time dropout after each hidden FC layer.
        activation: Activation of the conv body.
        mean, std: Optional per-channel normalisation inside the model.
        bn_momentum: Keras BatchNormalization momentum (airbench's PyTorch 0.6 is 0.4 here).
        bn_scale: ``False`` drops BatchNorm's gamma (frozen at 1, as airbench).
        tta: ``"flip"``: the model averages its logits over the image and its
            mirror at inference (`hardened.layers.tta`); ``None``: no test-time
            augmentation.

    Returns:
        A functional `keras.Model` named ``fastcnn``.
    """
    shape = check_input_shape(input_shape, "fastcnn", min_size=8)
    width = check_width(width, "fastcnn")
    if len(tuple(widths)) != 3:
        raise ValueError(f"fastcnn: widths must give the channels of 3 conv groups, got {widths!r}.")
    spec = head_spec(defense, "fastcnn")
    conv = ConvFactory(spec)
    if tta not in (None, "flip"):
        raise ValueError(f"fastcnn: tta must be None or 'flip', got {tta!r}.")
    bn = {"momentum": float(bn_momentum), "scale": bool(bn_scale)}
    inputs = keras.Input(shape, name="input")
    x = FlipBatch(name="tta_flip")(inputs) if tta else inputs
    x = preprocess(x, mean, std)
    x = conv(x, scaled(stem, width), 3, "stem", use_bias=False)
    x = _bn_act(x, "stem", activation, **bn)
    for g, filters in enumerate(widths, start=1):
        filters = scaled(filters, width)
        x = conv(x, filters, 3, f"group{g}_conv1", use_bias=False)
        x = keras.layers.MaxPooling2D(2, name=f"group{g}_pool")(x)
        x = _bn_act(x, f"group{g}_conv1", activation, **bn)
        x = conv(x, filters, 3, f"group{g}_conv2", use_bias=False)
        x = _bn_act(x, f"group{g}_conv2", activation, **bn)
    x = keras.layers.GlobalMaxPooling2D(name="global_pool")(x)
    outputs = classifier_head(x, num_classes, hidden=hidden, defense=spec, dropout=dropout)
    if tta:
        outputs = MeanOfHalves(name="tta_mean")(outputs)
    return keras.Model(inputs, outputs, name="fastcnn")
