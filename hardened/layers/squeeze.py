"""Seed 000's compression and input-transformation baselines, training-free.

* `BitDepthReduction` and `MedianSmoothing` are the two feature-squeezing transforms of
  Xu et al. (2018) that seed 000's Table IV sets beside hash + GI3 (MNIST 1-bit, CIFAR-10
  4-bit; 2x2 median). They are layers placed *inside* the model, in front of the
  network, so that an attacker's gradient meets them as a deployed model would, and
  BPDA (Athalye et al. 2018) can replace them by the identity on the backward pass
  (`InputTransform` marks them for the evaluation).
* `quantize_weights` is the weight quantization of Han et al.'s Deep Compression
  (seed 000's Table VII, 8 and 3 bits): every kernel's weights are clustered into
  ``2**bits`` shared values by k-means from a linear initialisation, without the
  centroid fine-tuning (the view is training-free); biases stay float.
"""

import keras
import numpy as np
from keras import ops


class InputTransform(keras.layers.Layer):
    """Base class of the input transforms: a non-differentiable (or nearly) map of images to images.

    Evaluations find these layers by type and run BPDA with the identity in their place.
    """

    is_input_transform = True


@keras.saving.register_keras_serializable(package="hardened")
class BitDepthReduction(InputTransform):
    """Round every pixel to ``bits`` bits: ``round(x * (2**bits - 1)) / (2**bits - 1)`` (images in [0, 1]).

    Its gradient is zero almost everywhere, which is what masks white-box attacks.

    Args:
        bits: Bits per pixel, 1 to 8.
    """

    masks_gradient = True

    def __init__(self, bits, **kwargs):
        super().__init__(**kwargs)
        if int(bits) != bits or not 1 <= int(bits) <= 8:
            raise ValueError(f"bits must be an integer in [1, 8], got {bits!r}.")
        self.bits = int(bits)

    def call(self, inputs):
        levels = float(2**self.bits - 1)
        return ops.round(ops.clip(inputs, 0.0, 1.0) * levels) / levels

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "bits": self.bits}


@keras.saving.register_keras_serializable(package="hardened")
class MedianSmoothing(InputTransform):
    """Per-channel median over a ``size`` x ``size`` window (NHWC), as ``scipy.ndimage.median_filter``.

    Same output size; the border is extended by reflection (scipy's ``"reflect"`` mode). For an even
    window, as the 2x2 of Xu et al. and seed 000, the window at pixel (i, j) covers rows and columns
    i - size/2 .. i + size/2 - 1 and the median is the upper middle value, as scipy computes it.

    Args:
        size: Window side, 2 or more.
    """

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        if int(size) != size or int(size) < 2:
            raise ValueError(f"size must be an integer >= 2, got {size!r}.")
        self.size = int(size)

    def call(self, inputs):
        k = self.size
        before, after = k // 2, k - 1 - k // 2
        padded = _reflect_pad(inputs, before, after)
        height, width = inputs.shape[1], inputs.shape[2]  # static: a model's input size is fixed
        windows = [padded[:, di:di + height, dj:dj + width, :] for di in range(k) for dj in range(k)]
        stacked = ops.sort(ops.stack(windows, axis=-1), axis=-1)
        return stacked[..., (k * k) // 2]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def _reflect_pad(x, before, after):
    """Pad H and W by repeating the edge rows and columns mirror-wise (scipy's "reflect": d c b a | a b c d)."""
    def pad_axis(t, axis):
        parts = []
        if before:
            parts.append(ops.flip(ops.take(t, list(range(before)), axis=axis), axis=axis))
        parts.append(t)
        if after:
            n = t.shape[axis]
            parts.append(ops.flip(ops.take(t, list(range(n - after, n)), axis=axis), axis=axis))
        return ops.concatenate(parts, axis=axis)

    return pad_axis(pad_axis(x, 1), 2)


def input_transform_view(model, transform, strength):
    """A model with an input transform in front of ``model`` (whose weights it shares).

    Args:
        model: A `keras.Model` on images in [0, 1].
        transform: ``"bit_depth"`` (``strength`` = bits) or ``"median"`` (``strength`` = window size).
        strength: As above.

    Returns:
        A functional model ``inputs -> transform -> model``; the transform layer is named after it.
    """
    if transform == "bit_depth":
        layer = BitDepthReduction(int(strength), name="bit_depth")
    elif transform == "median":
        layer = MedianSmoothing(int(strength), name="median_smoothing")
    else:
        raise ValueError(f"Unknown input transform {transform!r}; expected 'bit_depth' or 'median'.")
    inputs = keras.Input(shape=model.input_shape[1:], name="images")
    outputs = model(layer(inputs))
    view = keras.Model(inputs, outputs, name=f"{model.name}_{layer.name}")
    return view


def input_transform_layers(model):
    """Names of the top-level `InputTransform` layers of a model (the layers BPDA replaces)."""
    return [layer.name for layer in getattr(model, "layers", []) if getattr(layer, "is_input_transform", False)]


def _kmeans_1d(values, clusters, iterations=30):
    """Lloyd's k-means on a 1-D array from linearly spaced centroids (Han et al.'s best initialisation)."""
    lo, hi = float(values.min()), float(values.max())
    centroids = np.linspace(lo, hi, clusters)
    for _ in range(iterations):
        # Sorted centroids: each value's nearest one by a binary search on the midpoints (no n x k matrix).
        centroids = np.sort(centroids)
        assign = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)
        sums = np.bincount(assign, weights=values, minlength=clusters)
        counts = np.bincount(assign, minlength=clusters)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(moved, centroids):
            break
        centroids = moved
    centroids = np.sort(centroids)
    return centroids[np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)]


def quantize_weights(model, bits):
    """A copy of ``model`` whose kernels each take at most ``2**bits`` shared values (k-means, per kernel).

    Args:
        model: A functional or Sequential `keras.Model`.
        bits: Bits per weight index, 1 to 16.

    Returns:
        A new model (its own weights; ``model`` is unchanged). Kernels are the variables named
        ``kernel`` (conv and dense, hashed buckets included); biases and normalisation statistics stay float.
    """
    if int(bits) != bits or not 1 <= int(bits) <= 16:
        raise ValueError(f"bits must be an integer in [1, 16], got {bits!r}.")
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    for var in clone.weights:
        if var.name != "kernel":
            continue
        value = np.asarray(keras.ops.convert_to_numpy(var.value), dtype=np.float64)
        flat = value.reshape(-1)
        if np.unique(flat).size <= 2**int(bits):
            continue  # already as coarse as asked
        var.assign(_kmeans_1d(flat, 2**int(bits)).reshape(value.shape).astype(var.dtype))
    clone.hardened_metadata = dict(getattr(model, "hardened_metadata", None) or {})
    return clone
