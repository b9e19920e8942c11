"""Stochastic defenses that stay random at inference (the baselines of HRS).

Every layer here draws from a `keras.random.SeedGenerator`, so a run is
reproducible from its seed, and has a ``randomness`` switch: with it off the
layer is deterministic (the "fixed randomness" attack setting of seed 004,
where the random module is removed). Use `set_randomness` on a whole model.
"""

import keras
from keras import ops


class RandomizedLayer(keras.layers.Layer):
    """Base class: a layer that is random at inference unless switched off."""

    is_randomized = True

    def __init__(self, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="seed_generator")
        self.randomness = True

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config


@keras.saving.register_keras_serializable(package="hardened")
class DefensiveDropout(RandomizedLayer):
    """Dropout that is also active at inference (Wang et al., 2018).

    Args:
        rate: Fraction of units dropped, in [0, 1).
        seed: Seed of the dropout masks.
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if not 0 <= float(rate) < 1:
            raise ValueError(f"DefensiveDropout: rate must be in [0, 1), got {rate!r}.")
        self.rate = float(rate)

    def call(self, inputs):
        if not self.randomness or self.rate == 0:
            return inputs
        return keras.random.dropout(inputs, self.rate, seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate}


@keras.saving.register_keras_serializable(package="hardened")
class GaussianNoiseInjection(RandomizedLayer):
    """Adds N(0, stddev²) noise in training and at test time (Liu et al., 2017).

    Args:
        stddev: Standard deviation of the noise (in input units).
        seed: Seed of the noise.
    """

    def __init__(self, stddev, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if float(stddev) < 0:
            raise ValueError(f"GaussianNoiseInjection: stddev must be >= 0, got {stddev!r}.")
        self.stddev = float(stddev)

    def call(self, inputs):
        if not self.randomness or self.stddev == 0:
            return inputs
        noise = keras.random.normal(ops.shape(inputs), stddev=self.stddev, dtype=inputs.dtype,
                                    seed=self.seed_generator)
        return inputs + noise

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "stddev": self.stddev}


@keras.saving.register_keras_serializable(package="hardened")
class StochasticActivationPruning(RandomizedLayer):
    """Stochastic activation pruning (Dhillon et al., 2018).

    Per example, ``r = ratio * n`` indices are drawn with replacement with
    probability ``p_i = |h_i| / sum_j |h_j|``; activations never drawn are set
    to zero and the survivors are scaled by ``1 / (1 - (1 - p_i)^r)`` so that
    the output is unbiased.

    Args:
        ratio: Number of draws as a fraction of the number of features.
        seed: Seed of the draws.
    """

    def __init__(self, ratio=1.0, seed=None, **kwargs):
        super().__init__(seed=seed, **kwargs)
        if float(ratio) <= 0:
            raise ValueError(f"StochasticActivationPruning: ratio must be > 0, got {ratio!r}.")
        self.ratio = float(ratio)

    def call(self, inputs):
        if not self.randomness:
            return inputs
        shape = ops.shape(inputs)
        flat = ops.reshape(inputs, (shape[0], -1))
        n = flat.shape[-1]
        draws = max(1, int(round(self.ratio * n)))
        x = ops.cast(flat, "float32")
        mag = ops.abs(x)
        total = ops.sum(mag, axis=-1, keepdims=True)
        p = mag / ops.maximum(total, 1e-12)
        logits = ops.log(ops.maximum(p, 1e-30))
        samples = keras.random.categorical(logits, draws, seed=self.seed_generator)
        counts = ops.sum(ops.one_hot(samples, n, dtype="float32"), axis=1)
        kept = ops.cast(counts > 0, "float32") * ops.cast(mag > 0, "float32")
        keep_prob = 1.0 - ops.power(1.0 - p, float(draws))
        out = x * kept / ops.maximum(keep_prob, 1e-12)
        return ops.reshape(ops.cast(out, inputs.dtype), shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "ratio": self.ratio}


def randomized_layers(model):
    """All layers of ``model`` (nested included) that are random at inference."""
    return [layer for layer in _walk(model) if getattr(layer, "is_randomized", False)]


def set_randomness(model, enabled):
    """Switch the inference-time randomness of every randomized layer on or off.

    With ``enabled=False`` stochastic layers become identities, random switches
    use their fixed path (path 0 unless set), and per-call GI3 views reuse one
    fixed draw: the "fixed randomness" setting of seed 004. Functions already
    traced (``jit_compile``) must be rebuilt to see the change.

    Returns:
        The number of layers switched.
    """
    layers = randomized_layers(model)
    for layer in layers:
        layer.randomness = bool(enabled)
    return len(layers)


def _walk(layer):
    yield layer
    for sub in getattr(layer, "_flatten_layers", lambda **_: [])(include_self=False, recursive=True):
        yield sub
