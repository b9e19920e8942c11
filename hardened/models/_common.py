"""Helpers shared by the builders: input checks, preprocessing, defended convs.

Every builder threads a `ConvFactory` through its body, so that the two
conv-level defenses of the spec (``prune`` and ``conv_noise``) are applied the
same way everywhere, and every layer gets an explicit name.
"""

import re

import keras
import numpy as np

from hardened.layers import GaussianNoiseInjection, HashedConv2D, PrunableConv2D
from hardened.models.heads import normalize_defense

_STAGE_RE = re.compile(r"^(stem|stage\d+)_out$")


def check_input_shape(input_shape, builder, channels=None, min_size=None):
    """Validate an ``(H, W, C)`` input shape.

    Args:
        input_shape: The shape to check.
        builder: Builder name, for error messages.
        channels: Allowed channel counts (``None``: any).
        min_size: Smallest allowed height/width (``None``: any).

    Returns:
        The shape as a tuple of ints.
    """
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"{builder}: input_shape must be (height, width, channels) of ints, got {input_shape!r}."
        ) from None
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"{builder}: input_shape must be (height, width, channels) with positive sizes "
            f"(NHWC without the batch axis), got {input_shape!r}."
        )
    if channels is not None and shape[2] not in channels:
        raise ValueError(f"{builder}: expected {' or '.join(map(str, channels))} input channels, "
                         f"got input_shape={shape}.")
    if min_size is not None and min(shape[:2]) < min_size:
        raise ValueError(f"{builder}: input must be at least {min_size}x{min_size}, got input_shape={shape}; "
                         f"resize the images or use a smaller architecture.")
    return shape


def scaled(filters, width):
    """``filters * width`` rounded, at least 1 (the width multiplier)."""
    return max(1, int(round(filters * float(width))))


def check_width(width, builder):
    """Validate a width multiplier (> 0) and return it as a float."""
    if not float(width) > 0:
        raise ValueError(f"{builder}: width multiplier must be > 0, got {width!r}.")
    return float(width)


def preprocess(x, mean=None, std=None):
    """Per-channel ``(x - mean) / std`` inside the model, when ``mean``/``std`` are given.

    A `keras.layers.Normalization` with fixed statistics: it serializes with
    the model and runs the same on every backend, so checkpoints take images
    in [0, 1] whatever their training normalisation was.
    """
    if mean is None and std is None:
        return x
    channels = x.shape[-1]
    mean = np.broadcast_to(np.asarray(0.0 if mean is None else mean, "float32"), (channels,))
    std = np.broadcast_to(np.asarray(1.0 if std is None else std, "float32"), (channels,))
    if np.any(std <= 0):
        raise ValueError(f"std must be > 0, got {std.tolist()}.")
    layer = keras.layers.Normalization(mean=mean.tolist(), variance=(std ** 2).tolist(), name="normalize")
    return layer(x)


def head_spec(defense, builder, single_fc=False):
    """Normalise a defense spec; check the parts the builders (not the head) use."""
    spec = normalize_defense(defense)
    noise = spec["conv_noise"]
    if noise is not None:
        if not isinstance(noise, dict) or set(noise) - {"init", "inner", "seed"}:
            raise ValueError(f"{builder}: defense['conv_noise'] must be a dict with keys init, inner, seed; "
                             f"got {noise!r}.")
        for key in ("init", "inner"):
            if float(noise.get(key, 0.0)) < 0:
                raise ValueError(f"{builder}: defense['conv_noise'][{key!r}] must be >= 0, got {noise[key]!r}.")
    if single_fc and not spec["extra_fc"]:
        # Checked here, before the body is built: the head hashes its last two
        # FC layers and inserts the stochastic layer after fc1, and a single-FC
        # head has neither (it would silently drop the stochastic layer).
        for key, what in (("hashed", "hashes the last two FC layers"), ("stochastic", "goes after fc1")):
            if spec[key] is not None:
                raise ValueError(f"{builder}: defense[{key!r}] {what}, and this network's head has only the "
                                 f"logits layer; set defense['extra_fc'] (seed 000 uses 512) as well.")
    return spec


