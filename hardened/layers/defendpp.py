"""Defend++ (seed 003) decoder modules and multi-scale DCT low-pass targets.

The decoder reconstructs the image at scales m = M-1 .. 0 as
``I~^m = U(I~^{m+1}) + H(E_m)``: ``U`` upsamples the reconstruction of the
coarser scale, ``H`` maps the mirrored encoder block's features to image
channels. Targets ``I^m`` keep the top-left ``W/2^m x H/2^m`` DCT coefficients
of the image, giving a low-pass image at resolution ``W/2^m``.
"""

import math

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="hardened")
class DecoderUp(keras.layers.Layer):
    """U module: stride-2 transposed conv block, then a conv to image channels.

    Args:
        filters: Width of the hidden transposed convolution.
        channels: Output channels (1 for grey, 3 for colour images).
    """

    def __init__(self, filters, channels, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.channels = int(channels)
        self.up = keras.layers.Conv2DTranspose(self.filters, 3, strides=2, padding="same",
                                               activation="relu", name="up")
        self.out = keras.layers.Conv2D(self.channels, 3, padding="same", name="out")

    def build(self, input_shape):
        self.up.build(input_shape)
        self.out.build(self.up.compute_output_shape(input_shape))
        self.built = True

    def call(self, inputs):
        return self.out(self.up(inputs))

    def compute_output_shape(self, input_shape):
        return self.out.compute_output_shape(self.up.compute_output_shape(input_shape))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "channels": self.channels}


@keras.saving.register_keras_serializable(package="hardened")
class DecoderSkip(keras.layers.Layer):
    """H module: 2-layer residual block with a 1x1 conv skip, to image channels.

    Args:
        filters: Width of the hidden 3x3 convolution.
        channels: Output channels.
    """

    def __init__(self, filters, channels, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.channels = int(channels)
        self.conv1 = keras.layers.Conv2D(self.filters, 3, padding="same", activation="relu", name="conv1")
        self.conv2 = keras.layers.Conv2D(self.channels, 3, padding="same", name="conv2")
        self.skip = keras.layers.Conv2D(self.channels, 1, name="skip")

    def build(self, input_shape):
        self.conv1.build(input_shape)
        self.conv2.build(self.conv1.compute_output_shape(input_shape))
        self.skip.build(input_shape)
        self.built = True

    def call(self, inputs):
        return self.conv2(self.conv1(inputs)) + self.skip(inputs)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.channels,)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "channels": self.channels}


def dct_matrix(n):
    """Orthonormal DCT-II matrix ``D`` (``D @ x`` is the DCT of a length-n signal)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.astype(np.float32)


def dct_lowpass_targets(images, num_scales, min_size=7, xp=None):
    """Multi-scale DCT low-pass targets ``I^0 .. I^{num_scales-1}``.

    ``I^m`` is the inverse DCT, at size ``(H/2^m, W/2^m)``, of the top-left
    ``H/2^m x W/2^m`` block of the image's DCT coefficients, rescaled so that
    intensities keep their range. ``I^0`` is the image itself. Matrix
    products with `keras.ops` (any backend), or with NumPy for a data
    pipeline (``xp=numpy``): the one DCT of the package.

    Args:
        images: Tensor (N, H, W, C), values in [0, 1].
        num_scales: Number of scales ``M``.
        min_size: Scales whose side would fall below this are left out (seed
            003 puts no loss below 7x7).
        xp: ``numpy`` to compute on host arrays; default `keras.ops`.

    Returns:
        List of tensors (arrays with ``xp=numpy``), ``[I^0, I^1, ...]``, each (N, H/2^m, W/2^m, C).
    """
    if xp is np:
        images = np.asarray(images, dtype=np.float32)

        def einsum(spec, *operands):
            return np.einsum(spec, *operands, optimize=True)
    else:
        images = ops.convert_to_tensor(images, dtype="float32")
        einsum = ops.einsum
    if len(images.shape) != 4:
        raise ValueError(f"dct_lowpass_targets expects NHWC images, got shape {tuple(images.shape)}.")
    h, w = int(images.shape[1]), int(images.shape[2])
    # Coefficients C = Dh X Dw^T, per image and channel (channels last).
    coeff = einsum("ah,nhwc,bw->nabc", dct_matrix(h), images, dct_matrix(w))
    targets = []
    for m in range(int(num_scales)):
        sh, sw = h // 2 ** m, w // 2 ** m
        if m > 0 and min(sh, sw) < min_size:
            break
        scale = math.sqrt((sh * sw) / (h * w))
        targets.append(einsum("ah,nabc,bw->nhwc", dct_matrix(sh), coeff[:, :sh, :sw, :], dct_matrix(sw)) * scale)
    return targets
