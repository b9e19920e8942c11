"""HashedNets weight sharing (Chen et al., 2015) for Dense and Conv2D kernels.

A virtual kernel ``V`` of the usual shape is never stored. Each of its entries
is read from a small vector of ``K`` real weights ``w`` through a hash index
``h`` and multiplied by a sign hash ``xi``::

    V[i, j] = w[h(i, j)] * xi(i, j)

``h`` and ``xi`` are independent deterministic hashes of the flat entry index
and the layer's ``seed``. They are rebuilt from the config in ``build`` and are
never saved: a checkpoint holds only ``w`` (and the bias).
"""

import math

import keras
import numpy as np
from keras import ops

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _fmix64(x):
    """MurmurHash3's 64-bit finaliser: a bijective, well-mixing integer hash."""
    x = x.astype(np.uint64)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xFF51AFD7ED558CCD)
        x ^= x >> np.uint64(33)
        x *= np.uint64(0xC4CEB9FE1A85EC53)
        x ^= x >> np.uint64(33)
    return x


def hash_tables(shape, num_weights, seed):
    """Index and sign tables of a hashed kernel.

    Args:
        shape: Shape of the virtual kernel.
        num_weights: Number ``K`` of real weights.
        seed: Integer seed; different seeds give independent tables.

    Returns:
        ``(index, sign)``: int32 array with values in ``[0, K)`` and float32
        array of ±1, both of shape ``shape``. The same on every platform.
    """
    size = int(np.prod(shape))
    flat = np.arange(size, dtype=np.uint64)
    # Two different salts make h and xi independent hash functions.
    salt_h = _fmix64(np.array([2 * int(seed) + 1], dtype=np.uint64))[0]
    salt_s = _fmix64(np.array([2 * int(seed) + 2], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        h = _fmix64(flat ^ salt_h)
        s = _fmix64(flat * np.uint64(0x9E3779B97F4A7C15) ^ salt_s)
    index = (h % np.uint64(num_weights)).astype(np.int32).reshape(shape)
    sign = (1.0 - 2.0 * (s >> np.uint64(63)).astype(np.float32)).reshape(shape)
    return index, sign


def _num_weights(virtual_size, compression, num_weights, layer_name):
    if (compression is None) == (num_weights is None):
        raise ValueError(
            f"{layer_name}: give exactly one of `compression` (a ratio in (0, 1], "
            f"e.g. 1/64) or `num_weights` (an integer >= 1); got "
            f"compression={compression!r}, num_weights={num_weights!r}."
        )
    if num_weights is not None:
        if int(num_weights) != num_weights or num_weights < 1:
            raise ValueError(f"{layer_name}: num_weights must be an integer >= 1, got {num_weights!r}.")
        return int(num_weights)
    if not (0 < float(compression) <= 1):
        raise ValueError(
            f"{layer_name}: compression must be in (0, 1] (real weights / virtual "
            f"weights), got {compression!r}."
        )
    return max(1, int(round(float(compression) * virtual_size)))


class _HashedKernelMixin:
    """Shared build/kernel logic of the hashed layers."""

    def _build_hashed_kernel(self, kernel_shape):
        fan_in = int(np.prod(kernel_shape[:-1]))
        fan_out = int(kernel_shape[-1]) * int(np.prod(kernel_shape[:-2]))
        virtual = int(np.prod(kernel_shape))
        self.num_weights = _num_weights(virtual, self.compression, self._num_weights_arg, self.name)
        if self.kernel_initializer is None:
            # Glorot-uniform for the *virtual* kernel: each entry is one real
            # weight times ±1, so it has the real weights' variance.
            limit = math.sqrt(6.0 / (fan_in + fan_out))
            initializer = keras.initializers.RandomUniform(-limit, limit, seed=self.seed)
        else:
            initializer = keras.initializers.get(self.kernel_initializer)
        self.kernel = self.add_weight(
            name="kernel", shape=(self.num_weights,), initializer=initializer, trainable=True
        )
        index, sign = hash_tables(kernel_shape, self.num_weights, self.seed)
        self._index = index
        self._sign = sign
        self.kernel_shape = tuple(kernel_shape)

    def virtual_kernel(self, kernel=None):
        """The full-size kernel ``w[h] * xi`` (from ``kernel`` if given)."""
        kernel = self.kernel if kernel is None else kernel
        index = ops.convert_to_tensor(self._index, dtype="int32")
        sign = ops.convert_to_tensor(self._sign, dtype=self.compute_dtype)
        return ops.take(ops.cast(kernel, self.compute_dtype), index) * sign

    def _hashed_config(self):
        return {
            "compression": self.compression,
            "num_weights": self._num_weights_arg,
            "seed": self.seed,
            "activation": keras.activations.serialize(self.activation) if self.activation else None,
            "use_bias": self.use_bias,
            "kernel_initializer": (
                None if self.kernel_initializer is None
                else keras.initializers.serialize(keras.initializers.get(self.kernel_initializer))
            ),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


@keras.saving.register_keras_serializable(package="hardened")
class HashedDense(_HashedKernelMixin, keras.layers.Layer):
    """Fully connected layer whose kernel is hashed into ``K`` shared weights.

    Args:
        units: Output width.
        compression: Real weights / virtual weights, e.g. ``1/64``. Exactly one
            of ``compression`` and ``num_weights`` must be given.
        num_weights: ``K`` directly.
        seed: Seed of the hash functions (and of the default initializer).
        activation: Keras activation.
        use_bias: Whether to add a (full, unshared) bias.
        kernel_initializer: Initializer of the ``K`` real weights; ``None``
            uses Glorot-uniform scaled for the virtual kernel.
        bias_initializer: Bias initializer.

    Example:
        >>> layer = HashedDense(512, compression=1 / 64)
        >>> _ = layer(np.zeros((1, 512), "float32"))
        >>> layer.num_weights
        4096
    """

    def __init__(self, units, compression=None, num_weights=None, seed=0, activation=None,
                 use_bias=True, kernel_initializer=None, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if int(units) != units or units < 1:
            raise ValueError(f"HashedDense: units must be a positive integer, got {units!r}.")
        self.units = int(units)
        self.compression = None if compression is None else float(compression)
        self._num_weights_arg = None if num_weights is None else int(num_weights)
        _num_weights(1, self.compression, self._num_weights_arg, "HashedDense")  # validate early
        self.seed = int(seed)
        self.activation = keras.activations.get(activation) if activation else None
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape):
        in_features = input_shape[-1]
        if in_features is None:
            raise ValueError("HashedDense needs a known last input dimension.")
        self._build_hashed_kernel((int(in_features), self.units))
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: int(in_features)})
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer)
        self.built = True

    def call(self, inputs):
        outputs = ops.matmul(inputs, self.virtual_kernel())
        if self.use_bias:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        return self.activation(outputs) if self.activation else outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, **self._hashed_config()})
        return config