class ConvFactory:
    """Makes the conv layers of one model, defended as the spec says.

    ``prune`` makes them `PrunableConv2D`; ``hash_cr`` makes them
    `HashedConv2D` (seeds ``hash_seed``, ``hash_seed + 1``, ... in order of
    creation); ``conv_noise`` puts a `GaussianNoiseInjection` named
    ``<conv name>_noise`` before each conv: stddev ``init`` before the first
    conv of the model, ``inner`` before the others, seeds ``seed + i``.

    Args:
        spec: A normalised defense spec.
        hash_cr: Compression ratio of hashed convs (``None``: not hashed).
        hash_seed: Seed of the first hashed conv.
        seed_offset: Added to every noise and hash seed (distinct offsets
            give the parallel HRS channels independent draws and hashes).
    """

    def __init__(self, spec, hash_cr=None, hash_seed=0, seed_offset=0):
        if hash_cr is not None and spec["prune"]:
            raise ValueError("Convolutions cannot be both hashed and pruned.")
        self.prune = bool(spec["prune"])
        self.noise = spec["conv_noise"]
        self.hash_cr = hash_cr
        self.hash_seed = int(hash_seed)
        self.seed_offset = int(seed_offset)
        self.count = 0

    def __call__(self, x, filters, kernel_size, name, strides=1, padding="same", activation=None,
                 use_bias=True):
        """Apply (optional noise and) a conv named ``name`` to ``x``."""
        index = self.count
        self.count += 1
        if self.noise is not None:
            stddev = float(self.noise.get("init" if index == 0 else "inner", 0.0))
            seed = self.noise.get("seed")
            x = GaussianNoiseInjection(stddev, seed=None if seed is None else int(seed) + self.seed_offset + index,
                                       name=f"{name}_noise")(x)
        if self.hash_cr is not None:
            layer = HashedConv2D(filters, kernel_size, strides=strides, padding=padding,
                                 compression=self.hash_cr, seed=self.hash_seed + self.seed_offset + index,
                                 activation=activation, use_bias=use_bias, name=name)
        else:
            cls = PrunableConv2D if self.prune else keras.layers.Conv2D
            layer = cls(filters, kernel_size, strides=strides, padding=padding, activation=activation,
                        use_bias=use_bias, name=name)
        return layer(x)


def conv_bn_relu(conv, x, filters, kernel_size, name, strides=1, padding="same", bn_scale=True, bn_momentum=0.99):
    """Conv (no bias: BN's shift replaces it) -> BatchNorm -> ReLU, named ``name``, ``name_bn``, ``name_relu``.

    ``bn_scale=False`` drops BN's gamma (Inception-V3, whose ReLU follows
    directly, as in the Keras and TF-slim originals; airbench's frozen scale).
    ``bn_momentum`` is Keras' (default 0.99; airbench's PyTorch 0.6 is 0.4).
    """
    x = conv(x, filters, kernel_size, name, strides=strides, padding=padding, use_bias=False)
    x = keras.layers.BatchNormalization(momentum=bn_momentum, scale=bn_scale, name=f"{name}_bn")(x)
    return keras.layers.ReLU(name=f"{name}_relu")(x)


def stage_outputs(model):
    """The named stage outputs of a built model, for Defend++ encoders.

    Returns:
        Dict ``{"stem_out": tensor, "stage1_out": tensor, ...}`` (symbolic
        outputs of `keras.layers.Identity` layers the builders insert), in
        model order. Empty for builders without stages.

    Raises:
        ValueError: the model averages over mirrored copies at inference
            (``tta="flip"``): its stage tensors hold twice the batch.
    """
    if any(layer.name == "tta_flip" for layer in model.layers):
        raise ValueError(f"Model {model.name!r} has test-time flip averaging (tta='flip'): its stage outputs hold "
                         "the image and its mirror; build it without tta for Defend++.")
    return {layer.name: layer.output for layer in model.layers if _STAGE_RE.match(layer.name)}