@keras.saving.register_keras_serializable(package="hardened")
class HashedConv2D(_HashedKernelMixin, keras.layers.Layer):
    """2-D convolution whose kernel is hashed into ``K`` shared weights.

    Args:
        filters: Output channels.
        kernel_size: Int or pair.
        strides: Int or pair.
        padding: ``"valid"`` or ``"same"``.
        compression, num_weights, seed, activation, use_bias,
        kernel_initializer, bias_initializer: As in `HashedDense`.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", compression=None,
                 num_weights=None, seed=0, activation=None, use_bias=True,
                 kernel_initializer=None, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        padding = str(padding).lower()
        if padding not in ("valid", "same"):
            raise ValueError(f"HashedConv2D: padding must be 'valid' or 'same', got {padding!r}.")
        self.padding = padding
        self.compression = None if compression is None else float(compression)
        self._num_weights_arg = None if num_weights is None else int(num_weights)
        _num_weights(1, self.compression, self._num_weights_arg, "HashedConv2D")
        self.seed = int(seed)
        self.activation = keras.activations.get(activation) if activation else None
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError("HashedConv2D needs a known channel dimension (channels_last).")
        self._build_hashed_kernel(self.kernel_size + (int(channels), self.filters))
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: int(channels)})
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
        self.built = True

    def call(self, inputs):
        outputs = ops.conv(inputs, self.virtual_kernel(), strides=self.strides, padding=self.padding,
                           data_format="channels_last")
        if self.use_bias:
            outputs = outputs + ops.cast(self.bias, outputs.dtype)
        return self.activation(outputs) if self.activation else outputs

    def compute_output_shape(self, input_shape):
        def out(n, k, s):
            if n is None:
                return None
            return -(-n // s) if self.padding == "same" else (n - k) // s + 1
        h = out(input_shape[1], self.kernel_size[0], self.strides[0])
        w = out(input_shape[2], self.kernel_size[1], self.strides[1])
        return (input_shape[0], h, w, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            **self._hashed_config(),
        })
        return config


def _pair(value, what):
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"{what} must be an int or a pair, got {value!r}.")
    return value
